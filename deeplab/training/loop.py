"""The custom tf.distribute training loop, evaluation during training, and
continuous evaluation.

One device, MirroredStrategy, MultiWorkerMirroredStrategy (TF_CONFIG) and
TPUStrategy share the code: model, optimizer and checkpoint are made under
``strategy.scope()``, the dataset is distributed with input contexts, and
``steps_per_loop`` steps run inside one ``tf.function`` call.

The loss of a replica is its summed pixel losses divided by the number of
labelled pixels of the *global* batch (an all-reduce), so the summed
gradients equal those of one device on the whole batch, whatever the
replica count; weight decay is divided by the number of replicas for the
same reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import tempfile
import time
from typing import Dict, Optional

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import evaluation
from deeplab import model as model_lib
from deeplab import naming
from deeplab import progress
from deeplab import weights as weights_lib
from deeplab.data import pipeline
from deeplab.data import registry
from deeplab.training import loss as loss_lib
from deeplab.training import schedule as schedule_lib
from deeplab.training import strategy as strategy_lib

MODES = ("train", "train_and_eval", "continuous_eval")
CHECKPOINT_DIR = "checkpoints"
LOG_FILE = "train_log.jsonl"


def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir``; refuses a path that is a file."""
  if not workdir:
    raise ValueError("--workdir is required")
  if tf.io.gfile.exists(workdir) and not tf.io.gfile.isdir(workdir):
    raise ValueError(f"--workdir={workdir!r} is a file, not a folder")
  tf.io.gfile.makedirs(workdir)
  return workdir


def write_config(config, workdir: str):
  """Writes the resolved config to ``workdir/config.json``.

  Raises:
    ValueError: the workdir holds a run of another architecture or dataset
      (resuming it with this config would load mismatched weights).
  """
  path = os.path.join(workdir, "config.json")
  resolved = json.loads(config.to_json())
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      previous = json.load(f)
    for section in ("model", "dataset"):
      if previous.get(section) != resolved[section]:
        raise ValueError(
            f"{path} was written for another config.{section} "
            f"({previous.get(section)} vs {resolved[section]}); use a new "
            "--workdir or the same config")
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump(resolved, f, indent=2, sort_keys=True)


def read_workdir_config(workdir: str):
  """The config a workdir's training run wrote (for eval, export, init)."""
  path = os.path.join(workdir, "config.json")
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} does not exist: not a training workdir")
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def freeze_batch_norm(model: keras.Model):
  """Keeps batch norm statistics and scales fixed (inference mode in training),
  the original's ``fine_tune_batch_norm=False`` for small batches."""
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.trainable = False


