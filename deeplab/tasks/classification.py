"""Classification: a backbone classifier on classification records
(backbone pretraining), scored by top-1 and top-5 accuracy.

Loss: softmax cross-entropy per image, normalised by the number of images.
Inputs: ``deeplab.data.classification`` (Inception-style training crops,
central evaluation crops).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from deeplab import classifier
from deeplab import progress
from deeplab.data import classification as classification_data
from deeplab.data import dataset_table
from deeplab.data import pipeline
from deeplab.tasks import base


class ClassificationTask(base.Task):
  """A backbone classifier on classification records (backbone
  pretraining): softmax cross-entropy per image, normalised by the number
  of images; top-1 and top-5 accuracy."""

  name = "classification"
  MODEL = classifier.Classifier
  MAIN_METRIC = "top_1_accuracy"

  def train_dataset(self, input_context: Optional[tf.distribute.InputContext],
                    start_step: int) -> tf.data.Dataset:
    return classification_data.train_dataset(self.config, input_context,
                                             start_step=start_step)

  def loss_sum_and_count(self, logits, labels, step) -> Tuple[tf.Tensor, tf.Tensor]:
    del step  # No schedule inside the loss.
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))
    return tf.reduce_sum(losses), tf.cast(tf.size(losses), tf.float32)

  def evaluate(self, model, strategy: tf.distribute.Strategy,
               pattern: Optional[str] = None) -> Dict:
    """``{"top_1_accuracy", "top_5_accuracy", "examples"}`` on the eval
    records (top-5 is top-k with k the class count when there are fewer
    than 5 classes)."""
    config = self.config
    info = dataset_table.from_config(config)
    top_k = min(5, info.num_classes)
    dataset = strategy.distribute_datasets_from_function(
        lambda context: classification_data.eval_dataset(config, context,
                                                         pattern))
    bar = progress.Progress(pipeline.count_records(
        pattern or config.data.eval_pattern), "eval", unit="images")

    @tf.function
    def counts(batch):
      def replica(images, labels):
        logits = tf.cast(model(images, training=False), tf.float32)
        labels = tf.cast(labels, tf.int32)
        return tf.stack([
            tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32)),
            tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, top_k), tf.float32)),
            tf.cast(tf.size(labels), tf.float32)])
      per_replica = strategy.run(replica, args=(batch["image"], batch["label"]))
      return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    totals = np.zeros(3)
    for batch in dataset:
      batch_counts = counts(batch).numpy()
      totals += batch_counts
      bar.update(int(batch_counts[2]))
    top_1, top_5, examples = totals
    return {"top_1_accuracy": float(top_1 / max(examples, 1)),
            "top_5_accuracy": float(top_5 / max(examples, 1)),
            "examples": int(examples)}

  def summarize(self, model, metrics: Dict, step: int,
                pattern: Optional[str] = None) -> None:
    """Scalars of both accuracies."""
    del model, pattern  # No images are shown.
    tf.summary.scalar("top_1_accuracy", metrics["top_1_accuracy"], step)
    tf.summary.scalar("top_5_accuracy", metrics["top_5_accuracy"], step)
    logging.info("Step %d: top-1 accuracy %.4f, top-5 accuracy %.4f (%d images)",
                 step, metrics["top_1_accuracy"], metrics["top_5_accuracy"],
                 metrics["examples"])

  def validation_log(self, metrics) -> Dict:
    return {"val_top_1_accuracy": metrics["top_1_accuracy"],
            "val_top_5_accuracy": metrics["top_5_accuracy"]}


TASK = ClassificationTask
