"""A dependency-free progress display: a bar on a terminal, log lines elsewhere.

Our own rather than tqdm or Keras' Progbar: it needs no optional package,
writes whole lines at a fixed interval when the output is a log file (a
cluster job's log stays readable), counts the rate only over the work this
process did (a resumed run starts at its checkpoint's step), and is silent
on all but one worker.
"""

from __future__ import annotations

import sys
import time
from typing import Optional


def format_duration(seconds: float) -> str:
  seconds = int(max(0, seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
  """Counts work done of ``total`` and shows rate and time left.

  On a terminal the line is redrawn in place; otherwise (logs, CI) a line is
  printed every ``log_every`` seconds and at the end.
  """

  def __init__(self, total: Optional[int], description: str = "",
               stream=None, log_every: float = 10.0, unit: str = "it",
               initial: int = 0, enabled: bool = True):
    """Args:
      total: the count at the end (None: unknown, no ETA).
      description: the line's first word.
      stream: where lines go (default: stderr).
      log_every: seconds between lines when the stream is not a terminal.
      unit: what is counted, for the rate.
      initial: work already done before this process started (a resumed
        run's step): shown in the count, left out of the rate.
      enabled: False prints nothing (the other workers of a cluster job).
    """
    self.total, self.description, self.unit = total, description, unit
    self.stream = stream or sys.stderr
    self.is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.log_every = log_every
    self.initial = self.done = initial
    self.enabled = enabled
    self.start = self.last_print = time.monotonic()

  def line(self, extra: str = "") -> str:
    elapsed = time.monotonic() - self.start
    rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
    parts = [self.description] if self.description else []
    if self.total:
      fraction = min(1.0, self.done / self.total)
      if self.is_tty:
        filled = int(fraction * 30)
        parts.append("[" + "#" * filled + "." * (30 - filled) + "]")
      parts.append(f"{self.done}/{self.total}")
      if rate > 0:
        parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
    else:
      parts.append(str(self.done))
    parts.append(f"{rate:.2f} {self.unit}/s")
    if extra:
      parts.append(extra)
    return " ".join(parts)

  def update(self, count: int = 1, extra: str = ""):
    self.done += count
    if not self.enabled:
      return
    now = time.monotonic()
    finished = self.total is not None and self.done >= self.total
    if self.is_tty:
      self.stream.write("\r" + self.line(extra))
      if finished:
        self.stream.write("\n")
      self.stream.flush()
    elif finished or now - self.last_print >= self.log_every:
      self.stream.write(self.line(extra) + "\n")
      self.stream.flush()
      self.last_print = now
