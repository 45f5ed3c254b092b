"""The TFRecord schema of the original DeepLab, and safe shard writing.

Keys are exactly those of Google's ``build_voc2012_data.py`` /
``build_cityscapes_data.py`` / ``build_ade20k_data.py``, so records those
scripts produced load unchanged, and ours load in the original code.
"""

from __future__ import annotations

import os
import re
from typing import Dict, Iterable, List

import tensorflow as tf

IMAGE_ENCODED = "image/encoded"
IMAGE_FILENAME = "image/filename"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
LABEL_ENCODED = "image/segmentation/class/encoded"
LABEL_FORMAT = "image/segmentation/class/format"

FEATURES = {
    IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=""),
    IMAGE_FILENAME: tf.io.FixedLenFeature((), tf.string, default_value=""),
    IMAGE_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
    IMAGE_HEIGHT: tf.io.FixedLenFeature((), tf.int64, default_value=0),
    IMAGE_WIDTH: tf.io.FixedLenFeature((), tf.int64, default_value=0),
    IMAGE_CHANNELS: tf.io.FixedLenFeature((), tf.int64, default_value=3),
    # Test splits of the original carry no label; it decodes to empty.
    LABEL_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=""),
    LABEL_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="png"),
}

# Classification records: the layout of the widely used ImageNet-to-TFRecord
# scripts (image/encoded, image/format, image/filename, image/height,
# image/width as above; the class id and its name).
CLASS_LABEL = "image/class/label"
CLASS_TEXT = "image/class/text"

CLASSIFICATION_FEATURES = {
    IMAGE_ENCODED: FEATURES[IMAGE_ENCODED],
    IMAGE_FILENAME: FEATURES[IMAGE_FILENAME],
    CLASS_LABEL: tf.io.FixedLenFeature((), tf.int64),
}

SHARD_PATTERN = "{split}-{index:05d}-of-{count:05d}.tfrecord"
_SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$")


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(image: bytes, image_format: str, filename: str, height: int,
                 width: int, label_png: bytes = b"",
                 channels: int = 3) -> tf.train.Example:
  """Builds one record with the original keys.

  Args:
    image: encoded image bytes (JPEG or PNG).
    image_format: 'jpeg' or 'png'.
    filename: the image's file name (the original stores the stem).
    height: image height in pixels.
    width: image width in pixels.
    label_png: single-channel PNG of class ids; empty for unlabelled splits.
    channels: image channels (3).
  """
  return tf.train.Example(features=tf.train.Features(feature={
      IMAGE_ENCODED: _bytes(image),
      IMAGE_FILENAME: _bytes(filename.encode()),
      IMAGE_FORMAT: _bytes(image_format.encode()),
      IMAGE_HEIGHT: _int(height),
      IMAGE_WIDTH: _int(width),
      IMAGE_CHANNELS: _int(channels),
      LABEL_ENCODED: _bytes(label_png),
      LABEL_FORMAT: _bytes(b"png"),
  }))


def parse(serialized, ignore_label: int = 255) -> Dict[str, tf.Tensor]:
  """Decodes one record: uint8 image [h, w, 3], uint8 label [h, w, 1].

  An unlabelled record (empty label, as the original's test splits) gets a
  label of ``ignore_label`` everywhere, so no code sees a missing label.
  """
  parsed = tf.io.parse_single_example(serialized, FEATURES)
  image = tf.io.decode_image(parsed[IMAGE_ENCODED], channels=3,
                             expand_animations=False)
  image.set_shape([None, None, 3])
  shape = tf.shape(image)
  label = tf.cond(
      tf.strings.length(parsed[LABEL_ENCODED]) > 0,
      lambda: tf.io.decode_png(parsed[LABEL_ENCODED], channels=1),
      lambda: tf.fill([shape[0], shape[1], 1], tf.cast(ignore_label, tf.uint8)))
  label.set_shape([None, None, 1])
  return {"image": image, "label": label,
          "filename": parsed[IMAGE_FILENAME],
          "height": shape[0], "width": shape[1]}


