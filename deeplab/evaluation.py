"""Evaluation: confusion matrix, mIoU and friends, multi-scale + flip inference.

Inference at any image size: the image is padded (bottom/right, with the
mean pixel) to the next size of the form ``output_stride * k + 1``, where
the original's aligned-corner resizes line up exactly, and the logits are
sliced back. Multi-scale inference averages the softmax probabilities of
every scale (and of the flipped input), as the original's
``predict_labels_multi_scale`` does; with scales (1.0,) and no flip it is
plain inference.

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


def padded_size(size, output_stride: int):
  """Smallest ``output_stride * k + 1 >= size`` (works on ints and tensors)."""
  return ((size - 1 + output_stride - 1) // output_stride) * output_stride + 1


def _resize(images, size):
  return tf.raw_ops.ResizeBilinear(images=images, size=size,
                                   align_corners=True)


def _forward(model, images, output_stride: int):
  """Logits at the images' size, padding to an aligned size first."""
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  target_h = padded_size(height, output_stride)
  target_w = padded_size(width, output_stride)
  padded = tf.pad(images, [[0, 0], [0, target_h - height],
                           [0, target_w - width], [0, 0]])
  logits = model(padded, training=False)
  return tf.cast(logits[:, :height, :width, :], tf.float32)


def predict_probabilities(model, images, scales: Sequence[float] = (1.0,),
                          flip: bool = False, output_stride: Optional[int] = None):
  """Class probabilities [b, h, w, c] of images [b, h, w, 3] in [-1, 1].

  Args:
    model: a ``DeepLab``.
    images: float32 batch.
    scales: input scales whose probabilities are averaged.
    flip: also average the left-right flipped input.
    output_stride: padding alignment (default: the model's).
  """
  output_stride = output_stride or model.args.output_stride
  size = tf.shape(images)[1:3]
  total = 0.0
  count = 0
  for scale in scales:
    if scale == 1.0:
      scaled = images
    else:
      scaled_size = tf.maximum(
          tf.cast(tf.cast(size, tf.float32) * scale, tf.int32), 1)
      scaled = _resize(images, scaled_size)
    for flipped in ((False, True) if flip else (False,)):
      inputs = tf.reverse(scaled, [2]) if flipped else scaled
      logits = _forward(model, inputs, output_stride)
      if flipped:
        logits = tf.reverse(logits, [2])
      if scale != 1.0:
        logits = _resize(logits, size)
      total += tf.nn.softmax(logits)
      count += 1
  return total / count


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
  """mIoU, per-class IoU, pixel accuracy, mean accuracy, frequency-weighted IoU.

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
  total = m.sum()
  frequency = truth / max(total, 1)
  return {
      "miou": float(np.nanmean(iou)) if present.any() else 0.0,
      "per_class_iou": {class_names[c]: (None if math.isnan(v) else float(v))
                        for c, v in zip(evaluated, iou)},
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
              flip: bool = False, jit_compile: bool = False):
  """The ``tf.function`` ``(images, labels) -> summed confusion matrix``.

  Made once per model, strategy and settings; later calls return the same
  function, so evaluating again (``train_and_eval`` after every checkpoint)
  reuses its traces instead of tracing and optimizing the graph anew.
  """
  key = (strategy, num_classes, ignore_label, tuple(scales), bool(flip),
         bool(jit_compile))
  steps = _EVAL_STEPS.setdefault(model, {})
  if key in steps:
    return steps[key]
  model_ref = weakref.ref(model)

  def step(images, labels):
    probabilities = predict_probabilities(model_ref(), images, scales, flip)
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
             jit_compile: bool = False):
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
    jit_compile: compile each replica's step with XLA (what a TPU does).

  Returns:
    The summed confusion matrix, numpy int64.
  """
  step = eval_step(model, strategy, num_classes, ignore_label, scales, flip,
                   jit_compile)
  total = np.zeros((num_classes, num_classes), np.int64)
  for i, batch in enumerate(dataset):
    if max_batches is not None and i >= max_batches:
      break
    total += step(batch["image"], batch["label"]).numpy()
  return total

