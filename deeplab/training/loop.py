"""The training loop: one device, MirroredStrategy, MultiWorkerMirroredStrategy
(TF_CONFIG) and TPUStrategy share it, and so do the tasks (segmentation,
and classification to pretrain a backbone: ``deeplab.tasks``).

The dataset is distributed with input contexts, ``steps_per_loop`` steps run
inside one ``tf.function`` call (``Trainer.make_train_loop``), a checkpoint
is written every ``config.checkpoint.every`` steps, and the loop stops at
``config.train.steps``, on SIGTERM/SIGINT or when the ``max_minutes`` budget
is spent (``budget.TimeBudget``, which also fits the learning rate schedule
to it), saving first; in a multi-worker job every worker stops after the
same step (``stopping.Stopper`` agrees on signals, the budget on the time).
``train_and_eval`` evaluates after every checkpoint and logs the validation
mIoU beside the loss: with the training strategy on one host (one device,
MirroredStrategy), and on the chief's host CPU, on a copy of the weights,
under TPUStrategy and MultiWorkerMirroredStrategy
(``Trainer.evaluation_model``), while the other workers wait at a barrier.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from typing import Callable, Dict, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import evaluation
from deeplab import progress
from deeplab import run_dir
from deeplab.data import pipeline
from deeplab.training import stopping
from deeplab.training import strategy as strategy_lib
from deeplab.training import trainer as trainer_lib

MODES = ("train", "train_and_eval")


def train(config, workdir: str, strategy: Optional[tf.distribute.Strategy] = None,
          evaluate_every_checkpoint: bool = False,
          clock: Callable[[], float] = time.monotonic) -> Dict:
  """Trains (or resumes) until ``config.train.steps`` or a stop condition.

  Args:
    config: experiment config.
    workdir: checkpoints, ``config.json``, summaries and the log go here.
    strategy: default: from ``config.distribution.strategy``.
    evaluate_every_checkpoint: evaluate on the eval records after each
      checkpoint (train_and_eval).
    clock: monotonic seconds for the time budget (tests pass a fake one).

  Returns:
    ``{"step": final step, "loss": last mean loss, "stopped": reason}``.

  Raises:
    FloatingPointError: the loss became NaN or Inf (the last checkpoint,
      written before, is left as it was).
  """
  config = config_lib.resolve_dataset(config)  # Classes from the records.
  config_lib.validate(config)
  run_dir.prepare(workdir)
  if run_dir.has_config(workdir):  # Before minutes of model building.
    run_dir.check_architecture(config, run_dir.read_config(workdir), workdir)
  # Fail on missing records before minutes of model building.
  pipeline.list_files(config.data.train_pattern, "config.data.train_pattern")
  if evaluate_every_checkpoint:
    pipeline.list_files(config.data.eval_pattern, "config.data.eval_pattern")
  strategy = strategy or strategy_lib.make_strategy(config.distribution.strategy,
                                                    config.distribution.tpu)
  trainer = trainer_lib.Trainer(config, workdir, strategy, clock)
  if trainer.chief:
    run_dir.write_config(config, workdir)
  trainer.restore_or_initialize()
  start_step = trainer.step
  budget = trainer.budget
  budget.start(start_step)
  train_cfg = config.train
  checkpoint_every = config.checkpoint.every
  dataset = strategy.distribute_datasets_from_function(
      lambda context: trainer.task.train_dataset(context, start_step))
  iterator = iter(dataset)
  loop = trainer.make_train_loop()
  writer = (tf.summary.create_file_writer(os.path.join(workdir, "train"))
            if trainer.chief else tf.summary.create_noop_writer())
  bar = progress.Progress(train_cfg.steps, "train", unit="steps",
                          initial=start_step, enabled=trainer.chief)
  loss = float("nan")
  stopped = "done"
  last_saved = start_step
  with stopping.Stopper(strategy) as stopper, writer.as_default():
    while trainer.step < train_cfg.steps:
      step = trainer.step
      until_checkpoint = checkpoint_every - step % checkpoint_every
      count = min(train_cfg.steps_per_loop, train_cfg.steps - step, until_checkpoint)
      begin = time.perf_counter()
      loss = float(loop(iterator, tf.constant(count)))
      elapsed = time.perf_counter() - begin
      step = trainer.step
      if not np.isfinite(loss):
        raise FloatingPointError(
            f"loss is {loss} at step {step}: training stopped; the last good "
            f"checkpoint ({trainer.manager.latest_checkpoint}) is untouched. "
            "Lower config.schedule.base_learning_rate, check the labels with "
            "`deeplab-inspect`, or use float32.")
      images_per_second = count * train_cfg.batch_size / elapsed
      spent = budget.update(step, strategy)
      learning_rate = float(trainer.schedule(step))
      minutes = float(budget.elapsed.numpy()) / 60
      if budget.enabled:  # The ETA counts to the step the budget will reach.
        bar.total = min(train_cfg.steps, int(round(float(budget.horizon.numpy()))))
      bar.update(count, f"loss {loss:.4f} {images_per_second:.1f} images/s")
      tf.summary.scalar("loss", loss, step)
      tf.summary.scalar("learning_rate", learning_rate, step)
      tf.summary.scalar("step_time", elapsed / count, step)
      tf.summary.scalar("images_per_second", images_per_second, step)
      if trainer.chief:
        run_dir.append_log(workdir, dict(
            step=step, loss=loss, learning_rate=learning_rate,
            images_per_second=images_per_second, minutes=round(minutes, 4),
            schedule_horizon=round(float(budget.horizon.numpy()), 1)))
      if step % checkpoint_every == 0 or step == train_cfg.steps:
        trainer.save()
        last_saved = step
        if evaluate_every_checkpoint:
          _evaluate(config, trainer, workdir, step, minutes)
      reason = stopper.agreed_reason()
      if reason:
        stopped = reason
        break
      if spent:
        stopped = "max_minutes"
        break
    if trainer.step != last_saved:
      trainer.save()
  writer.flush()
  if not trainer.chief:
    shutil.rmtree(trainer.manager.directory, ignore_errors=True)
  logging.info("Training stopped (%s) at step %d", stopped, trainer.step)
  return {"step": trainer.step, "loss": loss, "stopped": stopped}


def _evaluate(config, trainer: trainer_lib.Trainer, workdir: str, step: int,
              minutes: float):
  """``train_and_eval``'s evaluation after a checkpoint, logged: by the
  chief alone where the model evaluates on its host, every other worker
  waiting at a barrier."""
  strategy = trainer.strategy
  if trainer.chief:
    model, eval_strategy = trainer.evaluation_model()
    on_host = eval_strategy is not strategy
    with (tf.device(strategy_lib.host_cpu(strategy)) if on_host
          else contextlib.nullcontext()):
      metrics = evaluation.evaluate_model(
          config, model, workdir, step, eval_strategy,
          checkpoint=run_dir.CheckpointChoice(
              trainer.manager.latest_checkpoint, step, "latest"))
    trainer.keep_best(metrics)
    run_dir.append_log(workdir, dict(
        step=step, minutes=round(minutes, 4),
        **trainer.task.validation_log(metrics)))
  stopping.wait_for_chief_evaluation(strategy, step)


def run(config, workdir: str, mode: str = "train") -> Dict:
  """The CLI's one call: ``train`` or ``train_and_eval`` (evaluation after
  every checkpoint); ``eval.py`` runs continuous evaluation."""
  if mode not in MODES:
    raise ValueError(f"--mode must be one of {MODES}, got {mode!r}")
  return train(config, workdir, evaluate_every_checkpoint=mode == "train_and_eval")
