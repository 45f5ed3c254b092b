"""Segmentation: DeepLab on segmentation records, scored by mIoU.

Loss: the original's pixel loss (ignore label, class weights, hard-pixel
mining), plus the Lovasz-softmax loss if weighted (``deeplab.loss``).
Evaluation: the confusion matrix over the eval records, every image
predicted as every inference does (``deeplab.inference``: padded to the
evaluation crop, multi-scale and flip), and the metrics of
``deeplab.metrics``. The evaluation step compiles with XLA
(``jit_compile=True``): only images and labels enter it (file names stay on
the host), and ignored pixels are zero weights, not a ``boolean_mask`` of
data-dependent shape. Its ``tf.function`` is made once per model and
settings and reused by every later evaluation.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple
import weakref

from absl import logging
import numpy as np
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import inference
from deeplab import loss as loss_lib
from deeplab import metrics as metrics_lib
from deeplab import model as model_lib
from deeplab import progress
from deeplab.data import dataset_table
from deeplab.data import pipeline
from deeplab.tasks import base


class SegmentationTask(base.Task):
  """DeepLab on segmentation records: the original's pixel loss (ignore
  label, class weights, hard-pixel mining), mIoU and friends."""

  name = "segmentation"
  MODEL = model_lib.DeepLab
  MAIN_METRIC = "miou"

  def __init__(self, config):
    super().__init__(config)
    self.info = dataset_table.from_config(config)

  def train_dataset(self, input_context: Optional[tf.distribute.InputContext],
                    start_step: int) -> tf.data.Dataset:
    return pipeline.train_dataset(self.config, input_context,
                                  start_step=start_step, info=self.info)

  def loss_sum_and_count(self, logits, labels, step) -> Tuple[tf.Tensor, tf.Tensor]:
    loss = self.config.loss
    losses, labelled = loss_lib.pixel_losses(
        logits, labels, self.info.num_classes, self.info.ignore_label,
        tuple(loss.class_weights))
    total, count = loss_lib.loss_sum_and_count(
        losses, labelled, loss.top_k_percent_pixels, step,
        loss.hard_example_mining_step)
    if loss.lovasz_weight:
      # Weighted by this replica's count: over the global count (the
      # trainer's division) it is the replicas' count-weighted mean, and on
      # one replica the loss itself.
      every = loss.lovasz_pixel_stride
      total += loss.lovasz_weight * count * loss_lib.lovasz_softmax(
          logits[:, ::every, ::every], labels[:, ::every, ::every],
          self.info.num_classes, self.info.ignore_label)
    return total, count

  def evaluate(self, model, strategy: tf.distribute.Strategy,
               pattern: Optional[str] = None) -> Dict:
    """mIoU, per-class IoU, recall and precision, pixel accuracy...
    (``metrics.metrics_from_confusion``) on the eval records."""
    config, info = self.config, self.info
    # File names stay on the host: strings cannot enter a TPU program.
    dataset = strategy.distribute_datasets_from_function(
        lambda context: pipeline.eval_dataset(config, context, pattern,
                                               info=info).map(
            lambda batch: {"image": batch["image"], "label": batch["label"]}))
    images = pipeline.count_records(pattern or config.data.eval_pattern)
    matrix = confusion_over_dataset(
        model, dataset, strategy, info.num_classes, info.ignore_label,
        tuple(config.eval.scales), config.eval.flip,
        crop_size=config_lib.eval_crop_size(config),
        jit_compile=config.train.jit_compile,
        bar=progress.Progress(images, "eval", unit="images"),
        **inference.tile_options(config))
    return metrics_lib.metrics_from_confusion(matrix, info.class_names,
                                              info.evaluated_classes)

  def summarize(self, model, metrics: Dict, step: int,
                pattern: Optional[str] = None) -> None:
    """Scalars (mIoU, per-class IoU, pixel accuracy) and a few predicted
    masks beside their images."""
    tf.summary.scalar("miou", metrics["miou"], step)
    tf.summary.scalar("pixel_accuracy", metrics["pixel_accuracy"], step)
    for name, iou in metrics["per_class_iou"].items():
      if iou is not None:
        tf.summary.scalar(f"iou/{name}", iou, step)
    _summarize_predictions(self.config, model, self.info, step, pattern)
    logging.info("Step %d: mIoU %.4f, pixel accuracy %.4f", step,
                 metrics["miou"], metrics["pixel_accuracy"])

  def validation_log(self, metrics) -> Dict:
    return {"val_miou": metrics["miou"],
            "val_per_class_iou": metrics["per_class_iou"]}


TASK = SegmentationTask


# model -> {(strategy, settings): the compiled step}. Weak keys: a model
# that is gone takes its functions with it (the steps hold it weakly).
_EVAL_STEPS = weakref.WeakKeyDictionary()


def eval_step(model, strategy: tf.distribute.Strategy, num_classes: int,
              ignore_label: int, scales: Sequence[float] = (1.0,),
              flip: bool = False, jit_compile: bool = False,
              crop_size: Optional[Sequence[int]] = None,
              tile_size: int = 0, tile_overlap: int = 0):
  """The ``tf.function`` ``(images, labels) -> summed confusion matrix``.

  Made once per model, strategy and settings; later calls return the same
  function, so evaluating again (``train_and_eval`` after every checkpoint)
  reuses its traces instead of tracing and optimizing the graph anew.
  """
  crop_size = tuple(crop_size) if crop_size else None
  key = (strategy, num_classes, ignore_label, tuple(scales), bool(flip),
         bool(jit_compile), crop_size, tile_size, tile_overlap)
  steps = _EVAL_STEPS.setdefault(model, {})
  if key in steps:
    return steps[key]
  model_ref = weakref.ref(model)

  def step(images, labels):
    predictions = inference.predict_label_map(
        model_ref(), images, scales, flip, crop_size=crop_size,
        tile_size=tile_size, tile_overlap=tile_overlap)
    return metrics_lib.confusion_matrix(labels, predictions, num_classes,
                                        ignore_label)

  if jit_compile:
    step = tf.function(step, jit_compile=True)

  @tf.function(reduce_retracing=True)
  def distributed_step(images, labels):
    per_replica = strategy.run(step, args=(images, labels))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

  steps[key] = distributed_step
  return distributed_step


def confusion_over_dataset(model, dataset, strategy: tf.distribute.Strategy, num_classes: int,
                           ignore_label: int, scales: Sequence[float] = (1.0,),
                           flip: bool = False, max_batches: Optional[int] = None,
                           crop_size: Optional[Sequence[int]] = None,
                           jit_compile: bool = False,
                           bar: Optional[progress.Progress] = None,
                           tile_size: int = 0, tile_overlap: int = 0):
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
    tile_size, tile_overlap: tiles of images larger than ``tile_size``
      (``inference.tiled_labels``); 0: whole images.

  Returns:
    The summed confusion matrix, numpy int64.
  """
  step = eval_step(model, strategy, num_classes, ignore_label, scales, flip,
                   jit_compile, crop_size, tile_size, tile_overlap)
  total = np.zeros((num_classes, num_classes), np.int64)
  for i, batch in enumerate(dataset):
    if max_batches is not None and i >= max_batches:
      break
    total += step(batch["image"], batch["label"]).numpy()
    if bar is not None:
      bar.update(sum(int(tf.shape(images)[0]) for images in
                     strategy.experimental_local_results(batch["image"])))
  return total


def _summarize_predictions(config, model, info, step: int, pattern=None):
  """A few eval images beside their predicted and true masks, colored."""
  count = config.eval.num_summary_images
  if not count:
    return
  colormap = tf.constant(np.concatenate(
      [info.colormap, np.zeros((256 - info.num_classes, 3), np.uint8)]))
  panels = []
  for batch in pipeline.eval_dataset(config, pattern=pattern, info=info).take(count):
    image = batch["image"][:1]
    predicted = tf.gather(colormap, inference.predict_label_map(
        model, image, crop_size=config_lib.eval_crop_size(config),
        **inference.tile_options(config))[0])
    truth = tf.gather(colormap, tf.cast(batch["label"][0], tf.int32))
    pixels = tf.cast((image[0] + 1.0) * 127.5, tf.uint8)
    panels.append(tf.concat([pixels, predicted, truth], axis=1))
  tf.summary.image("image_prediction_truth",
                   tf.stack([tf.image.resize_with_pad(p, 256, 768, "nearest")
                             for p in panels]), step, max_outputs=count)
