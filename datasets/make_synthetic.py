"""The built-in synthetic dataset: colored shapes on textures, as records.

``generate`` draws one image and its mask, ``build`` writes the records;
the tool is ``deeplab-make-synthetic`` (deeplab/cli/make_synthetic.py),
whose docstring describes the images.
"""


import io
import os
from typing import List, Optional

import numpy as np
from PIL import Image
import tensorflow as tf

from deeplab.data import builder
from deeplab.data import dataset_table

from . import common

# Image size of the segmentation set when none is given.
SEGMENTATION_SIZE = 161
# Image size of the classification set when none is given: shapes large
# enough that a tiny backbone learns the classes in a few dozen steps.
CLASSIFICATION_SIZE = 48
# Added to the seed of the validation split, so that no validation image is
# a training image.
VAL_SEED_OFFSET = 1_000_003

# Hue ranges (degrees) of the four shape classes: red, green, yellow, blue.
HUES = {1: (-20, 20), 2: (100, 140), 3: (45, 70), 4: (200, 240)}


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
  h = (h % 360) / 60.0
  c = v * s
  x = c * (1 - abs(h % 2 - 1))
  m = v - c
  r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c),
             (c, 0, x)][int(h) % 6]
  return np.array([r + m, g + m, b + m]) * 255.0