def config_from_workdir(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir's training run wrote, as a config tree."""
  return ml_collections.ConfigDict(read_workdir_config(workdir))


def read_init_source(path: str) -> Dict[str, np.ndarray]:
  """Weights by original name from a .keras file, a TF1 checkpoint (the
  original's), or a training workdir of ours (its latest checkpoint)."""
  if tf.io.gfile.isdir(path):
    model, _ = restore_model(config_from_workdir(path), path)
    return {n: np.asarray(v) for n, v in naming.original_names(model).items()}
  return weights_lib.read_source(path)


def initialize(model: keras.Model, path: str, initialize_last_layer: bool):
  """Loads ``path`` by original names; logs what was and was not restored."""
  select = None
  if not initialize_last_layer:
    select = lambda name: not name.startswith("logits/")
  report = weights_lib.assign_by_original_names(model, read_init_source(path),
                                                select)
  logging.info("Initialized from %s: %s", path, report.summary())
  if not report.loaded:
    raise ValueError(f"init checkpoint {path!r} shares no weight with the "
                     f"model:\n{report.summary()}")
  return report


@dataclasses.dataclass
class _Stop:
  """Set by SIGTERM/SIGINT; the loop saves and returns at the next check."""
  requested: bool = False
  signal_name: str = ""


@contextlib.contextmanager
def _stop_on_signals():
  stop = _Stop()

  def handler(signum, frame):
    del frame
    stop.requested = True
    stop.signal_name = signal.Signals(signum).name

  previous = {}
  for sig in (signal.SIGTERM, signal.SIGINT):
    try:
      previous[sig] = signal.signal(sig, handler)
    except ValueError:  # Not the main thread: no handlers.
      pass
  try:
    yield stop
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


class Trainer:
  """Holds the model, optimizer, checkpoint and the compiled train step."""

  def __init__(self, config, workdir: str, strategy: tf.distribute.Strategy):
    self.config, self.workdir, self.strategy = config, workdir, strategy
    self.info = registry.from_config(config)
    self.chief = strategy_lib.is_chief(strategy)
    train = config.train
    replicas = strategy.num_replicas_in_sync
    # Every worker and every rerun starts from the same initial weights.
    keras.utils.set_random_seed(train.seed)
    with strategy.scope():
      self.model = model_lib.build_model(config, sync_batch_norm=replicas > 1)
      if not train.fine_tune_batch_norm:
        freeze_batch_norm(self.model)
      self.schedule = schedule_lib.PolyWithWarmup(
          train.base_learning_rate, train.steps, train.learning_power,
          train.end_learning_rate, train.warmup_steps,
          train.warmup_learning_rate)
      optimizer = keras.optimizers.SGD(self.schedule, momentum=train.momentum)
      if config.model.dtype_policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      self.optimizer = optimizer
      self.optimizer.build(self.model.trainable_variables)
      # The dropout layers' random-generator states (variables that are not
      # weights) are saved too, so a resumed run draws the same masks.
      weights = {id(w) for w in self.model.weights}
      random_state = [v for v in self.model.variables if id(v) not in weights]
      self.checkpoint = tf.train.Checkpoint(model=self.model,
                                            optimizer=self.optimizer,
                                            random_state=random_state)
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    if not self.chief:  # Other workers save to a scratch folder (collective).
      directory = tempfile.mkdtemp(prefix="deeplab_worker_")
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=train.keep_checkpoints)
    self.kernels = loss_lib.decayed_kernels(self.model)

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def restore_or_initialize(self):
    latest = self.manager.latest_checkpoint
    if self.chief is False:
      latest = tf.train.latest_checkpoint(os.path.join(self.workdir, CHECKPOINT_DIR))
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info("Resumed from %s at step %d", latest, self.step)
    elif self.config.train.init_checkpoint:
      initialize(self.model, self.config.train.init_checkpoint,
                 self.config.train.initialize_last_layer)

  def save(self):
    path = self.manager.save(checkpoint_number=self.step)
    if self.chief:
      logging.info("Saved %s", path)
    return path

  def make_train_loop(self):
    """A tf.function running ``n`` steps; returns the mean loss."""
    config, info = self.config, self.info
    class_weights = tuple(config.train.class_weights)
    replicas = self.strategy.num_replicas_in_sync

    def step_fn(images, labels):
      with tf.GradientTape() as tape:
        logits = self.model(images, training=True)
        losses, weights = loss_lib.pixel_losses(
            logits, labels, info.num_classes, info.ignore_label, class_weights)
        losses, weights = loss_lib.hard_pixel_losses(
            losses, weights, config.train.top_k_percent_pixels)
        context = tf.distribute.get_replica_context()
        count = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                   tf.reduce_sum(weights))
        loss = tf.reduce_sum(losses) / tf.maximum(count, 1.0)
        loss += loss_lib.weight_decay_loss(
            self.kernels, config.train.weight_decay) / replicas
        scaled = self.optimizer.scale_loss(loss)
      grads = tape.gradient(scaled, self.model.trainable_variables)
      self.optimizer.apply(grads, self.model.trainable_variables)
      return loss

    @tf.function
    def loop(iterator, steps):
      total = tf.constant(0.0)
      for _ in tf.range(steps):
        per_replica = self.strategy.run(step_fn, args=next(iterator))
        total += self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                                      axis=None)
      return total / tf.cast(steps, tf.float32)

    return loop


def _log_json(workdir: str, record: dict):
  with tf.io.gfile.GFile(os.path.join(workdir, LOG_FILE), "a") as f:
    f.write(json.dumps(record) + "\n")


