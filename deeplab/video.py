"""Video files: frames in, overlay frames out, through PyAV (the ``video``
extra: ``pip install 'deeplab-tf2[video]'``).

PyAV binds FFmpeg's libraries in process (its wheels bring them, and it
depends on no other package, so installing it changes neither numpy nor
TensorFlow): frames decode straight into numpy arrays with the stream's
exact frame rate, and no ffmpeg executable runs beside us.
"""

from __future__ import annotations

import fractions
import os
from typing import Iterator, Optional

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")


class VideoError(Exception):
  """A video file that cannot be opened or decoded."""


def is_video(path: str) -> bool:
  """Whether ``path`` names a video (by its extension)."""
  return path.lower().endswith(VIDEO_EXTENSIONS)


def require():
  """Imports PyAV.

  Raises:
    ImportError: PyAV is absent; the message says how to install it.
  """
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("reading videos needs PyAV: pip install 'deeplab-tf2[video]'") from e
  return av


def _open(path: str):
  av = require()
  try:
    return av.open(path)
  except (av.FFmpegError, OSError) as e:
    raise VideoError(str(e)) from e


def frame_count(path: str) -> Optional[int]:
  """The frames the file's video stream declares, or None (unknown or
  unreadable: the progress bar then shows no ETA)."""
  try:
    with _open(path) as container:
      return container.streams.video[0].frames or None
  except (VideoError, IndexError):
    return None


class Frames:
  """The frames of a video as uint8 RGB [h, w, 3], in order; ``rate`` is the
  stream's frame rate. A context manager (closes the file).

  Raises:
    VideoError: the file cannot be opened or holds no video stream.
  """

  def __init__(self, path: str):
    self.container = _open(path)
    if not self.container.streams.video:
      self.container.close()
      raise VideoError("no video stream")
    self.stream = self.container.streams.video[0]
    self.rate = self.stream.average_rate or fractions.Fraction(25)

  def __iter__(self) -> Iterator[np.ndarray]:
    av = require()
    try:
      for frame in self.container.decode(self.stream):
        yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
      raise VideoError(str(e)) from e

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.container.close()


class OverlayWriter:
  """Writes uint8 RGB frames [h, w, 3] to an H.264 MP4 at ``rate`` frames
  per second (MPEG-4 part 2 where the FFmpeg build has no H.264 encoder).

  The size is the first frame's. 4:2:0 chroma (what players expect) needs
  even sides; a frame with an odd side is kept whole in 4:4:4.
  """

  def __init__(self, path: str, rate):
    self.path, self.rate = path, fractions.Fraction(rate).limit_denominator(100000)
    self.container = self.stream = None

  def _start(self, height: int, width: int):
    av = require()
    os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
    self.container = av.open(self.path, mode="w")
    odd = height % 2 or width % 2
    try:
      self.stream = self.container.add_stream("h264", rate=self.rate)
      self.stream.pix_fmt = "yuv444p" if odd else "yuv420p"
    except (av.FFmpegError, ValueError):
      self.stream = self.container.add_stream("mpeg4", rate=self.rate)
      self.stream.pix_fmt = "yuv420p"
    self.stream.height, self.stream.width = height, width

  def write(self, frame: np.ndarray):
    av = require()
    if self.container is None:
      self._start(*frame.shape[:2])
    image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    for packet in self.stream.encode(image):
      self.container.mux(packet)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self.container is not None:
      for packet in self.stream.encode():
        self.container.mux(packet)
      self.container.close()
