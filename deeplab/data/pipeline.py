"""tf.data input pipelines over sharded DeepLab records.

Training: files listed and sharded per worker (``tf.distribute`` input
context), then epoch after epoch: the files in a shuffled order, interleaved
reads, records shuffled in windows, then parallel decode and augmentation,
fixed-shape batches (``drop_remainder``, as TPUs need), prefetch, all
autotuned. With ``deterministic`` the same seed gives the same batches in
the same order (stateless random ops seeded per epoch, window and element).

Every shuffle is a stateless function of (seed, epoch, window), so the
record at position ``p`` of a pipeline's stream is known without reading
the ones before it: a run resumed at step ``s`` starts at epoch
``p // records_per_epoch`` and reads at most one epoch of serialized records
to reach ``p`` (``start_step`` of ``train_dataset``), instead of all ``p``.

Evaluation: whole images at their own size, batch 1, or padded to a common
size (image with 0 after normalization, i.e. the mean pixel; label with the
ignore label) for larger batches.
"""

from __future__ import annotations

import struct
from typing import Callable, List, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from deeplab.data import augment
from deeplab.data import dataset_table
from deeplab.data import records

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


def _pipeline_files(paths: List[str], input_context,
                    key: str) -> Tuple[List[str], bool]:
  """This input pipeline's files, and whether it must keep one record in
  ``num_input_pipelines`` of them (fewer files than pipelines)."""
  if not input_context or input_context.num_input_pipelines <= 1:
    return paths, False
  pipelines = input_context.num_input_pipelines
  if len(paths) >= pipelines:
    return paths[input_context.input_pipeline_id::pipelines], False
  if input_context.input_pipeline_id == 0:
    logging.warning(
        "%s matches %d files for %d input pipelines (one per worker): "
        "every worker reads every file and keeps one record in %d. "
        "Rebuild the records with at least %d shards (datasets.build_* "
        "--num_shards; a multiple of the worker count spreads evenly).",
        key, len(paths), pipelines, pipelines, pipelines)
  return paths, True


def _interleaved(files: tf.data.Dataset, count: int, input_context,
                 shard_records: bool, deterministic: bool) -> tf.data.Dataset:
  dataset = files.interleave(
      tf.data.TFRecordDataset, cycle_length=min(count, 8),
      num_parallel_calls=AUTOTUNE, deterministic=deterministic)
  if shard_records:
    dataset = dataset.shard(input_context.num_input_pipelines,
                            input_context.input_pipeline_id)
  return dataset


def read_records(paths: List[str], input_context, key: str) -> tf.data.Dataset:
  """One pass over the pipeline's records in file order (evaluation)."""
  paths, shard_records = _pipeline_files(paths, input_context, key)
  files = tf.data.Dataset.from_tensor_slices(paths)
  return _interleaved(files, len(paths), input_context, shard_records, True)


def count_file_records(path: str) -> int:
  """Records in one TFRecord file, from their length headers alone (each
  record's payload is skipped, not read)."""
  count = 0
  with tf.io.gfile.GFile(path, "rb") as f:
    size = f.size()
    while f.tell() < size:
      header = f.read(12)  # uint64 length, uint32 masked CRC of the length.
      if len(header) < 12:
        raise ValueError(f"{path} is truncated after {count} records")
      length, = struct.unpack("<Q", header[:8])
      f.seek(f.tell() + length + 4)  # The payload and its CRC.
      count += 1
  return count


def records_per_epoch(paths: List[str], input_context=None,
                      key: str = "config.data.train_pattern") -> int:
  """Records one input pipeline reads in one pass over its files."""
  return _records_in(*_pipeline_files(paths, input_context, key), input_context)


def _records_in(mine: List[str], shard_records: bool, input_context) -> int:
  total = sum(count_file_records(p) for p in mine)
  if not shard_records:
    return total
  return len(range(input_context.input_pipeline_id, total,
                   input_context.num_input_pipelines))


def _fold_in(seed, *values):
  """A stateless-op seed [2] derived from ``seed`` [2] and ``values``."""
  for value in values:
    seed = tf.random.experimental.stateless_fold_in(seed, value)
  return seed


