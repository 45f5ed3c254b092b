"""Evaluation of a run: metrics files, TensorBoard summaries, and continuous
evaluation of new checkpoints.

``evaluate_model`` scores a model on the config's eval records as its task
does (``deeplab.tasks``: mIoU and friends for segmentation, top-1 and top-5
accuracy for classification) and writes ``W/eval/metrics.json`` (and
``metrics-<step>.json``, each with the checkpoint it scored) and the task's
TensorBoard summaries.
``evaluate_checkpoint`` restores a checkpoint of a run (``latest``,
``best``, a step or a prefix: ``run_dir.resolve_checkpoint``) and scores its
inference form (batch norm folded: the same logits, faster);
``continuous_eval`` does that for each new checkpoint. Training calls
``evaluate_model`` on its live model (``train_and_eval``).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import tensorflow as tf

from deeplab import folding
from deeplab import run_dir
from deeplab import tasks


def evaluate_model(config, model, workdir: str, step: int,
                   strategy: Optional[tf.distribute.Strategy] = None,
                   pattern: Optional[str] = None,
                   checkpoint: Optional[run_dir.CheckpointChoice] = None) -> Dict:
  """Evaluates ``model`` on the eval records; writes metrics and summaries.

  Args:
    config: the run's config (its task scores the model).
    model: the model, created under ``strategy``'s scope.
    workdir: the run folder; ``workdir/eval`` receives ``metrics.json``,
      ``metrics-<step>.json`` and the TensorBoard summaries.
    step: the training step the model is at.
    strategy: the strategy the model lives in (default: the current one).
    pattern: records replacing ``config.data.eval_pattern``.
    checkpoint: the checkpoint the model holds, recorded as the metrics'
      ``checkpoint`` (``{"path", "step", "selector"}``).

  Returns:
    The task's metrics (``Task.evaluate``), ``step`` and, given,
    ``checkpoint``.
  """
  task = tasks.make_task(config)
  metrics = task.evaluate(model, strategy or tf.distribute.get_strategy(),
                          pattern)
  metrics["step"] = int(step)
  if checkpoint is not None:
    metrics["checkpoint"] = checkpoint.describe()
  eval_dir = write_metrics(metrics, workdir)
  with tf.summary.create_file_writer(eval_dir).as_default():
    task.summarize(model, metrics, step, pattern)
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


def evaluate_checkpoint(config, workdir: str, checkpoint: Optional[str] = None,
                        strategy: Optional[tf.distribute.Strategy] = None
                        ) -> Dict:
  """Restores a checkpoint of the run (``checkpoint``: ``latest``, the
  default, ``best``, a step or a prefix), folds its batch norm and
  evaluates it; returns the metrics ``evaluate_model`` wrote."""
  choice = run_dir.resolve_checkpoint(workdir, checkpoint)
  model, step = run_dir.restore_model(config, workdir, choice.path)
  return evaluate_model(config, folding.inference_model(model), workdir, step,
                        strategy, checkpoint=choice)


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
    results.append(evaluate_model(
        config, evaluated, workdir, step, strategy,
        checkpoint=run_dir.CheckpointChoice(checkpoint, step, "latest")))
    if results[-1]["step"] >= config.train.steps:
      break
  return results