def train(config, workdir: str, strategy: Optional[tf.distribute.Strategy] = None,
          evaluate_every_checkpoint: bool = False) -> Dict:
  """Trains (or resumes) until ``config.train.steps`` or a stop condition.

  Args:
    config: experiment config.
    workdir: checkpoints, ``config.json``, summaries and the log go here.
    strategy: default: from ``config.train.strategy``.
    evaluate_every_checkpoint: evaluate on the eval records after each
      checkpoint (train_and_eval).

  Returns:
    ``{"step": final step, "loss": last mean loss, "stopped": reason}``.

  Raises:
    FloatingPointError: the loss became NaN or Inf (the last checkpoint,
      written before, is left as it was).
  """
  config_lib.validate(config)
  prepare_workdir(workdir)
  # Fail on missing records before minutes of model building.
  pipeline.list_files(config.data.train_pattern, "config.data.train_pattern")
  if evaluate_every_checkpoint:
    pipeline.list_files(config.data.eval_pattern, "config.data.eval_pattern")
  strategy = strategy or strategy_lib.make_strategy(config.train.strategy,
                                                    config.train.tpu)
  trainer = Trainer(config, workdir, strategy)
  if trainer.chief:
    write_config(config, workdir)
  trainer.restore_or_initialize()
  start_step = trainer.step
  train_cfg = config.train
  dataset = strategy.distribute_datasets_from_function(
      lambda context: pipeline.train_dataset(config, context,
                                             start_step=start_step))
  iterator = iter(dataset)
  loop = trainer.make_train_loop()
  writer = (tf.summary.create_file_writer(os.path.join(workdir, "train"))
            if trainer.chief else tf.summary.create_noop_writer())
  bar = progress.Progress(train_cfg.steps, "train", unit="steps")
  bar.done = start_step
  deadline = (time.monotonic() + 60 * train_cfg.max_minutes
              if train_cfg.max_minutes > 0 else None)
  loss = float("nan")
  stopped = "done"
  last_saved = start_step
  with _stop_on_signals() as stop, writer.as_default():
    while trainer.step < train_cfg.steps:
      step = trainer.step
      until_checkpoint = train_cfg.checkpoint_every - step % train_cfg.checkpoint_every
      count = min(train_cfg.steps_per_loop, train_cfg.steps - step, until_checkpoint)
      begin = time.perf_counter()
      loss = float(loop(iterator, tf.constant(count)))
      elapsed = time.perf_counter() - begin
      step = trainer.step
      if not np.isfinite(loss):
        raise FloatingPointError(
            f"loss is {loss} at step {step}: training stopped; the last good "
            f"checkpoint ({trainer.manager.latest_checkpoint}) is untouched. "
            "Lower config.train.base_learning_rate, check the labels with "
            "`python -m datasets.inspect`, or use float32.")
      images_per_second = count * train_cfg.batch_size / elapsed
      learning_rate = float(trainer.schedule(step))
      bar.update(count, f"loss {loss:.4f} {images_per_second:.1f} images/s")
      tf.summary.scalar("loss", loss, step)
      tf.summary.scalar("learning_rate", learning_rate, step)
      tf.summary.scalar("step_time", elapsed / count, step)
      tf.summary.scalar("images_per_second", images_per_second, step)
      if trainer.chief:
        _log_json(workdir, dict(step=step, loss=loss, learning_rate=learning_rate,
                                images_per_second=images_per_second))
      if step % train_cfg.checkpoint_every == 0 or step == train_cfg.steps:
        trainer.save()
        last_saved = step
        if evaluate_every_checkpoint and trainer.chief:
          evaluate_model(config, trainer.model, workdir, step, strategy)
      if stop.requested:
        stopped = stop.signal_name
        break
      if deadline is not None and time.monotonic() >= deadline:
        stopped = "max_minutes"
        break
    if trainer.step != last_saved:
      trainer.save()
  writer.flush()
  if not trainer.chief:
    shutil.rmtree(trainer.manager.directory, ignore_errors=True)
  logging.info("Training stopped (%s) at step %d", stopped, trainer.step)
  return {"step": trainer.step, "loss": loss, "stopped": stopped}


