"""Colored masks and overlays from class ids, with a dataset's colormap."""

from __future__ import annotations

import numpy as np


def colorize(ids: np.ndarray, colormap: np.ndarray,
             ignore_label: int = 255) -> np.ndarray:
  """uint8 RGB [h, w, 3] of class ids [h, w]; unknown ids (ignore) black."""
  table = np.zeros((256, 3), np.uint8)
  table[:len(colormap)] = colormap
  if ignore_label >= len(colormap):
    table[ignore_label] = 0
  return table[np.clip(ids, 0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, colored: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """Blends the colored mask over the image (alpha = mask weight)."""
  blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colored.astype(np.float32)
  return np.clip(blended + 0.5, 0, 255).astype(np.uint8)
