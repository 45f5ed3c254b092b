"""Image files: which names are images, and reading them from any
filesystem TensorFlow reads (local, gs://, ...).

The dataset builders read their images through it, and so does
``deeplab.predict``, which needs nothing else of the builders.
"""

from __future__ import annotations

import io
import os
from typing import List

import numpy as np
from PIL import Image
import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_bytes(path: str) -> bytes:
  """The bytes of a file on any filesystem TensorFlow reads (gs://, ...)."""
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()


def list_images(spec: str) -> List[str]:
  """Image files (by extension) named by a file, a folder or a glob, sorted;
  empty if none."""
  if tf.io.gfile.isdir(spec):
    paths = [os.path.join(spec, n) for n in tf.io.gfile.listdir(spec)]
  elif tf.io.gfile.exists(spec):
    paths = [spec]
  else:
    paths = tf.io.gfile.glob(spec)
  return sorted(p for p in paths if p.lower().endswith(IMAGE_EXTENSIONS))


def read_rgb(path: str) -> np.ndarray:
  """The image at ``path`` as uint8 RGB [h, w, 3] (gray and palette images
  expanded, alpha dropped).

  Raises:
    Exception: whatever PIL raises for a broken or unknown file.
  """
  with Image.open(io.BytesIO(read_bytes(path))) as opened:
    return np.asarray(opened.convert("RGB"))