def make_classification_example(image: bytes, image_format: str,
                                filename: str, height: int, width: int,
                                label: int, text: str = "",
                                channels: int = 3) -> tf.train.Example:
  """One classification record, in the ImageNet TFRecord layout."""
  return tf.train.Example(features=tf.train.Features(feature={
      IMAGE_ENCODED: _bytes(image),
      IMAGE_FILENAME: _bytes(filename.encode()),
      IMAGE_FORMAT: _bytes(image_format.encode()),
      IMAGE_HEIGHT: _int(height),
      IMAGE_WIDTH: _int(width),
      IMAGE_CHANNELS: _int(channels),
      CLASS_LABEL: _int(label),
      CLASS_TEXT: _bytes(text.encode()),
  }))


def parse_classification(serialized, label_offset: int = 0
                         ) -> Dict[str, tf.Tensor]:
  """Decodes one classification record: uint8 image [h, w, 3], int32 label
  (the record's ``image/class/label`` plus ``label_offset``)."""
  parsed = tf.io.parse_single_example(serialized, CLASSIFICATION_FEATURES)
  image = tf.io.decode_image(parsed[IMAGE_ENCODED], channels=3,
                             expand_animations=False)
  image.set_shape([None, None, 3])
  label = tf.cast(parsed[CLASS_LABEL], tf.int32) + label_offset
  return {"image": image, "label": label, "filename": parsed[IMAGE_FILENAME]}


def shard_paths(output_dir: str, split: str, count: int) -> List[str]:
  return [os.path.join(output_dir, SHARD_PATTERN.format(
      split=split, index=i, count=count)) for i in range(count)]


def existing_shards(output_dir: str, split: str) -> List[str]:
  """Finished shards of ``split`` in ``output_dir`` (any shard count)."""
  found = []
  for path in tf.io.gfile.glob(os.path.join(output_dir, f"{split}-*.tfrecord")):
    match = _SHARD_RE.match(os.path.basename(path))
    if match and match["split"] == split:
      found.append(path)
  return sorted(found)


class ShardWriter:
  """Writes ``count`` shards of a split under temporary names.

  ``commit()`` renames them into place (and removes shards of the same split
  with another shard count, left by an earlier build), so an interrupted
  build never leaves a shard that looks whole, and a re-run replaces the
  old shards cleanly. ``abort()`` deletes the temporary files.
  """

  def __init__(self, output_dir: str, split: str, count: int):
    if count < 1:
      raise ValueError(f"num_shards must be >= 1, got {count}")
    tf.io.gfile.makedirs(output_dir)
    self.output_dir, self.split = output_dir, split
    self.paths = shard_paths(output_dir, split, count)
    self.temp_paths = [f"{p}.tmp-{os.getpid()}" for p in self.paths]
    self.writers = [tf.io.TFRecordWriter(p) for p in self.temp_paths]
    self.counts = [0] * count

  def write(self, shard: int, serialized: bytes):
    """Writes one serialized ``tf.train.Example`` into shard ``shard``."""
    self.writers[shard].write(serialized)
    self.counts[shard] += 1

  def _close(self):
    for writer in self.writers:
      writer.close()

  def commit(self) -> List[str]:
    self._close()
    for old in existing_shards(self.output_dir, self.split):
      if old not in self.paths:
        tf.io.gfile.remove(old)
    for temp, final in zip(self.temp_paths, self.paths):
      tf.io.gfile.rename(temp, final, overwrite=True)
    return self.paths

  def abort(self):
    self._close()
    for temp in self.temp_paths:
      if tf.io.gfile.exists(temp):
        tf.io.gfile.remove(temp)


def iterate_examples(paths: Iterable[str]):
  """Yields parsed numpy dicts of every record in ``paths`` (for tools)."""
  for serialized in tf.data.TFRecordDataset(list(paths)):
    yield {k: v.numpy() for k, v in parse(serialized).items()}