def _one_epoch(paths: List[str], input_context, shard_records: bool,
               seed: int, window: int, deterministic: bool, epoch):
  """The serialized records of epoch ``epoch`` (a tensor), shuffled: the
  files in an order drawn from (seed, epoch), then windows of ``window``
  consecutive records, each permuted by (seed, epoch, window index)."""
  base = tf.constant([seed, 0], tf.int64)
  order = tf.random.experimental.stateless_shuffle(
      tf.constant(paths), seed=_fold_in(base, epoch))
  records = _interleaved(tf.data.Dataset.from_tensor_slices(order),
                         len(paths), input_context, shard_records,
                         deterministic)
  if window <= 1:
    return records
  windows = records.batch(window).enumerate()
  return windows.map(
      lambda index, batch: tf.random.experimental.stateless_shuffle(
          batch, seed=_fold_in(base, epoch, index + 1))).unbatch()


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
                  example_fn: Optional[Callable] = None,
                  info: Optional[dataset_table.DatasetInfo] = None) -> tf.data.Dataset:
  """Infinite batches of (images [b, h, w, 3] float32, labels [b, h, w] int32).

  Args:
    config: experiment config (``config.data`` and ``config.dataset``).
    input_context: from ``strategy.distribute_datasets_from_function``;
      sets the per-replica batch and this worker's shard.
    batch_size: per-replica batch size; default ``config.train.batch_size``
      divided by the input context's replicas.
    start_step: training step to resume at: the pipeline starts at the
      epoch of the record it feeds at that step and skips the records of
      that epoch before it (as serialized records, before any decoding; at
      most one epoch, whatever the step), so a deterministic pipeline
      continues exactly where an interrupted run stopped.
    example_fn: ``(serialized record, seed or None) -> (image, label)``
      of another task (``deeplab.data.classification``); default: the
      segmentation records' decoding, checks and augmentation.
    info: the dataset ``config.dataset`` names, where the caller holds it
      (default: looked up in the dataset table).
  """
  data = config.data
  info = info or dataset_table.from_config(config)
  key = "config.data.train_pattern"
  paths = list_files(data.train_pattern, key)
  if batch_size is None:
    batch_size = config.train.batch_size
    if input_context is not None:
      batch_size = input_context.get_per_replica_batch_size(batch_size)
  seed = data.seed  # Also without deterministic: the same record order.
  if input_context is not None:
    seed += 1000 * input_context.input_pipeline_id
  mine, shard_records = _pipeline_files(paths, input_context, key)
  position = start_step * records_per_step(batch_size, input_context)
  epoch, offset = 0, 0
  if position:
    epoch, offset = divmod(position, _records_in(mine, shard_records, input_context))
  dataset = tf.data.Dataset.range(epoch, np.iinfo(np.int64).max).flat_map(
      lambda e: _one_epoch(mine, input_context, shard_records, seed,
                           data.shuffle_buffer, data.deterministic, e))
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

  # Indices count records from the start of training, so a resumed stream
  # draws the augmentations of an uninterrupted one.
  dataset = dataset.enumerate(start=position - offset).skip(offset).map(
      prepare, num_parallel_calls=AUTOTUNE, deterministic=data.deterministic)
  dataset = dataset.batch(batch_size, drop_remainder=True)
  if data.paste_classes and example_fn is segmentation_example:
    # Batches count from the start of training, as the records do.
    dataset = dataset.enumerate(start=position // batch_size).map(
        lambda index, batch: _paste(batch, index, data, seed,
                                    info.ignore_label),
        num_parallel_calls=AUTOTUNE, deterministic=data.deterministic)
  return dataset.prefetch(AUTOTUNE)


def _paste(batch, index, data, seed: int, ignore_label: int):
  """``augment.paste_classes`` on a training batch, seeded by its index
  with ``data.deterministic``."""
  batch_seed = (_fold_in(tf.constant([seed, 1], tf.int64), index)
                if data.deterministic else None)
  return augment.paste_classes(*batch, tuple(data.paste_classes),
                               data.paste_probability, ignore_label,
                               seed=batch_seed)


def eval_dataset(config, input_context: Optional[tf.distribute.InputContext] = None,
                 pattern: Optional[str] = None,
                 pattern_field: str = "config.data.eval_pattern",
                 info: Optional[dataset_table.DatasetInfo] = None) -> tf.data.Dataset:
  """One pass over whole evaluation images, in file order.

  ``pattern`` replaces ``config.data.eval_pattern``; ``pattern_field`` names
  it in errors; ``info`` is the dataset ``config.dataset`` names, where the
  caller holds it (resolved here otherwise).

  Yields dicts with ``image`` float32 [b, h, w, 3] in [-1, 1], ``label``
  int32 [b, h, w] (padding is the ignore label), ``filename`` [b].
  """
  data = config.data
  info = info or dataset_table.from_config(config)
  paths = list_files(pattern or data.eval_pattern, pattern_field)
  dataset = read_records(paths, input_context, pattern_field)

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
