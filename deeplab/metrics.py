"""Segmentation metrics: the confusion matrix, and mIoU and friends from it.

``confusion_matrix`` runs inside compiled evaluation steps (static shapes,
XLA, TPUs); ``metrics_from_confusion`` turns the summed matrix into the
numbers evaluation writes (``deeplab.evaluation``).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf


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
