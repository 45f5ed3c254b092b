"""Evaluation: confusion matrix, mIoU and friends, multi-scale + flip inference.

Inference at any image size: as the original's evaluation and export, the
image is padded (bottom/right, with the mean pixel) up to the evaluation
crop size (``eval_crop_size``, 513x513 for VOC), so the image-pooling
branch averages over the padded area as it did there; a dimension larger
than the crop (or every dimension, without a crop size) is padded to the
next size of the form ``output_stride * k + 1``, where the aligned-corner
resizes line up exactly. The result is sliced back to the image.
Multi-scale inference averages the softmax probabilities of every scale
(and of the flipped input), as the original's ``predict_labels_multi_scale``
does; with scales (1.0,) and no flip it is plain inference.

The evaluation step compiles with XLA (``jit_compile=True``): only images
and labels enter it (file names stay on the host), and ignored pixels are
zero weights, not a ``boolean_mask`` of data-dependent shape. Its
``tf.function`` is made once per model and settings and reused by every
later evaluation.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence
import weakref

import numpy as np
import tensorflow as tf

from deeplab import progress


def padded_size(size, output_stride: int):
  """Smallest ``output_stride * k + 1 >= size`` (works on ints and tensors)."""
  return ((size - 1 + output_stride - 1) // output_stride) * output_stride + 1


def target_size(size, output_stride: int, crop: Optional[int] = None):
  """What a dimension of ``size`` is padded to: ``crop`` if it fits in it,
  else the next ``output_stride * k + 1`` (ints and tensors)."""
  aligned = padded_size(size, output_stride)
  if crop is None:
    return aligned
  if isinstance(size, int):
    return crop if size <= crop else aligned
  return tf.where(size <= crop, crop, aligned)


def _resize(images, size):
  return tf.raw_ops.ResizeBilinear(images=images, size=size,
                                   align_corners=True)


def scale_dimension(size, scale: float):
  """The original's ``scale_dimension``: ``(size - 1) * scale + 1``, so an
  aligned size (``output_stride * k + 1``) keeps its corner-aligned grid."""
  return tf.cast((tf.cast(size, tf.float32) - 1.0) * scale + 1.0, tf.int32)


def predict_probabilities(model, images, scales: Sequence[float] = (1.0,),
                          flip: bool = False, output_stride: Optional[int] = None,
                          crop_size: Optional[Sequence[int]] = None):
  """Class probabilities [b, h, w, c] of images [b, h, w, 3] in [-1, 1].

  The images are padded (``target_size``), each scale resizes the padded
  images to ``scale_dimension`` of the padded size, the logits go back to
  the padded size, their softmax is averaged, and the result is sliced
  back to the images: the original's ``predict_labels_multi_scale`` on its
  padded evaluation crop.

  Args:
    model: a ``DeepLab`` (or any callable ``model(images, training=False)``
      returning logits at the input size).
    images: float32 batch.
    scales: input scales whose probabilities are averaged.
    flip: also average the left-right flipped input.
    output_stride: padding alignment (default: the model's).
    crop_size: (height, width) images are padded to with the mean pixel
      (the original's ``eval_crop_size``); None pads to the alignment only.
  """
  output_stride = output_stride or model.args.output_stride
  crop_h, crop_w = tuple(crop_size) if crop_size else (None, None)
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  padded_h = target_size(height, output_stride, crop_h)
  padded_w = target_size(width, output_stride, crop_w)
  # 0 after normalization is the mean pixel.
  padded = tf.pad(images, [[0, 0], [0, padded_h - height],
                           [0, padded_w - width], [0, 0]])
  total = 0.0
  count = 0
  for scale in scales:
    if scale == 1.0:
      scaled = padded
    else:
      scaled = _resize(padded, tf.maximum(
          scale_dimension(tf.stack([padded_h, padded_w]), scale), 1))
    for flipped in ((False, True) if flip else (False,)):
      inputs = tf.reverse(scaled, [2]) if flipped else scaled
      logits = tf.cast(model(inputs, training=False), tf.float32)
      if flipped:
        logits = tf.reverse(logits, [2])
      if scale != 1.0:
        logits = _resize(logits, tf.stack([padded_h, padded_w]))
      total += tf.nn.softmax(logits)
      count += 1
  return (total / count)[:, :height, :width, :]


def confusion_matrix(labels, predictions, num_classes: int, ignore_label: int):
  """[num_classes, num_classes] int64 counts (rows: truth), ignore excluded.

  Static shapes only (XLA, TPUs): every pixel is counted with weight 1, or
  0 if ignored or out of range.
  """
  labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
  predictions = tf.reshape(tf.cast(predictions, tf.int32), [-1])
  valid = tf.logical_and(tf.not_equal(labels, ignore_label),
                         tf.logical_and(labels >= 0, labels < num_classes))
  predictions = tf.clip_by_value(predictions, 0, num_classes - 1)
  cells = tf.where(valid, labels, 0) * num_classes + predictions
  # int32 per batch (a batch has far fewer than 2**31 pixels); int64 sums.
  counts = tf.math.unsorted_segment_sum(tf.cast(valid, tf.int32), cells,
                                        num_classes * num_classes)
  return tf.cast(tf.reshape(counts, [num_classes, num_classes]), tf.int64)


def metrics_from_confusion(matrix: np.ndarray, class_names: Sequence[str],
                           evaluated: Optional[Sequence[int]] = None) -> Dict:
  """mIoU, per-class IoU, recall and precision, pixel accuracy, mean
  accuracy, frequency-weighted IoU.

  Classes that never occur in the ground truth and are never predicted
  have no IoU and are left out of the mean (as a running mIoU does).
  """
  matrix = np.asarray(matrix, np.float64)
  evaluated = list(range(len(matrix)) if evaluated is None else evaluated)
  m = matrix[np.ix_(evaluated, evaluated)]
  truth, predicted, hits = m.sum(1), m.sum(0), np.diag(m)
  union = truth + predicted - hits
  present = union > 0
  iou = np.where(present, hits / np.maximum(union, 1), np.nan)
  accuracy = np.where(truth > 0, hits / np.maximum(truth, 1), np.nan)
  precision = np.where(predicted > 0, hits / np.maximum(predicted, 1), np.nan)
  total = m.sum()
  frequency = truth / max(total, 1)

  def per_class(values):
    return {class_names[c]: (None if math.isnan(v) else float(v))
            for c, v in zip(evaluated, values)}

  return {
      "miou": float(np.nanmean(iou)) if present.any() else 0.0,
      "per_class_iou": per_class(iou),
      # Recall (the class's pixels found) and precision (the pixels given
      # the class that have it): which of the two an IoU lacks.
      "per_class_recall": per_class(accuracy),
      "per_class_precision": per_class(precision),
      "pixel_accuracy": float(hits.sum() / max(total, 1)),
      "mean_accuracy": float(np.nanmean(accuracy)) if (truth > 0).any() else 0.0,
      "frequency_weighted_iou": float(np.nansum(frequency * np.nan_to_num(iou))),
      "pixels": int(total),
  }


# model -> {(strategy, settings): the compiled step}. Weak keys: a model
# that is gone takes its functions with it (the steps hold it weakly).
_EVAL_STEPS = weakref.WeakKeyDictionary()


def eval_step(model, strategy: tf.distribute.Strategy, num_classes: int,
              ignore_label: int, scales: Sequence[float] = (1.0,),
              flip: bool = False, jit_compile: bool = False,
              crop_size: Optional[Sequence[int]] = None):
  """The ``tf.function`` ``(images, labels) -> summed confusion matrix``.

  Made once per model, strategy and settings; later calls return the same
  function, so evaluating again (``train_and_eval`` after every checkpoint)
  reuses its traces instead of tracing and optimizing the graph anew.
  """
  crop_size = tuple(crop_size) if crop_size else None
  key = (strategy, num_classes, ignore_label, tuple(scales), bool(flip),
         bool(jit_compile), crop_size)
  steps = _EVAL_STEPS.setdefault(model, {})
  if key in steps:
    return steps[key]
  model_ref = weakref.ref(model)

  def step(images, labels):
    probabilities = predict_probabilities(model_ref(), images, scales, flip,
                                          crop_size=crop_size)
    return confusion_matrix(labels, tf.argmax(probabilities, -1),
                            num_classes, ignore_label)

  if jit_compile:
    step = tf.function(step, jit_compile=True)

  @tf.function(reduce_retracing=True)
  def distributed_step(images, labels):
    per_replica = strategy.run(step, args=(images, labels))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

  steps[key] = distributed_step
  return distributed_step


def evaluate(model, dataset, strategy: tf.distribute.Strategy, num_classes: int,
             ignore_label: int, scales: Sequence[float] = (1.0,),
             flip: bool = False, max_batches: Optional[int] = None,
             crop_size: Optional[Sequence[int]] = None,
             jit_compile: bool = False,
             bar: Optional[progress.Progress] = None):
  """Accumulates the confusion matrix over ``dataset`` across replicas.

  Args:
    model: the model (created under ``strategy``'s scope).
    dataset: a distributed or plain dataset of dicts with ``image``/``label``.
    strategy: the strategy the model lives in.
    num_classes: classes of the confusion matrix.
    ignore_label: excluded label.
    scales: eval scales.
    flip: add flipped inputs.
    max_batches: stop after this many batches (None: the whole dataset).
    crop_size: evaluation crop size images are padded to (None: alignment).
    jit_compile: compile each replica's step with XLA (what a TPU does).
    bar: a progress display, advanced by the images of each batch.

  Returns:
    The summed confusion matrix, numpy int64.
  """
  step = eval_step(model, strategy, num_classes, ignore_label, scales, flip,
                   jit_compile, crop_size)
  total = np.zeros((num_classes, num_classes), np.int64)
  for i, batch in enumerate(dataset):
    if max_batches is not None and i >= max_batches:
      break
    total += step(batch["image"], batch["label"]).numpy()
    if bar is not None:
      bar.update(sum(int(tf.shape(images)[0]) for images in
                     strategy.experimental_local_results(batch["image"])))
  return total

