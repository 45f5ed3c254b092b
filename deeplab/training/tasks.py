"""What training does differently per task: the task as an object.

One training loop (``loop.py``, ``trainer.py``) serves every task; a task
says how its model is built, what its training batches are, how one
replica's loss is summed and normalised, and what the training log keeps
of an evaluation. ``config.model.task`` picks it
(``make_task``). Evaluation dispatches on the same field in
``deeplab.evaluation`` (inference code never reaches ``deeplab.training``).

The loss of a replica is ``(sum, count)``: the trainer divides the sum by
the count all-reduced over the replicas, so gradients equal those of one
device on the global batch whatever the replica count.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf

from deeplab import model as model_lib
from deeplab.data import classification
from deeplab.data import pipeline
from deeplab.data import registry
from deeplab.training import loss as loss_lib


class SegmentationTask:
  """DeepLab on segmentation records: the original's pixel loss (ignore
  label, class weights, hard-pixel mining)."""

  name = "segmentation"

  def __init__(self, config):
    self.config = config
    self.info = registry.from_config(config)

  def build_model(self, **overrides) -> keras.Model:
    return model_lib.build_model(self.config, **overrides)

  def train_dataset(self, input_context: Optional[tf.distribute.InputContext],
                    start_step: int) -> tf.data.Dataset:
    return pipeline.train_dataset(self.config, input_context,
                                  start_step=start_step)

  def loss_sum_and_count(self, logits, labels, step) -> Tuple[tf.Tensor, tf.Tensor]:
    train = self.config.train
    losses, labelled = loss_lib.pixel_losses(
        logits, labels, self.info.num_classes, self.info.ignore_label,
        tuple(train.class_weights))
    total, count = loss_lib.loss_sum_and_count(
        losses, labelled, train.top_k_percent_pixels, step,
        train.hard_example_mining_step)
    if train.lovasz_weight:
      # Weighted by this replica's count: over the global count (the
      # trainer's division) it is the replicas' count-weighted mean, and on
      # one replica the loss itself.
      every = train.lovasz_pixel_stride
      total += train.lovasz_weight * count * loss_lib.lovasz_softmax(
          logits[:, ::every, ::every], labels[:, ::every, ::every],
          self.info.num_classes, self.info.ignore_label)
    return total, count

  def validation_log(self, metrics) -> Dict:
    """What the training log records of an evaluation's metrics."""
    return {"val_miou": metrics["miou"],
            "val_per_class_iou": metrics["per_class_iou"]}


class ClassificationTask:
  """A backbone classifier on classification records (backbone
  pretraining): softmax cross-entropy per image, normalised by the number
  of images."""

  name = "classification"

  def __init__(self, config):
    self.config = config

  def build_model(self, **overrides) -> keras.Model:
    return model_lib.build_model(self.config, **overrides)

  def train_dataset(self, input_context: Optional[tf.distribute.InputContext],
                    start_step: int) -> tf.data.Dataset:
    return classification.train_dataset(self.config, input_context,
                                        start_step=start_step)

  def loss_sum_and_count(self, logits, labels, step) -> Tuple[tf.Tensor, tf.Tensor]:
    del step  # No schedule inside the loss.
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(losses), tf.cast(tf.size(losses), tf.float32)

  def validation_log(self, metrics) -> Dict:
    """What the training log records of an evaluation's metrics."""
    return {"val_top_1_accuracy": metrics["top_1_accuracy"],
            "val_top_5_accuracy": metrics["top_5_accuracy"]}


TASKS = {task.name: task for task in (SegmentationTask, ClassificationTask)}


def make_task(config):
  """The task ``config.model.task`` names (validated by the config)."""
  return TASKS[config.model.task](config)
