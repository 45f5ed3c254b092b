"""Image files: which names are images, and reading them upright from any
filesystem TensorFlow reads (local, gs://, ...).

The dataset builders read their images and masks through it, and so does
``deeplab.predict``, which needs nothing else of the builders. A photo
whose EXIF orientation tag says it is stored turned (as phones store
them) is turned upright on reading, as image viewers and annotation tools
show it (``upright``).
"""

from __future__ import annotations

import io
import os
from typing import List, Sequence

import numpy as np
from PIL import Image
from PIL import ImageOps
import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# The EXIF tag whose values 2..8 say how the stored pixels are turned or
# mirrored; 1 (or no tag) is upright.
EXIF_ORIENTATION = 0x0112


def read_bytes(path: str) -> bytes:
  """The bytes of a file on any filesystem TensorFlow reads (gs://, ...)."""
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()


def list_images(spec: str, extensions: Sequence[str] = IMAGE_EXTENSIONS
                ) -> List[str]:
  """Files whose names end in one of ``extensions`` (images by default)
  named by a file, a folder or a glob, sorted; empty if none."""
  if tf.io.gfile.isdir(spec):
    paths = [os.path.join(spec, n) for n in tf.io.gfile.listdir(spec)]
  elif tf.io.gfile.exists(spec):
    paths = [spec]
  else:
    paths = tf.io.gfile.glob(spec)
  return sorted(p for p in paths if p.lower().endswith(tuple(extensions)))


def orientation(image: Image.Image) -> int:
  """The image's EXIF orientation (1..8; 1 when it has no such tag)."""
  try:
    return int(image.getexif().get(EXIF_ORIENTATION, 1))
  except Exception:  # A broken EXIF block: the pixels are read as stored.
    return 1


def upright(image: Image.Image) -> Image.Image:
  """``image`` turned upright by its EXIF orientation.

  Returns ``image`` itself when it is upright (no tag, or orientation 1),
  otherwise a new image, turned or mirrored, that keeps the file's
  ``format`` (so callers still know it was, say, a JPEG) and has the
  mode (and palette) of ``image``.
  """
  if orientation(image) in (0, 1):
    return image
  turned = ImageOps.exif_transpose(image)
  turned.format = image.format
  return turned


def read_rgb(path: str) -> np.ndarray:
  """The image at ``path`` as uint8 RGB [h, w, 3], upright (``upright``),
  gray and palette images expanded, alpha dropped.

  Raises:
    Exception: whatever PIL raises for a broken or unknown file.
  """
  with Image.open(io.BytesIO(read_bytes(path))) as opened:
    return np.asarray(upright(opened).convert("RGB"))
