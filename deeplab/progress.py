"""A dependency-free progress display: a bar on a terminal, log lines elsewhere."""

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
               stream=None, log_every: float = 10.0, unit: str = "it"):
    self.total, self.description, self.unit = total, description, unit
    self.stream = stream or sys.stderr
    self.is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
    self.log_every = log_every
    self.done = 0
    self.start = self.last_print = time.monotonic()

  def line(self, extra: str = "") -> str:
    elapsed = time.monotonic() - self.start
    rate = self.done / elapsed if elapsed > 0 else 0.0
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
