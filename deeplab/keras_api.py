"""Keras-native training: a loss and a mean-IoU metric for
``model.compile``, and the pipeline's batches as ``(image, label)`` pairs
for ``model.fit`` and ``model.evaluate``.

``SegmentationLoss`` is the custom loop's pixel loss (``deeplab.loss``:
softmax cross-entropy with the ignore label and class weights, summed and
divided by the labelled pixels of the batch); ``MeanIoU`` accumulates
``deeplab.metrics``' confusion matrix and scores it as evaluation does
(classes absent from labels and predictions are left out of the mean, an
in-range ignore label is no class). Both take logits of any size: they are
resized bilinearly to the labels' size first (the model's own mapping,
corners aligned by default), and cast to float32, so mixed precision
models fit too.

The custom loop (``train.py``) stays the way to the paper's recipe:
hard-pixel mining, the Lovasz loss, weight decay on conv kernels only,
gradient multipliers, accumulation, synchronized batch norm across
replicas, time budgets and preemption.

Example:
  >>> import deeplab
  >>> from deeplab.data import pipeline
  >>> model = deeplab.build_model(config)
  >>> model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
  ...               loss=deeplab.SegmentationLoss(num_classes=5),
  ...               metrics=[deeplab.MeanIoU(num_classes=5)])
  >>> model.fit(pipeline.train_dataset(config), steps_per_epoch=100)
  >>> model.evaluate(deeplab.image_label_pairs(pipeline.eval_dataset(config)))
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from deeplab import inference
from deeplab import loss as loss_lib
from deeplab import metrics as metrics_lib


def logits_at_labels(logits, labels, align_corners: bool = True):
  """float32 ``logits`` [b, h', w', c] resized bilinearly to the size of
  ``labels`` [b, h, w] (unchanged where the sizes agree)."""
  logits = tf.cast(logits, tf.float32)
  if (logits.shape[1:3].is_fully_defined() and labels.shape[1:3].is_fully_defined()
      and logits.shape[1:3] == labels.shape[1:3]):
    return logits
  return inference.resize_bilinear(logits, tf.shape(labels)[1:3], align_corners)


def _labels(y_true):
  """int32 [b, h, w] labels; a trailing channel of 1 is dropped."""
  labels = tf.cast(y_true, tf.int32)
  if labels.shape.rank == 4:
    labels = tf.squeeze(labels, -1)
  return labels


def _check_classes(num_classes, class_weights=()):
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
  if class_weights and len(class_weights) != num_classes:
    raise ValueError(f"class_weights must have num_classes={num_classes} "
                     f"values, got {len(class_weights)}")


@keras.saving.register_keras_serializable(package="deeplab")
class SegmentationLoss(keras.losses.Loss):
  """The pixel loss of the custom loop, as a Keras loss.

  ``(labels [b, h, w] int, logits [b, h', w', c]) -> scalar``: softmax
  cross-entropy of every labelled pixel (not ``ignore_label``, in [0, c)),
  weighted by its class's ``class_weights``, summed and divided by the
  number of labelled pixels of the batch (``deeplab.loss.pixel_losses``),
  the original's normalisation. The loss of a batch is not a mean of
  per-image losses, so ``sample_weight`` scales the whole batch's loss.

  Args:
    num_classes: c.
    ignore_label: the label of pixels left out.
    class_weights: a weight per class (c values), or () for none.
    align_corners: the mapping of the resize of logits to the labels' size
      (``ModelArgs.align_corners``).
    name: the loss's name.
    **kwargs: Keras' loss arguments (``reduction``, ``dtype``).

  Raises:
    ValueError: num_classes below 1, or class_weights not of its length.
  """

  def __init__(self, num_classes: int, ignore_label: int = 255,
               class_weights: Sequence[float] = (), align_corners: bool = True,
               name: str = "segmentation_loss", **kwargs):
    class_weights = tuple(float(w) for w in class_weights or ())
    _check_classes(num_classes, class_weights)
    super().__init__(name=name, **kwargs)
    self.num_classes, self.ignore_label = num_classes, int(ignore_label)
    self.class_weights, self.align_corners = class_weights, bool(align_corners)

  def call(self, y_true, y_pred):
    labels = _labels(y_true)
    losses, labelled = loss_lib.pixel_losses(
        logits_at_labels(y_pred, labels, self.align_corners), labels,
        self.num_classes, self.ignore_label, self.class_weights)
    total, count = loss_lib.loss_sum_and_count(losses, labelled)
    return total / tf.maximum(count, 1.0)

  def get_config(self):
    config = super().get_config()
    config.update(num_classes=self.num_classes, ignore_label=self.ignore_label,
                  class_weights=list(self.class_weights),
                  align_corners=self.align_corners)
    return config


@keras.saving.register_keras_serializable(package="deeplab")
class MeanIoU(keras.metrics.Metric):
  """Mean intersection over union of segmentation logits, as evaluation
  scores it (``deeplab.metrics.metrics_from_confusion``' ``miou``).

  ``update_state(labels [b, h, w] int, logits [b, h', w', c])`` adds the
  batch's confusion matrix (``deeplab.metrics.confusion_matrix``: pixels
  of ``ignore_label`` or outside [0, c) left out; int64 counts, exact over
  any number of pixels) of the logits' argmax at the labels' size;
  ``result`` is the mean IoU over the classes that occur in labels or
  predictions (an in-range ``ignore_label`` is no class), 0 before any.

  Args:
    num_classes: c.
    ignore_label: the label of pixels left out.
    align_corners: the mapping of the resize of logits to the labels' size.
    name: the metric's name (``miou`` in ``fit``'s logs).
    **kwargs: Keras' metric arguments (``dtype``).

  Raises:
    ValueError: num_classes below 1.
  """

  def __init__(self, num_classes: int, ignore_label: int = 255,
               align_corners: bool = True, name: str = "miou", **kwargs):
    _check_classes(num_classes)
    super().__init__(name=name, **kwargs)
    self.num_classes, self.ignore_label = num_classes, int(ignore_label)
    self.align_corners = bool(align_corners)
    self.confusion = self.add_variable(
        shape=(num_classes, num_classes), initializer="zeros", dtype="int64",
        name="confusion")

  def update_state(self, y_true, y_pred, sample_weight: Optional[tf.Tensor] = None):
    labels = _labels(y_true)
    predictions = tf.argmax(logits_at_labels(y_pred, labels, self.align_corners), -1)
    self.confusion.assign_add(metrics_lib.confusion_matrix(
        labels, predictions, self.num_classes, self.ignore_label))

  def result(self):
    evaluated = [c for c in range(self.num_classes) if c != self.ignore_label]
    matrix = tf.cast(tf.convert_to_tensor(self.confusion), tf.float64)
    matrix = tf.gather(tf.gather(matrix, evaluated, axis=0), evaluated, axis=1)
    hits = tf.linalg.diag_part(matrix)
    union = tf.reduce_sum(matrix, 0) + tf.reduce_sum(matrix, 1) - hits
    present = tf.cast(union > 0, tf.float64)
    iou = hits / tf.maximum(union, 1.0)
    miou = tf.reduce_sum(iou * present) / tf.maximum(tf.reduce_sum(present), 1.0)
    return tf.cast(miou, self.dtype)

  def reset_state(self):
    self.confusion.assign(tf.zeros_like(self.confusion))

  def get_config(self):
    config = super().get_config()
    config.update(num_classes=self.num_classes, ignore_label=self.ignore_label,
                  align_corners=self.align_corners)
    return config


def image_label_pairs(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """``dataset``'s batches as ``(image, label)`` pairs, what ``fit`` and
  ``evaluate`` take: the evaluation pipeline's dicts
  (``pipeline.eval_dataset``: ``image``, ``label``, ``filename``) are
  mapped; pairs (``pipeline.train_dataset``) pass as they are."""
  if isinstance(dataset.element_spec, dict):
    return dataset.map(lambda batch: (batch["image"], batch["label"]))
  return dataset
