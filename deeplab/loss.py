"""Softmax cross-entropy with ignore label, class weights, hard-pixel mining,
and the weight decay of the original (L2 on conv kernels only), as its
``add_softmax_cross_entropy_loss_for_each_scale``: the loss is the summed
(class-weighted) pixel losses divided by the number of labelled pixels, or
with mining by the number of kept non-zero losses. Optionally the
Lovasz-softmax loss (Berman et al., CVPR 2018), a convex surrogate of
1 - IoU per class, added to it."""

from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf


def labelled_mask(labels, num_classes: int, ignore_label: int):
  """True where int32 ``labels`` hold a class: not the ignore label, in
  [0, num_classes)."""
  return tf.logical_and(tf.not_equal(labels, ignore_label),
                        tf.logical_and(labels >= 0, labels < num_classes))


def pixel_losses(logits, labels, num_classes: int, ignore_label: int,
                 class_weights: Sequence[float] = ()):
  """Per-pixel weighted cross-entropy and the mask of labelled pixels.

  Args:
    logits: float32 [b, h, w, c], at the labels' resolution.
    labels: int32 [b, h, w].
    num_classes: c.
    ignore_label: pixels with this label weigh 0.
    class_weights: optional weight per class (length c).

  Returns:
    (losses [b, h, w], labelled [b, h, w]): losses already weighted (0 on
    ignored pixels); labelled is 1 on pixels with a class label.
  """
  labels = tf.cast(labels, tf.int32)
  valid = labelled_mask(labels, num_classes, ignore_label)
  safe = tf.where(valid, labels, tf.zeros_like(labels))
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=safe, logits=tf.cast(logits, tf.float32))
  labelled = tf.cast(valid, tf.float32)
  weights = labelled
  if class_weights:
    weights *= tf.gather(tf.constant(class_weights, tf.float32), safe)
  return losses * weights, labelled


def mining_fraction(top_k_percent: float, step=None, mining_steps: int = 0):
  """Fraction of pixels kept at ``step``: ``top_k_percent``, or, with
  ``mining_steps``, ramped linearly from 1 at step 0 down to it at
  ``mining_steps`` (the original's ``hard_example_mining_step``)."""
  if not mining_steps:
    return tf.constant(top_k_percent, tf.float32)
  ratio = tf.minimum(1.0, tf.cast(step, tf.float32) / float(mining_steps))
  return ratio * top_k_percent + (1.0 - ratio)


def loss_sum_and_count(losses, labelled, top_k_percent: float = 1.0,
                       step=None, mining_steps: int = 0):
  """The original's loss before its division: (sum, count).

  All pixels (``top_k_percent == 1``): the summed weighted losses and the
  number of labelled pixels, so class weights change the loss, not its
  normaliser. Hard-pixel mining: the ``k = int(fraction * pixels)`` largest
  weighted losses over the whole batch (ignored pixels count in
  ``pixels`` with loss 0), and the number of them that are not 0.

  Args:
    losses: weighted pixel losses [b, h, w] (``pixel_losses``).
    labelled: mask of labelled pixels [b, h, w].
    top_k_percent: fraction of pixels kept, in (0, 1].
    step: the training step (for the ramp).
    mining_steps: steps over which the kept fraction ramps down from 1.

  Returns:
    (sum of the kept losses, number of pixels they count), float32.
  """
  if top_k_percent >= 1.0:
    return tf.reduce_sum(losses), tf.reduce_sum(labelled)
  flat = tf.reshape(losses, [-1])
  pixels = tf.cast(tf.size(flat), tf.float32)
  k = tf.cast(mining_fraction(top_k_percent, step, mining_steps) * pixels,
              tf.int32)
  kept = tf.math.top_k(flat, k=k, sorted=False).values
  return (tf.reduce_sum(kept),
          tf.reduce_sum(tf.cast(tf.not_equal(kept, 0.0), tf.float32)))


def lovasz_softmax(logits, labels, num_classes: int, ignore_label: int):
  """The Lovasz-softmax loss of a batch: the mean, over the classes present
  in its labels, of the Lovasz extension of the Jaccard loss (1 - IoU) at
  the class's pixel errors ``|[label == c] - p_c|``.

  On one-hot probabilities it equals the batch's mean of 1 - IoU over the
  present classes; in between it is the extension's piecewise-linear
  interpolation, whose gradient weighs each pixel by how much its error
  changes the IoU of its class, so a thin class's pixels weigh as much as
  its IoU depends on them, not as its share of the pixels. Static shapes
  (one sort per class over every pixel): ignored pixels get error 0 and
  sort after every pixel that counts.

  Args:
    logits: float32 [b, h, w, c], at the labels' resolution.
    labels: int [b, h, w]; ``ignore_label`` and values outside [0, c) are
      left out.
    num_classes: c.
    ignore_label: the label of unlabelled pixels.

  Returns:
    A float32 scalar in [0, 1]; 0 if no pixel is labelled.
  """
  labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
  valid = labelled_mask(labels, num_classes, ignore_label)
  probs = tf.reshape(tf.nn.softmax(tf.cast(logits, tf.float32)),
                     [-1, num_classes])
  # [c, n]: class c's foreground and errors over the pixels.
  foreground = tf.transpose(tf.one_hot(tf.where(valid, labels, -1),
                                       num_classes, dtype=tf.float32))
  errors = tf.abs(foreground - tf.transpose(probs))
  errors *= tf.cast(valid, tf.float32)[None]
  order = tf.stop_gradient(tf.argsort(errors, axis=1, direction="DESCENDING"))
  errors = tf.gather(errors, order, batch_dims=1)
  foreground = tf.gather(foreground, order, batch_dims=1)
  # The Jaccard loss of the k largest errors, for each k: its steps are the
  # extension's gradient.
  positives = tf.reduce_sum(foreground, axis=1, keepdims=True)
  intersection = positives - tf.cumsum(foreground, axis=1)
  union = positives + tf.cumsum(1.0 - foreground, axis=1)
  jaccard = 1.0 - intersection / union
  steps = tf.concat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)
  per_class = tf.reduce_sum(errors * tf.stop_gradient(steps), axis=1)
  present = tf.cast(positives[:, 0] > 0, tf.float32)
  return tf.reduce_sum(per_class * present) / tf.maximum(
      tf.reduce_sum(present), 1.0)


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
