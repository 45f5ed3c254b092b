"""Evaluation of a run: metrics files, TensorBoard summaries, and continuous
evaluation of new checkpoints.

``evaluate_model`` scores a model on the config's eval records and writes
``W/eval/metrics.json`` (and ``metrics-<step>.json``), TensorBoard scalars
and a few predicted masks. ``evaluate_checkpoint`` restores a checkpoint of
a run and scores its inference form (batch norm folded: the same logits,
faster); ``continuous_eval`` does that for each new checkpoint. Training
calls ``evaluate_model`` on its live model (``train_and_eval``).

Images are predicted as every inference does (``deeplab.inference``:
padded to the evaluation crop, multi-scale and flip). The evaluation step
compiles with XLA (``jit_compile=True``): only images and labels enter it
(file names stay on the host), and ignored pixels are zero weights, not a
``boolean_mask`` of data-dependent shape. Its ``tf.function`` is made once
per model and settings and reused by every later evaluation.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence
import weakref

from absl import logging
import numpy as np
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import folding
from deeplab import inference
from deeplab import metrics as metrics_lib
from deeplab import progress
from deeplab import run_dir
from deeplab.data import classification
from deeplab.data import pipeline
from deeplab.data import registry

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
    probabilities = inference.predict_probabilities(
        model_ref(), images, scales, flip, crop_size=crop_size)
    return metrics_lib.confusion_matrix(labels, tf.argmax(probabilities, -1),
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
  matrix = evaluate(
      model, dataset, strategy, info.num_classes, info.ignore_label,
      tuple(config.eval.scales), config.eval.flip,
      crop_size=config_lib.eval_crop_size(config),
      bar=progress.Progress(images, "eval", unit="images"))
  metrics = metrics_lib.metrics_from_confusion(matrix, info.class_names,
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
    probabilities = inference.predict_probabilities(
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
