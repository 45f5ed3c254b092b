"""The trainer: model, optimizer and checkpoint under a strategy, and the
compiled training step, for every task (``deeplab.tasks``: segmentation, or
classification to pretrain a backbone).

The loss of a replica is its summed losses (segmentation: pixel losses)
divided by their count (labelled pixels, with hard-pixel mining kept
pixels; classification: images) over the *global* batch (an all-reduce), so the summed
gradients equal those of one device on the whole batch, whatever the
replica count; weight decay is divided by the number of replicas for the
same reason.

Gradient accumulation (``config.train.accumulation_steps`` = k) splits each
replica's batch into k micro-batches run one after the other (a
``tf.while_loop`` of one iteration at a time, so one micro-batch's
activations are alive at once) and sums their gradients before one update;
the loss is normalised by the count of the whole accumulated global batch,
and weight decay, gradient multipliers, clipping and loss scaling act once
per update, so k micro-batches of n images give the update of one batch of
k * n. Batch norm normalises each micro-batch on its own and updates its
moving statistics once per micro-batch; hard-pixel mining and the Lovasz
loss see one micro-batch at a time, as they see one replica's batch.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Optional

from absl import logging
import keras
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import kernels
from deeplab import loss as loss_lib
from deeplab import naming
from deeplab import run_dir
from deeplab import tasks
from deeplab.training import budget as budget_lib
from deeplab.training import memory as memory_lib
from deeplab.training import schedule as schedule_lib
from deeplab.training import strategy as strategy_lib
from deeplab.training import warm_start

# Fewer images than this in batch norm's statistics: the original's
# documentation asks for fine_tune_batch_norm=False below about 12 images
# per GPU (its batch norm is not synchronized across GPUs).
BATCH_NORM_MIN_IMAGES = 12


def batch_norm_images(config) -> int:
  """Images batch norm's statistics cover in training: one micro-batch of
  the global batch (``batch_size / accumulation_steps``), as several
  replicas synchronize batch norm."""
  return config.train.batch_size // config.train.accumulation_steps


def small_batch_norm_warning(config) -> str:
  """The warning for batch norm training on fewer than
  ``BATCH_NORM_MIN_IMAGES`` images, naming the fields to change; '' when
  batch norm is frozen or sees enough images."""
  train = config.train
  images = batch_norm_images(config)
  if not train.fine_tune_batch_norm or images >= BATCH_NORM_MIN_IMAGES:
    return ""
  return (
      f"Batch norm trains on batches of {images} images (config.train."
      f"batch_size={train.batch_size} / config.train.accumulation_steps="
      f"{train.accumulation_steps}), fewer than {BATCH_NORM_MIN_IMAGES}: its "
      "batch statistics are noisy and usually cost accuracy. Set "
      "config.train.fine_tune_batch_norm=False (moving statistics, as the "
      "original asks below about 12 images), or raise config.train."
      f"batch_size to {BATCH_NORM_MIN_IMAGES * train.accumulation_steps} or "
      "more. config.train.accumulation_steps does not help batch norm: its "
      "statistics are those of one micro-batch.")


def split_micro_batches(tensor, accumulation_steps: int):
  """``[b, ...] -> [accumulation_steps, b / accumulation_steps, ...]``:
  consecutive images form a micro-batch."""
  shape = tensor.shape[1:]
  if not shape.is_fully_defined():
    shape = tf.shape(tensor)[1:]
  return tf.reshape(tensor, tf.concat([[accumulation_steps, -1], shape], 0))


def batch_norm_in_inference_mode(model: keras.Model):
  """The original's ``fine_tune_batch_norm=False`` (for small batches): batch
  norm normalizes with its moving statistics and never updates them, while
  gamma and beta stay trainable (slim's ``is_training=False`` batch norm
  keeps its variables in the trainable collection).

  A batch norm injected through ``batch_norm_factory`` that is not a
  ``kernels.FusedBatchNorm`` cannot run that way while training; it is
  frozen whole (``trainable=False``) instead, and a warning says so.
  """
  for layer in model.layers:
    if isinstance(layer, kernels.FusedBatchNorm):
      layer.inference_statistics = True
    elif isinstance(layer, keras.layers.BatchNormalization):
      logging.warning("Batch norm %s (%s) is frozen whole for "
                      "fine_tune_batch_norm=False", layer.name,
                      type(layer).__name__)
      layer.trainable = False


def gradient_multipliers(model: keras.Model, last_layer_multiplier: float = 1.0,
                         last_layers_contain_logits_only: bool = False):
  """The original's gradient multipliers, one per trainable variable.

  Biases get 2x gradients; a variable whose original name contains a
  last-layer scope (``naming.last_layer_scopes``; a substring match, as the
  original's ``get_model_gradient_multipliers``) gets
  ``last_layer_multiplier`` (twice that for its biases).
  """
  names = {id(v): n for n, v in naming.original_names(model).items()}
  scopes = naming.last_layer_scopes(last_layers_contain_logits_only)
  multipliers = []
  for variable in model.trainable_variables:
    name = names.get(id(variable), "")
    bias = 2.0 if "biases" in name else 1.0
    last = any(scope in name for scope in scopes)
    multipliers.append(bias * (last_layer_multiplier if last else 1.0))
  return multipliers


def make_optimizer(settings, learning_rate, model: keras.Model, decayed_kernels):
  """The optimizer ``settings`` (``config.optimizer``) name: the paper's SGD
  with momentum (Nesterov's with ``settings.nesterov``; weight decay as an
  L2 loss, ``loss.weight_decay_loss``), or Keras' AdamW, whose decoupled
  decay (``w -= learning_rate * weight_decay * w``) reaches the same
  weights the L2 rule does: conv kernels, not depthwise kernels, biases or
  batch norm."""
  if settings.name == "sgd":
    return keras.optimizers.SGD(learning_rate, momentum=settings.momentum,
                                nesterov=settings.nesterov)
  if settings.name == "adamw":
    optimizer = keras.optimizers.AdamW(
        learning_rate, weight_decay=settings.weight_decay,
        beta_1=settings.adam_beta1, beta_2=settings.adam_beta2,
        epsilon=settings.adam_epsilon)
    decayed = {id(k) for k in decayed_kernels}
    optimizer.exclude_from_weight_decay(var_list=[
        v for v in model.trainable_variables if id(v) not in decayed])
    return optimizer
  raise ValueError(f"config.optimizer.name must be one of {config_lib.OPTIMIZERS}, "
                   f"got {settings.name!r}")


def clip_by_global_norm(grads, clip_norm: float, loss_scale=None):
  """Scales ``grads`` so that the norm of the *summed* gradient (over all
  replicas, the gradient of the global batch) is at most ``clip_norm``.

  Keras' own ``global_clipnorm`` clips each replica's part before the sum,
  which is a different rule once there are several replicas. Under loss
  scaling the gradients arrive scaled; the norm is measured unscaled.

  Returns:
    ``(grads, norm)``: the summed gradients divided by the replica count
    (the optimizer sums them again), and the unclipped norm.
  """
  context = tf.distribute.get_replica_context()
  replicas = context.num_replicas_in_sync
  if replicas > 1:
    grads = [g / replicas for g in context.all_reduce(tf.distribute.ReduceOp.SUM, grads)]
  norm = tf.linalg.global_norm([tf.cast(g, tf.float32) for g in grads]) * replicas
  if loss_scale is not None:
    norm /= tf.cast(loss_scale, tf.float32)
  factor = tf.minimum(1.0, clip_norm / tf.maximum(norm, 1e-12))
  return [g * tf.cast(factor, g.dtype) for g in grads], norm


@keras.saving.register_keras_serializable(package="deeplab")
class ReplicaAgreeingLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
  """Keras' dynamic loss scaling, with every replica deciding overflow alike.

  Keras decides "finite gradients?" from the gradients of the replica it
  runs on, before they are summed across replicas (under MirroredStrategy
  it takes replica 0's answer for all): an overflow on another replica is
  then summed into the weights, which become Inf/NaN. Here the decision is
  all-reduced: if any replica's gradients overflow, every replica skips the
  step and halves the loss scale, as dynamic loss scaling intends.
  """

  def check_finite(self, grads):
    finite = super().check_finite(grads)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
      return finite
    overflowed = context.all_reduce(
        tf.distribute.ReduceOp.SUM, tf.cast(tf.logical_not(finite), tf.float32))
    return tf.equal(overflowed, 0.0)


class Trainer:
  """Holds the model, optimizer, checkpoint and the compiled train step."""

  def __init__(self, config, workdir: str, strategy: tf.distribute.Strategy,
               clock: Callable[[], float] = time.monotonic):
    self.config, self.workdir, self.strategy = config, workdir, strategy
    self.task = tasks.make_task(config)
    self.chief = strategy_lib.is_chief(strategy)
    train = config.train
    replicas = strategy.num_replicas_in_sync
    if train.batch_size % (replicas * train.accumulation_steps):
      raise ValueError(
          f"config.train.batch_size={train.batch_size} must be a multiple of "
          f"the {replicas} replica(s) times config.train.accumulation_steps="
          f"{train.accumulation_steps}: each replica splits its part of the "
          "batch into that many equal micro-batches")
    warning = small_batch_norm_warning(config)
    if warning and self.chief:
      logging.warning(warning)
    warning = memory_lib.over_memory_warning(config, strategy) if self.chief else ""
    if warning:
      logging.warning(warning)
    # Every worker and every rerun starts from the same initial weights.
    keras.utils.set_random_seed(train.seed)
    with strategy.scope():
      self.model = self.task.build_model(sync_batch_norm=replicas > 1)
      if not train.fine_tune_batch_norm:
        batch_norm_in_inference_mode(self.model)
      self.budget = budget_lib.TimeBudget(config.budget.max_minutes,
                                          train.steps, clock)
      self.schedule = schedule_lib.from_config(
          config.schedule, train.batch_size, self.budget.horizon)
      self.kernels = loss_lib.decayed_kernels(self.model)
      optimizer = make_optimizer(config.optimizer, self.schedule, self.model,
                                 self.kernels)
      if config.model.dtype_policy == "mixed_float16":
        optimizer = ReplicaAgreeingLossScaleOptimizer(optimizer)
      self.optimizer = optimizer
      self.optimizer.build(self.model.trainable_variables)
      # The dropout layers' random-generator states (variables that are not
      # weights) are saved too, so a resumed run draws the same masks.
      weights = {id(w) for w in self.model.weights}
      random_state = [v for v in self.model.variables if id(v) not in weights]
      self.checkpoint = tf.train.Checkpoint(model=self.model,
                                            optimizer=self.optimizer,
                                            random_state=random_state,
                                            **self.budget.checkpointed())
    directory = run_dir.checkpoint_dir(workdir)
    if not self.chief:  # Other workers save to a scratch folder (collective).
      directory = tempfile.mkdtemp(prefix="deeplab_worker_")
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, directory, max_to_keep=config.checkpoint.keep)
    self._host_model = None  # Built at the first host evaluation.

  @property
  def step(self) -> int:
    return int(self.optimizer.iterations.numpy())

  def restore_or_initialize(self):
    """Restores the run's newest intact checkpoint, else initializes
    (``config.init.checkpoint``, or the seeded initial weights).

    A damaged checkpoint (truncated, missing or corrupt files) is reported
    by name and the previous one is tried; the chief drops the damaged ones
    from the run's ``checkpoint`` file.

    Raises:
      ValueError: the run has checkpoints and every one is damaged (never a
        silent start from scratch).
    """
    candidates = run_dir.checkpoints_newest_first(self.workdir)
    damaged = []
    for path in candidates:
      try:
        status = self.checkpoint.restore(path)
      except (tf.errors.OpError, ValueError, IndexError) as e:  # Read errors.
        reason = (getattr(e, "message", None) or str(e)).splitlines()[0]
        logging.warning("Checkpoint %s is damaged (%s); trying the one "
                        "before it", path, reason[:300])
        damaged.append(path)
        continue
      status.assert_existing_objects_matched()
      logging.info("Resumed from %s at step %d", path, self.step)
      if damaged and self.chief:
        run_dir.forget_checkpoints(self.workdir, damaged)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.manager.directory,
            max_to_keep=self.config.checkpoint.keep)
      return path
    if damaged:
      raise ValueError(
          f"every checkpoint of {run_dir.checkpoint_dir(self.workdir)} is "
          f"damaged ({', '.join(os.path.basename(p) for p in damaged)}); "
          "move them away to start the run over")
    warm_start.initialize_from_config(self.model, self.config)
    return None

  def save(self):
    """Writes a checkpoint of the current step.

    Raises:
      run_dir.CheckpointWriteError: the write failed (full disk, lost
        permission); the previous checkpoint is intact and listed.
    """
    previous = self.manager.latest_checkpoint
    try:
      path = self.manager.save(checkpoint_number=self.step)
    except (tf.errors.OpError, OSError) as e:
      reason = getattr(e, "message", None) or str(e)
      raise run_dir.CheckpointWriteError(
          f"could not write the checkpoint of step {self.step} into "
          f"{self.manager.directory} ({reason}). The run is intact up to "
          f"{previous or 'its start (no checkpoint yet)'}: free space or fix "
          "the folder, then rerun the same command to resume.") from None
    if self.chief:
      logging.info("Saved %s", path)
    return path

  def keep_best(self, metrics) -> None:
    """Keeps the latest checkpoint as the run's best
    (``W/checkpoints/best``, ``run_dir.keep_best``) if its evaluation's
    ``metrics`` beat the kept one's on the task's main metric; the chief
    alone writes."""
    if not self.chief:
      return
    metric = self.task.MAIN_METRIC
    best = run_dir.keep_best(self.workdir, self.manager.latest_checkpoint,
                             metric, metrics[metric])
    if best is not None:
      logging.info("Best checkpoint so far: step %d, %s %.4f", best["step"],
                   metric, best["value"])

  def evaluation_model(self):
    """``(model, strategy)`` that ``train_and_eval`` evaluates.

    The live model under the training strategy, or, where that cannot
    evaluate (``strategy_lib.evaluates_on_host``: TPUs, multi-worker), a
    copy of the current weights on the host CPU under the default strategy.
    The copy is built once, so its evaluation function is traced once.
    """
    if not strategy_lib.evaluates_on_host(self.strategy):
      return self.model, self.strategy
    with tf.device(strategy_lib.host_cpu(self.strategy)):
      if self._host_model is None:
        self._host_model = self.task.build_model()
      self._host_model.set_weights(self.model.get_weights())
    return self._host_model, tf.distribute.get_strategy()

  def make_train_loop(self, jit_compile: Optional[bool] = None):
    """A tf.function running ``n`` steps (updates); returns the mean loss.

    ``jit_compile`` (default: ``config.train.jit_compile``) compiles each
    replica's step with XLA, as TPUStrategy does (on a CPU, a check that the
    step has no dynamic shapes or strings).
    """
    config = self.config
    if jit_compile is None:
      jit_compile = config.train.jit_compile
    multipliers = gradient_multipliers(
        self.model, config.optimizer.last_layer_gradient_multiplier,
        config.init.last_layers_contain_logits_only)
    if config.train.accumulation_steps == 1:
      gradients = self._batch_gradients
    else:
      gradients = self._accumulated_gradients

    def step_fn(images, labels):
      grads, loss = gradients(images, labels)
      grads = [g if m == 1.0 else g * m for g, m in zip(grads, multipliers)]
      if config.optimizer.clip_global_norm > 0:
        grads, _ = clip_by_global_norm(
            grads, config.optimizer.clip_global_norm,
            getattr(self.optimizer, "dynamic_scale", None))
      self.optimizer.apply(grads, self.model.trainable_variables)
      return loss

    if jit_compile:
      step_fn = tf.function(step_fn, jit_compile=True)

    @tf.function
    def loop(iterator, steps):
      total = tf.constant(0.0)
      for _ in tf.range(steps):
        per_replica = self.strategy.run(step_fn, args=next(iterator))
        total += self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                                      axis=None)
      return total / tf.cast(steps, tf.float32)

    return loop

  def _weight_decay(self):
    """This replica's share of the L2 weight-decay loss (SGD; AdamW decays
    in its update)."""
    optimizer = self.config.optimizer
    if optimizer.name != "sgd":
      return tf.constant(0.0)
    return loss_lib.weight_decay_loss(
        self.kernels, optimizer.weight_decay) / self.strategy.num_replicas_in_sync

  def _batch_gradients(self, images, labels):
    """``(scaled gradients, loss)`` of this replica's batch: its loss sum
    over the global count, plus its share of weight decay."""
    with tf.GradientTape() as tape:
      logits = self.model(images, training=True)
      total, count = self.task.loss_sum_and_count(logits, labels,
                                                  self.optimizer.iterations)
      context = tf.distribute.get_replica_context()
      count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
      loss = total / tf.maximum(count, 1.0) + self._weight_decay()
      scaled = self.optimizer.scale_loss(loss)
    return tape.gradient(scaled, self.model.trainable_variables), loss

  def _accumulated_gradients(self, images, labels):
    """``(scaled gradients, loss)`` of this replica's batch, summed over its
    ``config.train.accumulation_steps`` micro-batches.

    The count a loss is normalised by is known only after the last
    micro-batch; each micro-batch's gradient is taken of its loss sum over
    the global batch's pixels (or images), a normaliser known up front, and
    the sum is rescaled by ``pixels / count`` at the end: the gradient of
    the whole batch's sum over its count, exactly, at the magnitude loss
    scaling expects.
    """
    steps = self.config.train.accumulation_steps
    variables = self.model.trainable_variables
    context = tf.distribute.get_replica_context()
    micro_images = split_micro_batches(images, steps)
    micro_labels = split_micro_batches(labels, steps)
    reference = tf.cast(tf.size(labels), tf.float32) * context.num_replicas_in_sync

    def micro_step(i, grads, total, count):
      with tf.GradientTape() as tape:
        logits = self.model(micro_images[i], training=True)
        part, part_count = self.task.loss_sum_and_count(
            logits, micro_labels[i], self.optimizer.iterations)
        scaled = self.optimizer.scale_loss(part / reference)
      part_grads = tape.gradient(scaled, variables)
      return (i + 1, [g + p for g, p in zip(grads, part_grads)],
              total + part, count + part_count)

    # One iteration at a time: overlapping ones would hold the activations
    # of several micro-batches, the memory accumulation saves.
    _, grads, total, count = tf.while_loop(
        lambda i, *_: i < steps, micro_step,
        (tf.constant(0), [tf.zeros(v.shape, v.dtype) for v in variables],
         tf.constant(0.0), tf.constant(0.0)), parallel_iterations=1)
    count = tf.maximum(context.all_reduce(tf.distribute.ReduceOp.SUM, count), 1.0)
    factor = reference / count
    grads = [g * tf.cast(factor, g.dtype) for g in grads]
    with tf.GradientTape() as tape:
      decay = self._weight_decay()
      scaled = self.optimizer.scale_loss(decay)
    if self.config.optimizer.name == "sgd":
      decayed = dict(zip(map(id, self.kernels), tape.gradient(scaled, self.kernels)))
      grads = [g + decayed[id(v)] if id(v) in decayed else g
               for g, v in zip(grads, variables)]
    return grads, total / count + decay
