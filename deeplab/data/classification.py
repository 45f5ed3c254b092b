"""Input pipelines of the classification task (backbone pretraining).

Records are in the ImageNet TFRecord layout (``records.CLASS_LABEL``...);
their labels get ``config.data.label_offset`` added and must then lie in
0..num_classes-1 (the pipeline stops naming the record otherwise).

Training: Inception-style augmentation, as slim's
``inception_preprocessing.preprocess_for_train``: a random crop covering
5% to 100% of the image with aspect ratio 3/4 to 4/3
(``tf.image.sample_distorted_bounding_box``), resized to
``config.data.crop_size``, and a random left-right flip. Evaluation: the
central ``config.data.central_crop`` of each side (0.875), resized to the
crop size. Pixels are scaled to [-1, 1], as for segmentation.

Reading, sharding per worker, shuffling, resuming and batching are the
segmentation pipeline's (``pipeline.train_dataset``); only the decoding and
augmentation of one record differ.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from deeplab.data import augment
from deeplab.data import dataset_table
from deeplab.data import pipeline
from deeplab.data import records

# slim's inception_preprocessing.distorted_bounding_box_crop arguments.
AREA_RANGE = (0.05, 1.0)
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
MIN_OBJECT_COVERED = 0.1
MAX_ATTEMPTS = 100


def _parse(serialized, config):
  """The record's image and offset label, checked against the class count."""
  info = dataset_table.from_config(config)
  example = records.parse_classification(serialized, config.data.label_offset)
  label = example["label"]
  check = tf.debugging.Assert(
      tf.logical_and(label >= 0, label < info.num_classes),
      ["record", example["filename"], "has label", label,
       "(after config.data.label_offset", config.data.label_offset,
       ") outside 0 ..", info.num_classes - 1])
  with tf.control_dependencies([check]):
    return example["image"], tf.identity(label)


def _resize(image, size):
  return tf.image.resize(tf.cast(image, tf.float32)[None], size,
                         method="bilinear", antialias=False)[0]


def random_crop_and_flip(image, size, flip: bool = True, seed=None):
  """Inception-style training crop: a random box of the image (area and
  aspect ratio as slim's), resized to ``size``, randomly flipped.

  Args:
    image: uint8 [h, w, 3].
    size: (height, width) of the result.
    flip: random left-right flip.
    seed: a stateless seed [2] (deterministic pipelines), or None.

  Returns:
    float32 [height, width, 3] in [0, 255].
  """
  whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])
  options = dict(bounding_boxes=whole,
                 min_object_covered=MIN_OBJECT_COVERED,
                 aspect_ratio_range=ASPECT_RATIO_RANGE,
                 area_range=AREA_RANGE, max_attempts=MAX_ATTEMPTS,
                 use_image_if_no_bounding_boxes=True)
  if seed is not None:
    crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2))
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), seed=crop_seed, **options)
  else:
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image), **options)
  image = _resize(tf.slice(image, begin, crop_size), size)
  if flip:
    image = (tf.image.stateless_random_flip_left_right(image, flip_seed)
             if seed is not None else tf.image.random_flip_left_right(image))
  return image


def central_crop(image, size, fraction: float = 0.875):
  """Evaluation: the central ``fraction`` of each side, resized to ``size``
  (float32 [height, width, 3] in [0, 255])."""
  if fraction < 1.0:
    image = tf.image.central_crop(image, fraction)
  return _resize(image, size)


def train_dataset(config, input_context: Optional[tf.distribute.InputContext] = None,
                  batch_size: Optional[int] = None,
                  start_step: int = 0) -> tf.data.Dataset:
  """Infinite batches of (images [b, h, w, 3] float32 in [-1, 1], labels [b]
  int32); arguments as ``pipeline.train_dataset``."""
  size = tuple(config.data.crop_size)

  def example_fn(serialized, seed):
    image, label = _parse(serialized, config)
    image = random_crop_and_flip(image, size, config.data.flip, seed)
    return augment.normalize(image), label

  return pipeline.train_dataset(config, input_context, batch_size, start_step,
                                example_fn=example_fn)


def eval_dataset(config, input_context: Optional[tf.distribute.InputContext] = None,
                 pattern: Optional[str] = None) -> tf.data.Dataset:
  """One pass over the evaluation records, in file order: dicts with
  ``image`` float32 [b, h, w, 3] in [-1, 1] and ``label`` int32 [b],
  ``config.data.eval_batch_size`` per batch (the last one smaller)."""
  key = "config.data.eval_pattern"
  paths = pipeline.list_files(pattern or config.data.eval_pattern, key)
  dataset = pipeline.read_records(paths, input_context, key)
  size = tuple(config.data.crop_size)

  def prepare(serialized):
    image, label = _parse(serialized, config)
    image = central_crop(image, size, config.data.central_crop)
    return {"image": augment.normalize(image), "label": label}

  dataset = dataset.map(prepare, num_parallel_calls=pipeline.AUTOTUNE)
  return dataset.batch(config.data.eval_batch_size).prefetch(pipeline.AUTOTUNE)
