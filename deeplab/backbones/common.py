"""Helpers shared by the backbones."""

from __future__ import annotations

from typing import Tuple


class StrideTracker:
  """Turns strides beyond the output stride into atrous rates.

  The rule of slim's ``stack_blocks_dense`` and of ``mobilenet_base``, which
  the released checkpoints were built with: once the accumulated stride has
  reached ``output_stride``, a unit that would stride runs with stride 1 at
  the current rate, and the rate of every later unit is multiplied by the
  stride it skipped.
  """

  def __init__(self, output_stride: int, current_stride: int = 1):
    self.output_stride = output_stride
    self.current_stride = current_stride
    self.rate = 1

  def next(self, stride: int) -> Tuple[int, int]:
    """Returns (stride, atrous rate) for the next unit of nominal ``stride``."""
    if self.current_stride == self.output_stride:
      unit = (1, self.rate)
      self.rate *= stride
      return unit
    self.current_stride *= stride
    return stride, 1