def evaluate_model(config, model, workdir: str, step: int,
                   strategy: Optional[tf.distribute.Strategy] = None,
                   pattern: Optional[str] = None) -> Dict:
  """Evaluates ``model`` on the eval records; writes metrics and summaries.

  Writes ``workdir/eval/metrics.json`` (and ``metrics-<step>.json``) and
  TensorBoard scalars (mIoU, per-class IoU, pixel accuracy) and a few
  predicted masks beside their images.
  """
  strategy = strategy or tf.distribute.get_strategy()
  info = registry.from_config(config)
  dataset = strategy.distribute_datasets_from_function(
      lambda context: pipeline.eval_dataset(config, context, pattern))
  matrix = evaluation.evaluate(model, dataset, strategy, info.num_classes,
                               info.ignore_label, tuple(config.eval.scales),
                               config.eval.flip)
  metrics = evaluation.metrics_from_confusion(matrix, info.class_names,
                                              info.evaluated_classes)
  metrics["step"] = int(step)
  eval_dir = os.path.join(workdir, "eval")
  tf.io.gfile.makedirs(eval_dir)
  for name in ("metrics.json", f"metrics-{step}.json"):
    with tf.io.gfile.GFile(os.path.join(eval_dir, name), "w") as f:
      json.dump(metrics, f, indent=2)
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
    probabilities = evaluation.predict_probabilities(model, image)
    predicted = tf.gather(colormap, tf.argmax(probabilities, -1)[0])
    truth = tf.gather(colormap, tf.cast(batch["label"][0], tf.int32))
    pixels = tf.cast((image[0] + 1.0) * 127.5, tf.uint8)
    panels.append(tf.concat([pixels, predicted, truth], axis=1))
  tf.summary.image("image_prediction_truth",
                   tf.stack([tf.image.resize_with_pad(p, 256, 768, "nearest")
                             for p in panels]), step, max_outputs=count)


# Fields that decide which weights a model has and their shapes (output
# stride, rates and multi-grid do not: a model trained at one runs at another).
WEIGHT_FIELDS = ("model.backbone", "model.depth_multiplier", "model.use_decoder",
                 "model.decoder_separable", "model.decoder_filters",
                 "model.low_level_filters", "model.aspp_separable",
                 "model.image_pooling", "model.aspp_filters",
                 "dataset.num_classes")


def _check_same_architecture(config, workdir: str):
  """Raises ValueError naming the fields where ``config`` and the workdir's
  run disagree on the architecture (restoring would mismatch weights)."""
  if not tf.io.gfile.exists(os.path.join(workdir, "config.json")):
    return
  saved = read_workdir_config(workdir)
  differences = []
  for field in WEIGHT_FIELDS:
    section, key = field.split(".")
    theirs, ours = saved.get(section, {}).get(key), config[section][key]
    if theirs is not None and theirs != ours:
      differences.append(f"config.{field}={ours!r} (the run in {workdir} has {theirs!r})")
  rates = len(saved.get("model", {}).get("atrous_rates", config.model.atrous_rates))
  if rates != len(config.model.atrous_rates):
    differences.append(f"config.model.atrous_rates={tuple(config.model.atrous_rates)!r} "
                       f"has {len(config.model.atrous_rates)} branches (the run in "
                       f"{workdir} has {rates})")
  if differences:
    raise ValueError("the config does not describe the model in the workdir: "
                     + "; ".join(differences))


def restore_model(config, workdir: str, checkpoint: Optional[str] = None):
  """Builds the config's model and restores the latest (or given) checkpoint.

  Returns:
    (model, step).
  """
  model = model_lib.build_model(config)
  checkpoint = checkpoint or tf.train.latest_checkpoint(
      os.path.join(workdir, CHECKPOINT_DIR))
  if checkpoint is None:
    raise FileNotFoundError(
        f"no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}")
  _check_same_architecture(config, workdir)
  try:
    tf.train.Checkpoint(model=model).restore(checkpoint) \
        .assert_existing_objects_matched().expect_partial()
  except AssertionError as e:
    raise ValueError(f"{checkpoint} does not hold every weight of the config's "
                     f"model: {str(e)[:500]}") from None
  # Checkpoints are numbered by step (CheckpointManager.save(step)).
  return model, int(checkpoint.rsplit("-", 1)[1])


def continuous_eval(config, workdir: str, timeout_seconds: float = 3600,
                    strategy=None):
  """Evaluates each new checkpoint of ``workdir`` once, until training ends
  (the final step is evaluated) or no checkpoint arrives for ``timeout``."""
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  results = []
  for checkpoint in tf.train.checkpoints_iterator(directory,
                                                  timeout=timeout_seconds):
    model, step = restore_model(config, workdir, checkpoint)
    results.append(evaluate_model(config, model, workdir, step, strategy))
    if step >= config.train.steps:
      break
  return results


def run(config, workdir: str, mode: str = "train"):
  """The CLI's one call: train, train_and_eval or continuous_eval."""
  if mode not in MODES:
    raise ValueError(f"--mode must be one of {MODES}, got {mode!r}")
  if mode == "continuous_eval":
    return continuous_eval(config, workdir)
  return train(config, workdir, evaluate_every_checkpoint=mode == "train_and_eval")
