"""Evaluation of a run: metrics files, TensorBoard summaries, and continuous
evaluation of new checkpoints.

``evaluate_model`` scores a model on the config's eval records and writes
``W/eval/metrics.json`` (and ``metrics-<step>.json``), TensorBoard scalars
and a few predicted masks. ``evaluate_checkpoint`` restores a checkpoint of
a run and scores its inference form (batch norm folded: the same logits,
faster); ``continuous_eval`` does that for each new checkpoint. Training
calls ``evaluate_model`` on its live model (``train_and_eval``).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import evaluation
from deeplab import folding
from deeplab import progress
from deeplab import run_dir
from deeplab.data import classification
from deeplab.data import pipeline
from deeplab.data import registry


def evaluate_model(config, model, workdir: str, step: int,
                   strategy: Optional[tf.distribute.Strategy] = None,
                   pattern: Optional[str] = None) -> Dict:
  """Evaluates ``model`` on the eval records; writes metrics and summaries.

  Writes ``workdir/eval/metrics.json`` (and ``metrics-<step>.json``) and
  TensorBoard scalars (mIoU, per-class IoU, pixel accuracy) and a few
  predicted masks beside their images; for a classification run
  (``config.model.task``) top-1 and top-5 accuracy instead
  (``evaluate_classifier``).
  """
  if config.model.task == "classification":
    return evaluate_classifier(config, model, workdir, step, strategy, pattern)
  strategy = strategy or tf.distribute.get_strategy()
  info = registry.from_config(config)
  # File names stay on the host: strings cannot enter a TPU program.
  dataset = strategy.distribute_datasets_from_function(
      lambda context: pipeline.eval_dataset(config, context, pattern).map(
          lambda batch: {"image": batch["image"], "label": batch["label"]}))
  images = pipeline.count_records(pattern or config.data.eval_pattern)
  matrix = evaluation.evaluate(
      model, dataset, strategy, info.num_classes, info.ignore_label,
      tuple(config.eval.scales), config.eval.flip,
      crop_size=config_lib.eval_crop_size(config),
      bar=progress.Progress(images, "eval", unit="images"))
  metrics = evaluation.metrics_from_confusion(matrix, info.class_names,
                                              info.evaluated_classes)
  metrics["step"] = int(step)
  eval_dir = write_metrics(metrics, workdir)
  with tf.summary.create_file_writer(eval_dir).as_default():
    tf.summary.scalar("miou", metrics["miou"], step)
    tf.summary.scalar("pixel_accuracy", metrics["pixel_accuracy"], step)
    for name, iou in metrics["per_class_iou"].items():
      if iou is not None:
        tf.summary.scalar(f"iou/{name}", iou, step)
    _summarize_predictions(config, model, info, step, pattern)
  logging.info("Step %d: mIoU %.4f, pixel accuracy %.4f", step,
               metrics["miou"], metrics["pixel_accuracy"])
  return metrics


def write_metrics(metrics: Dict, workdir: str) -> str:
  """Writes ``metrics`` (with its ``step``) as ``workdir/eval/metrics.json``
  and ``metrics-<step>.json``; returns the eval folder."""
  eval_dir = os.path.join(workdir, "eval")
  tf.io.gfile.makedirs(eval_dir)
  for name in ("metrics.json", f"metrics-{metrics['step']}.json"):
    with tf.io.gfile.GFile(os.path.join(eval_dir, name), "w") as f:
      json.dump(metrics, f, indent=2)
  return eval_dir


def evaluate_classifier(config, model, workdir: str, step: int,
                        strategy: Optional[tf.distribute.Strategy] = None,
                        pattern: Optional[str] = None) -> Dict:
  """Top-1 and top-5 accuracy of a classifier on the eval records.

  Writes ``workdir/eval/metrics.json`` (and ``metrics-<step>.json``):
  ``{"top_1_accuracy", "top_5_accuracy", "examples", "step"}`` (top-5 is
  top-k with k the class count when there are fewer than 5 classes), and
  TensorBoard scalars of both accuracies.
  """
  strategy = strategy or tf.distribute.get_strategy()
  info = registry.from_config(config)
  top_k = min(5, info.num_classes)
  dataset = strategy.distribute_datasets_from_function(
      lambda context: classification.eval_dataset(config, context, pattern))
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
  metrics = {"top_1_accuracy": float(top_1 / max(examples, 1)),
             "top_5_accuracy": float(top_5 / max(examples, 1)),
             "examples": int(examples), "step": int(step)}
  eval_dir = write_metrics(metrics, workdir)
  with tf.summary.create_file_writer(eval_dir).as_default():
    tf.summary.scalar("top_1_accuracy", metrics["top_1_accuracy"], step)
    tf.summary.scalar("top_5_accuracy", metrics["top_5_accuracy"], step)
  logging.info("Step %d: top-1 accuracy %.4f, top-5 accuracy %.4f (%d images)",
               step, metrics["top_1_accuracy"], metrics["top_5_accuracy"],
               metrics["examples"])
  return metrics


def _summarize_predictions(config, model, info, step: int, pattern=None):
  """A few eval images beside their predicted and true masks, colored."""
  count = config.eval.num_summary_images
  if not count:
    return
  colormap = tf.constant(np.concatenate(
      [info.colormap, np.zeros((256 - info.num_classes, 3), np.uint8)]))
  panels = []
  for batch in pipeline.eval_dataset(config, pattern=pattern).take(count):
    image = batch["image"][:1]
    probabilities = evaluation.predict_probabilities(
        model, image, crop_size=config_lib.eval_crop_size(config))
    predicted = tf.gather(colormap, tf.argmax(probabilities, -1)[0])
    truth = tf.gather(colormap, tf.cast(batch["label"][0], tf.int32))
    pixels = tf.cast((image[0] + 1.0) * 127.5, tf.uint8)
    panels.append(tf.concat([pixels, predicted, truth], axis=1))
  tf.summary.image("image_prediction_truth",
                   tf.stack([tf.image.resize_with_pad(p, 256, 768, "nearest")
                             for p in panels]), step, max_outputs=count)


def evaluate_checkpoint(config, workdir: str, checkpoint: Optional[str] = None,
                        strategy: Optional[tf.distribute.Strategy] = None
                        ) -> Dict:
  """Restores a checkpoint of the run (default: the latest), folds its batch
  norm and evaluates it; returns the metrics ``evaluate_model`` wrote."""
  model, step = run_dir.restore_model(config, workdir, checkpoint)
  return evaluate_model(config, folding.inference_model(model), workdir, step,
                        strategy)


def continuous_eval(config, workdir: str, timeout_seconds: float = 3600,
                    strategy: Optional[tf.distribute.Strategy] = None
                    ) -> List[Dict]:
  """Evaluates each new checkpoint of ``workdir`` once, until training ends
  (the final step is evaluated) or no checkpoint arrives for ``timeout``."""
  results = []
  evaluated = None
  for checkpoint in tf.train.checkpoints_iterator(
      run_dir.checkpoint_dir(workdir), timeout=timeout_seconds):
    model, step = run_dir.restore_model(config, workdir, checkpoint)
    folded = folding.inference_model(model)
    # One model for every checkpoint: its evaluation function (traced and
    # optimized once) is reused.
    if evaluated is None:
      evaluated = folded
    else:
      evaluated.set_weights(folded.get_weights())
    results.append(evaluate_model(config, evaluated, workdir, step, strategy))
    if results[-1]["step"] >= config.train.steps:
      break
  return results
