"""The best checkpoint of ``train_and_eval``: kept beside the rotated ones,
chosen with ``--checkpoint=best`` by eval, export and predict, never
resumed from; and the errors of a checkpoint that is not there."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab import export
from deeplab import run_dir
from deeplab.tasks import segmentation
from deeplab.training import loop
from deeplab.training import trainer as trainer_lib
from tests.harness import config_with
from tests.harness import make_synthetic_records
from tests.harness import run_cli

# The mIoU each evaluation reports, by step: the best is an early one.
MIOU = {2: 0.3, 4: 0.9, 6: 0.5}


def _run_config(records, steps):
  return config_with(records, **{
      "train.steps": str(steps), "checkpoint.every": "2",
      "checkpoint.keep": "1", "data.crop_size": "(65,65)"})


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """Synthetic records at 65x65: 16 train, 4 val images."""
  return make_synthetic_records(tmp_path_factory.mktemp("records"),
                                train_size=16, val_size=4, image_size=65)


@pytest.fixture(scope="module")
def run(records, tmp_path_factory):
  """A 6-step ``train_and_eval`` run keeping 1 checkpoint, whose
  evaluations at steps 2, 4, 6 report ``MIOU`` (best: 4); the weights each
  evaluation saw."""
  workdir = tmp_path_factory.mktemp("best") / "w"
  snapshots = {}

  def evaluate(task, model, strategy, pattern=None):
    step = len(snapshots) * 2 + 2
    snapshots[step] = [np.array(w) for w in model.get_weights()]
    return {"miou": MIOU[step], "pixel_accuracy": 0.5, "per_class_iou": {}}

  with pytest.MonkeyPatch.context() as monkeypatch:
    monkeypatch.setattr(segmentation.SegmentationTask, "evaluate", evaluate)
    loop.train(_run_config(records, 6), str(workdir),
               evaluate_every_checkpoint=True)
  return workdir, snapshots


def _weights(config, workdir, checkpoint):
  model, step = run_dir.restore_model(config, str(workdir), checkpoint)
  return model.get_weights(), step


def _assert_same(got, expected):
  assert len(got) == len(expected)
  for a, b in zip(got, expected):
    np.testing.assert_array_equal(a, b)


def test_the_best_survives_rotation_and_is_what_best_restores(run, records):
  workdir, snapshots = run
  assert [run_dir.checkpoint_step(p) for p in
          run_dir.checkpoints_newest_first(str(workdir))] == [6]  # keep=1
  best = json.loads((workdir / "checkpoints" / "best" / "best.json").read_text())
  assert best == {"path": "ckpt-4", "step": 4, "metric": "miou", "value": 0.9}
  assert sorted(p.name for p in (workdir / "checkpoints" / "best").iterdir()
                if p.name.startswith("ckpt-")) == [
                    "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
  config = _run_config(records, 6)
  weights, step = _weights(config, workdir, "best")
  assert step == 4
  _assert_same(weights, snapshots[4])
  latest, step = _weights(config, workdir, None)
  assert step == 6
  _assert_same(latest, snapshots[6])
  # A step names the best copy too once its own checkpoint is rotated away.
  assert run_dir.resolve_checkpoint(str(workdir), "4").path == str(
      workdir / "checkpoints" / "best" / "ckpt-4")
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics["checkpoint"] == {
      "path": str(workdir / "checkpoints" / "ckpt-6"), "step": 6,
      "selector": "latest"}


def test_export_of_best_exports_the_best_and_says_so(run, records, tmp_path):
  workdir, _ = run
  config = _run_config(records, 6)
  step = export.export_run(config, str(workdir), export_dir=str(tmp_path / "e"),
                           checkpoint="best")
  assert step == 4
  loaded = tf.saved_model.load(str(tmp_path / "e"))
  assert json.loads(loaded.metadata.numpy())["checkpoint"] == {
      "path": str(workdir / "checkpoints" / "best" / "ckpt-4"), "step": 4,
      "selector": "best"}


def test_eval_cli_evaluates_the_checkpoint_asked_for(run):
  workdir, _ = run
  result = run_cli("eval.py", f"--workdir={workdir}", "--checkpoint=best")
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((workdir / "eval" / "metrics-4.json").read_text())
  assert metrics["checkpoint"] == {
      "path": str(workdir / "checkpoints" / "best" / "ckpt-4"), "step": 4,
      "selector": "best"}


def test_resume_continues_from_the_latest_not_the_best(run, records):
  workdir, _ = run
  trainer = trainer_lib.Trainer(_run_config(records, 8), str(workdir),
                                tf.distribute.get_strategy())
  assert trainer.restore_or_initialize() == str(workdir / "checkpoints" / "ckpt-6")
  assert trainer.step == 6


def _fake_run(folder, steps):
  """A run folder holding checkpoints of ``steps`` (one variable each)."""
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(v=tf.Variable(1.0)), run_dir.checkpoint_dir(str(folder)),
      max_to_keep=None)
  for step in steps:
    manager.save(checkpoint_number=step)
  return str(folder)


def test_checkpoint_selectors_and_their_errors(tmp_path):
  workdir = _fake_run(tmp_path / "w", (3, 6))
  folder = run_dir.checkpoint_dir(workdir)
  for selector in (None, "", "latest"):
    assert run_dir.resolve_checkpoint(workdir, selector).step == 6
  assert run_dir.resolve_checkpoint(workdir, "3") == run_dir.CheckpointChoice(
      f"{folder}/ckpt-3", 3, "3")
  assert run_dir.resolve_checkpoint(workdir, f"{folder}/ckpt-3").step == 3
  assert run_dir.resolve_checkpoint(workdir, "ckpt-3").path == f"{folder}/ckpt-3"
  with pytest.raises(FileNotFoundError, match=r"no best checkpoint .*"
                     r"--mode=train_and_eval .*Steps on disk: 3, 6"):
    run_dir.resolve_checkpoint(workdir, "best")
  with pytest.raises(FileNotFoundError, match=r"--checkpoint=7: no checkpoint "
                     r"of step 7 .*steps on disk: 3, 6$"):
    run_dir.resolve_checkpoint(workdir, "7")
  with pytest.raises(FileNotFoundError, match=r"'nowhere/ckpt-1' is neither "
                     r"latest, best, a step nor a checkpoint prefix"):
    run_dir.resolve_checkpoint(workdir, "nowhere/ckpt-1")
  with pytest.raises(FileNotFoundError, match="--checkpoint=latest: no checkpoint"):
    run_dir.resolve_checkpoint(str(tmp_path / "empty"), "latest")


def test_the_best_is_replaced_by_a_better_one_only(tmp_path):
  workdir = _fake_run(tmp_path / "w", (3, 6))
  folder = run_dir.checkpoint_dir(workdir)
  assert run_dir.keep_best(workdir, f"{folder}/ckpt-3", "miou", 0.5)["step"] == 3
  assert run_dir.keep_best(workdir, f"{folder}/ckpt-6", "miou", 0.5) is None
  assert run_dir.read_best(workdir)["step"] == 3
  # A better one replaces it, files and record.
  assert run_dir.keep_best(workdir, f"{folder}/ckpt-6", "miou", 0.7)["value"] == 0.7
  assert sorted(os.listdir(run_dir.best_dir(workdir))) == [
      "best.json", "ckpt-6.data-00000-of-00001", "ckpt-6.index"]
  # Not in the run's checkpoint list: rotation and resume never see it.
  assert [run_dir.checkpoint_step(p) for p in
          run_dir.checkpoints_newest_first(workdir)] == [6, 3]
