"""Progress lines: rate and ETA over this process's work, silent workers."""

import io

from deeplab import progress


class FakeClock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def test_a_resumed_run_counts_its_rate_from_the_resume_point(monkeypatch):
  clock = FakeClock()
  monkeypatch.setattr(progress.time, "monotonic", clock)
  stream = io.StringIO()
  bar = progress.Progress(3000, "train", stream=stream, log_every=0,
                          unit="steps", initial=2000)
  clock.now += 100.0  # 50 steps in 100 s: 0.5 steps/s, 950 steps to go.
  bar.update(50)
  line = stream.getvalue().strip()
  assert line == "train 2050/3000 ETA 31:40 0.50 steps/s", line


def test_eta_shows_hours(monkeypatch):
  clock = FakeClock()
  monkeypatch.setattr(progress.time, "monotonic", clock)
  stream = io.StringIO()
  bar = progress.Progress(30000, "train", stream=stream, log_every=0, unit="steps")
  clock.now += 10.0
  bar.update(10)
  assert "ETA 8:19:50 1.00 steps/s" in stream.getvalue()


def test_lines_follow_the_interval_and_the_end(monkeypatch):
  clock = FakeClock()
  monkeypatch.setattr(progress.time, "monotonic", clock)
  stream = io.StringIO()
  bar = progress.Progress(4, "eval", stream=stream, log_every=10, unit="images")
  for _ in range(3):
    clock.now += 1.0
    bar.update()
  assert stream.getvalue() == ""  # Within the interval: nothing yet.
  clock.now += 1.0
  bar.update()
  assert stream.getvalue() == "eval 4/4 ETA 0:00 1.00 images/s\n"


def test_a_disabled_display_prints_nothing():
  stream = io.StringIO()
  bar = progress.Progress(2, "train", stream=stream, log_every=0, enabled=False)
  bar.update(2)
  assert stream.getvalue() == "" and bar.done == 2