def _background(rng, size: int, yy, xx) -> np.ndarray:
  gray = rng.uniform(60, 200)
  tint = rng.uniform(-25, 25, 3)
  base = np.full((size, size, 3), gray) + tint
  kind = rng.integers(5)
  if kind == 0:  # Linear gradient.
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / size
    base += (ramp[..., None] - 0.5) * rng.uniform(40, 120)
  elif kind == 1:  # Stripes.
    period = rng.uniform(6, 24)
    base += (np.sin(2 * np.pi * (xx + yy * rng.uniform(-1, 1)) / period)[..., None]
             * rng.uniform(10, 40))
  elif kind == 2:  # Checkers.
    cell = int(rng.integers(8, 32))
    base += ((((yy // cell) + (xx // cell)) % 2)[..., None] - 0.5) * rng.uniform(20, 60)
  elif kind == 3:  # Blotches.
    for _ in range(6):
      cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(8, 40)]
      blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
      base += blob[..., None] * rng.uniform(-50, 50)
  return base + rng.normal(0, rng.uniform(2, 12), base.shape)


def _shape_mask(cls: int, rng, size: int, yy, xx,
                scale=(0.08, 0.22)) -> np.ndarray:
  cy, cx = rng.uniform(0.1 * size, 0.9 * size, 2)
  r = rng.uniform(*scale) * size
  angle = rng.uniform(0, 2 * np.pi)
  dy, dx = yy - cy, xx - cx
  u = np.cos(angle) * dx + np.sin(angle) * dy
  v = -np.sin(angle) * dx + np.cos(angle) * dy
  if cls == 1:  # Disc.
    return dx * dx + dy * dy < r * r
  if cls == 2:  # Square.
    return (np.abs(u) < r * 0.85) & (np.abs(v) < r * 0.85)
  if cls == 3:  # Triangle: three half-planes.
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
      a = angle + k * 2 * np.pi / 3
      inside &= (np.cos(a) * dx + np.sin(a) * dy) < r * 0.6
    return inside
  d2 = dx * dx + dy * dy  # Ring.
  return (d2 < r * r) & (d2 > (0.55 * r) ** 2)


def _texture(rng, size: int, yy, xx, color: np.ndarray) -> np.ndarray:
  layer = np.broadcast_to(color, (size, size, 3)).astype(np.float64)
  kind = rng.integers(3)
  if kind == 1:
    period = rng.uniform(4, 10)
    layer = layer * (0.8 + 0.2 * np.sin(2 * np.pi * xx / period))[..., None]
  elif kind == 2:
    layer = layer * rng.uniform(0.8, 1.1, (size, size, 1))
  return layer


def _draw(image, mask, cls: int, rng, size: int, yy, xx, scale=(0.08, 0.22)):
  """Draws one shape of class ``cls`` (its hue range) into image and mask."""
  low, high = HUES[cls]
  color = _hsv_to_rgb(rng.uniform(low, high), rng.uniform(0.6, 1.0),
                      rng.uniform(0.55, 1.0))
  region = _shape_mask(cls, rng, size, yy, xx, scale)
  image[region] = _texture(rng, size, yy, xx, color)[region]
  mask[region] = cls


def generate_classified(index: int, seed: int, size: int):
  """One (image uint8 [s, s, 3], label 0..3) of the classification set."""
  rng = np.random.default_rng([seed, index])
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  image = _background(rng, size, yy, xx)
  cls = int(rng.integers(1, 5))
  _draw(image, np.zeros((size, size), np.uint8), cls, rng, size, yy, xx,
        scale=(0.25, 0.4))
  image += rng.normal(0, 3, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8), cls - 1


def generate(index: int, seed: int, size: int):
  """One (image uint8 [s, s, 3], mask uint8 [s, s]) pair."""
  rng = np.random.default_rng([seed, index])
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  image = _background(rng, size, yy, xx)
  mask = np.zeros((size, size), np.uint8)
  for _ in range(int(rng.integers(2, 6))):
    _draw(image, mask, int(rng.integers(1, 5)), rng, size, yy, xx)
  image += rng.normal(0, 3, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8), mask


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def samples(count: int, seed: int, size: int, split: str):
  found = []
  for i in range(count):
    image, mask = generate(i, seed, size)
    name = f"synthetic/{split}/{i:05d}"
    found.append(builder.Sample(name + ".png", name + "_mask.png",
                                image_data=_png(image), mask_data=_png(mask)))
  return found


def classified_samples(count: int, seed: int, size: int, split: str):
  names = dataset_table.DATASETS["synthetic_shapes"].class_names
  found = []
  for i in range(count):
    image, label = generate_classified(i, seed, size)
    found.append(builder.ClassSample(f"synthetic_shapes/{split}/{i:05d}.png",
                                     label, names[label], _png(image)))
  return found


def build(output_dir: str, train_size: int = 400, val_size: int = 64,
          image_size: Optional[int] = None, seed: int = 0,
          task: str = "segmentation", png_dir: str = "",
          options: Optional[common.BuildOptions] = None
          ) -> List[builder.BuildReport]:
  """Writes the train and val splits of the synthetic set.

  Args:
    output_dir: folder of the shards.
    train_size: training images.
    val_size: validation images.
    image_size: image height and width (default ``SEGMENTATION_SIZE``, or
      ``CLASSIFICATION_SIZE`` for ``classification``).
    seed: random seed; the same seed writes the same records.
    task: ``segmentation`` (images and masks, the table's 'synthetic') or
      ``classification`` (one shape per image, 'synthetic_shapes').
    png_dir: also write the validation images here as PNG files
      (segmentation only).
    options: how the records are written.

  Raises:
    ValueError: an unknown ``task``.
  """
  val_seed = seed + VAL_SEED_OFFSET
  if task == "classification":
    size = image_size or CLASSIFICATION_SIZE
    return common.build_classification({
        "train": classified_samples(train_size, seed, size, "train"),
        "val": classified_samples(val_size, val_seed, size, "val")},
                                       output_dir, options, dataset="synthetic_shapes")
  if task != "segmentation":
    raise ValueError(f"task must be 'segmentation' or 'classification', got {task!r}")
  size = image_size or SEGMENTATION_SIZE
  info = dataset_table.DATASETS["synthetic"]
  val = samples(val_size, val_seed, size, "val")
  reports = common.build(
      {"train": samples(train_size, seed, size, "train"), "val": val},
      builder.LabelSpec(info.num_classes, info.ignore_label), output_dir, options,
      dataset="synthetic")
  if png_dir:
    tf.io.gfile.makedirs(png_dir)
    for sample in val:
      with tf.io.gfile.GFile(
          os.path.join(png_dir, os.path.basename(sample.image_path)), "wb") as f:
        f.write(sample.image_data)
  return reports
