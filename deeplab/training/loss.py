"""Softmax cross-entropy with ignore label, class weights, hard-pixel mining,
and the weight decay of the original (L2 on conv kernels only)."""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf


def pixel_losses(logits, labels, num_classes: int, ignore_label: int,
                 class_weights: Sequence[float] = ()):
  """Per-pixel weighted cross-entropy and weights (0 on ignored pixels).

  Args:
    logits: float32 [b, h, w, c], at the labels' resolution.
    labels: int32 [b, h, w].
    num_classes: c.
    ignore_label: pixels with this label weigh 0.
    class_weights: optional weight per class (length c).

  Returns:
    (losses [b, h, w], weights [b, h, w]); losses already weighted.
  """
  labels = tf.cast(labels, tf.int32)
  valid = tf.logical_and(tf.not_equal(labels, ignore_label),
                         tf.logical_and(labels >= 0, labels < num_classes))
  safe = tf.where(valid, labels, tf.zeros_like(labels))
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=safe, logits=tf.cast(logits, tf.float32))
  weights = tf.cast(valid, tf.float32)
  if class_weights:
    weights *= tf.gather(tf.constant(class_weights, tf.float32), safe)
  return losses * weights, weights


def hard_pixel_losses(losses, weights, top_k_percent: float):
  """Keeps the ``top_k_percent`` largest pixel losses of each image (the
  original's hard example mining), zeroing the rest."""
  if top_k_percent >= 1.0:
    return losses, weights
  batch = tf.shape(losses)[0]
  flat = tf.reshape(losses, [batch, -1])
  k = tf.maximum(1, tf.cast(tf.cast(tf.shape(flat)[1], tf.float32) * top_k_percent, tf.int32))
  threshold = tf.math.top_k(flat, k=k).values[:, -1:]
  keep = tf.cast(flat >= threshold, tf.float32)
  keep *= tf.cast(tf.reshape(weights, [batch, -1]) > 0, tf.float32)
  shape = tf.shape(losses)
  return tf.reshape(flat * keep, shape), tf.reshape(keep, shape)


def decayed_kernels(model: keras.Model):
  """Kernels the original regularizes: every conv kernel, but not depthwise
  kernels (``regularize_depthwise=False``), biases or batch norm."""
  return [layer.kernel for layer in model.layers
          if isinstance(layer, keras.layers.Conv2D) and layer.trainable]


def weight_decay_loss(kernels, weight_decay: float):
  """``weight_decay * sum(w ** 2) / 2``, slim's l2_regularizer."""
  if not weight_decay or not kernels:
    return tf.constant(0.0)
  return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(k, tf.float32))
                                  for k in kernels])
