"""tf.data input pipelines over sharded DeepLab records.

Training: files listed and sharded per worker (``tf.distribute`` input
context), interleaved reads, shuffle, repeat, parallel decode and
augmentation, fixed-shape batches (``drop_remainder``, as TPUs need),
prefetch, all autotuned. With ``deterministic`` the same seed gives the same
batches in the same order (stateless random ops seeded per element).

Evaluation: whole images at their own size, batch 1, or padded to a common
size (image with 0 after normalization, i.e. the mean pixel; label with the
ignore label) for larger batches.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from deeplab.data import augment
from deeplab.data import records
from deeplab.data import registry

AUTOTUNE = tf.data.AUTOTUNE


def list_files(pattern: str, key: str) -> List[str]:
  """Files matching ``pattern``, sorted.

  Raises:
    FileNotFoundError: naming the config key and the pattern.
  """
  if not pattern:
    raise FileNotFoundError(f"{key} is empty: set it to a glob of TFRecord "
                            "shards, e.g. /data/voc/train_aug-*.tfrecord")
  paths = sorted(tf.io.gfile.glob(pattern))
  if not paths:
    raise FileNotFoundError(f"{key}={pattern!r} matches no files")
  return paths


def count_records(pattern: str) -> int:
  """Records in the files of ``pattern`` (one fast pass over raw bytes)."""
  files = tf.io.gfile.glob(pattern)
  if not files:
    return 0
  return int(tf.data.TFRecordDataset(files).reduce(
      np.int64(0), lambda count, _: count + 1))


def _check_labels(example, num_classes: int, ignore_label: int):
  """Stops the pipeline, naming the record, on a label value out of range."""
  label = example["label"]
  bad = tf.logical_and(label >= num_classes, label != ignore_label)
  check = tf.debugging.Assert(
      tf.logical_not(tf.reduce_any(bad)),
      ["record", example["filename"], "has label values outside 0 ..",
       num_classes - 1, "that are not the ignore label", ignore_label,
       "; max value:", tf.reduce_max(label)], summarize=8)
  with tf.control_dependencies([check]):
    example["label"] = tf.identity(label)
  return example


def read_records(paths: List[str], input_context, training: bool, seed: int,
          deterministic: bool, key: str) -> tf.data.Dataset:
  files = tf.data.Dataset.from_tensor_slices(paths)
  shard_records = False
  if input_context and input_context.num_input_pipelines > 1:
    pipelines = input_context.num_input_pipelines
    if len(paths) >= pipelines:
      files = files.shard(pipelines, input_context.input_pipeline_id)
    else:
      shard_records = True
      if input_context.input_pipeline_id == 0:
        logging.warning(
            "%s matches %d files for %d input pipelines (one per worker): "
            "every worker reads every file and keeps one record in %d. "
            "Rebuild the records with at least %d shards (datasets.build_* "
            "--num_shards; a multiple of the worker count spreads evenly).",
            key, len(paths), pipelines, pipelines, pipelines)
  if training:
    files = files.shuffle(len(paths), seed=seed if deterministic else None,
                          reshuffle_each_iteration=True)
  dataset = files.interleave(
      tf.data.TFRecordDataset, cycle_length=min(len(paths), 8),
      num_parallel_calls=AUTOTUNE, deterministic=deterministic or not training)
  if shard_records:
    dataset = dataset.shard(input_context.num_input_pipelines,
                            input_context.input_pipeline_id)
  return dataset


def resize_range(config):
  """(min_size, max_size, factor) of ``augment.resize_to_range``."""
  data = config.data
  return (data.min_resize_value, data.max_resize_value, data.resize_factor)


def records_per_step(batch_size: int,
                     input_context: Optional[tf.distribute.InputContext]) -> int:
  """Records one input pipeline feeds per training step.

  A pipeline yields per-replica batches and feeds every replica of its host
  (``tf.distribute`` hands its consecutive batches to them in turn): with 8
  GPUs or TPU cores per host it yields 8 batches a step, not one.

  Args:
    batch_size: per-replica batch size.
    input_context: the pipeline's input context (None: one replica).
  """
  if input_context is None:
    return batch_size
  replicas, pipelines = (input_context.num_replicas_in_sync,
                         input_context.num_input_pipelines)
  if replicas % pipelines:
    raise ValueError(f"{replicas} replicas do not split evenly over "
                     f"{pipelines} input pipelines")
  return batch_size * (replicas // pipelines)


def train_dataset(config, input_context: Optional[tf.distribute.InputContext] = None,
                  batch_size: Optional[int] = None,
                  start_step: int = 0,
                  example_fn: Optional[Callable] = None) -> tf.data.Dataset:
  """Infinite batches of (images [b, h, w, 3] float32, labels [b, h, w] int32).

  Args:
    config: experiment config (``config.data`` and ``config.dataset``).
    input_context: from ``strategy.distribute_datasets_from_function``;
      sets the per-replica batch and this worker's shard.
    batch_size: per-replica batch size; default ``config.train.batch_size``
      divided by the input context's replicas.
    start_step: training step to resume at: the records this pipeline fed
      in the first ``start_step`` steps are skipped (as serialized records,
      before any decoding), so a deterministic pipeline continues exactly
      where an interrupted run stopped.
    example_fn: ``(serialized record, seed or None) -> (image, label)``
      of another task (``deeplab.data.classification``); default: the
      segmentation records' decoding, checks and augmentation.
  """
  data = config.data
  info = registry.from_config(config)
  paths = list_files(data.train_pattern, "config.data.train_pattern")
  if batch_size is None:
    batch_size = config.train.batch_size
    if input_context is not None:
      batch_size = input_context.get_per_replica_batch_size(batch_size)
  seed = data.seed
  if input_context is not None:
    seed += 1000 * input_context.input_pipeline_id
  dataset = read_records(paths, input_context, True, seed, data.deterministic,
                  "config.data.train_pattern")
  dataset = dataset.shuffle(data.shuffle_buffer,
                            seed=seed if data.deterministic else None)
  dataset = dataset.repeat()
  options = dict(crop_size=tuple(data.crop_size),
                 scale_range=(data.min_scale, data.max_scale),
                 scale_step=data.scale_step, flip=data.flip,
                 photometric_jitter=data.photometric,
                 ignore_label=info.ignore_label,
                 resize_range=resize_range(config))

  def segmentation_example(serialized, element_seed):
    example = _check_labels(records.parse(serialized, info.ignore_label),
                            info.num_classes, info.ignore_label)
    return augment.preprocess_train(example["image"], example["label"],
                                    seed=element_seed, **options)

  example_fn = example_fn or segmentation_example

  def prepare(index, serialized):
    element_seed = (tf.stack([tf.cast(seed, tf.int64), index])
                    if data.deterministic else None)
    return example_fn(serialized, element_seed)

  dataset = dataset.enumerate().skip(
      start_step * records_per_step(batch_size, input_context)).map(
      prepare, num_parallel_calls=AUTOTUNE, deterministic=data.deterministic)
  dataset = dataset.batch(batch_size, drop_remainder=True)
  return dataset.prefetch(AUTOTUNE)


def eval_dataset(config, input_context: Optional[tf.distribute.InputContext] = None,
                 pattern: Optional[str] = None,
                 pattern_field: str = "config.data.eval_pattern") -> tf.data.Dataset:
  """One pass over whole evaluation images, in file order.

  ``pattern`` replaces ``config.data.eval_pattern``; ``pattern_field`` names
  it in errors.

  Yields dicts with ``image`` float32 [b, h, w, 3] in [-1, 1], ``label``
  int32 [b, h, w] (padding is the ignore label), ``filename`` [b].
  """
  data = config.data
  info = registry.from_config(config)
  paths = list_files(pattern or data.eval_pattern, pattern_field)
  dataset = read_records(paths, input_context, False, data.seed, True, pattern_field)

  def prepare(serialized):
    example = _check_labels(records.parse(serialized, info.ignore_label),
                            info.num_classes, info.ignore_label)
    image, label = augment.preprocess_eval(example["image"], example["label"],
                                           resize_range(config))
    return {"image": image, "label": label, "filename": example["filename"]}

  dataset = dataset.map(prepare, num_parallel_calls=AUTOTUNE)
  if data.eval_batch_size == 1:
    dataset = dataset.batch(1)
  else:
    dataset = dataset.padded_batch(
        data.eval_batch_size,
        padding_values={"image": 0.0, "label": info.ignore_label,
                        "filename": ""})
  return dataset.prefetch(AUTOTUNE)
