"""What a cluster does to a job: preempted and timed-out workers, evaluation
during multi-worker training, and saves that are killed or fail."""

import re
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab import run_dir
from deeplab.training import loop
from tests.harness import config_with
from tests.harness import final_weights
from tests.harness import launch_workers
from tests.harness import make_synthetic_records
from tests.harness import run_cli
from tests.harness import run_train
from tests.harness import tiny_overrides

# No randomness: images as large as the crop (no random crop), no scaling,
# flip, shuffle or dropout, frozen batch norm; then one worker with the
# global batch and two workers with half of it each train alike (as in
# test_training's parity test), and one single-process run is the
# reference for the interrupted two-worker job.
PLAIN = {"data.shuffle_buffer": "1", "data.min_scale": "1.0",
         "data.max_scale": "1.0", "data.flip": "False",
         "model.dropout_rate": "0.0", "train.fine_tune_batch_norm": "False",
         "train.steps_per_loop": "1"}
STEPS = 30


@pytest.fixture(scope="module")
def small_records(tmp_path_factory):
  return make_synthetic_records(tmp_path_factory.mktemp("small"), train_size=80,
                                val_size=4, image_size=65)


def _stopped_at(output, reason):
  match = re.search(rf"Training stopped \({reason}\) at step (\d+)", output)
  assert match, output[-5000:]
  return int(match.group(1))


def _logged_steps(workdir):
  path = workdir / run_dir.LOG_FILE
  return len(path.read_text().splitlines()) if path.exists() else 0


def _stop_together(workdir, overrides, reason, signalled=None, extra_flags=()):
  """Runs two workers until ``reason`` stops them (SIGTERM to worker
  ``signalled`` once the chief logs a step); returns the common step."""
  before = _logged_steps(workdir)
  workers = launch_workers(workdir, [*overrides, *extra_flags])  # Last wins.
  if signalled is not None:
    deadline = time.time() + 300
    while _logged_steps(workdir) <= before:
      for worker in workers:
        worker.assert_running(deadline)
      time.sleep(0.05)
    workers[signalled].process.send_signal(signal.SIGTERM)
  steps = set()
  for worker in workers:
    code, output = worker.wait(timeout=240)  # Bounded: no worker hangs.
    assert code == 0, output[-5000:]
    steps.add(_stopped_at(output, reason))
  assert len(steps) == 1, steps  # Every worker stopped after the same step.
  step = steps.pop()
  assert run_dir.checkpoint_step(run_dir.latest_checkpoint(str(workdir))) == step
  return step


@pytest.mark.slow
def test_preempted_and_timed_out_workers_stop_together_and_resume_exactly(
    small_records, tmp_path):
  overrides = tiny_overrides(small_records, **PLAIN, **{
      "data.crop_size": "(65,65)", "train.steps": str(STEPS),
      "checkpoint.every": "1000", "checkpoint.keep": "1000"})
  # The uninterrupted reference keeps the weights of every step.
  code, output = run_train(tmp_path / "single", overrides + [
      "--config.checkpoint.every=1"])
  assert code == 0, output
  job = tmp_path / "job"
  # SIGTERM to the non-chief worker.
  first = _stop_together(job, overrides, "SIGTERM", signalled=1)
  # Resumed, evaluating at every step's checkpoint (the chief on its host,
  # worker 1 waiting at a barrier, not inside a training collective):
  # SIGTERM to the chief.
  second = _stop_together(job, overrides, "SIGTERM", signalled=0, extra_flags=[
      "--mode=train_and_eval", "--config.checkpoint.every=1"])
  assert (job / "eval" / f"metrics-{second}.json").exists()
  # Resumed with a time budget already spent (the budget counts the
  # minutes of earlier sessions): both stop after their first loop, on the
  # time the workers agree on, before the budget reshapes the schedule.
  third = _stop_together(job, overrides, "max_minutes",
                         extra_flags=["--config.budget.max_minutes=0.001"])
  assert 0 < first < second < third < STEPS
  config = config_with(small_records, **PLAIN)
  for step in (first, second, third):
    checkpoint = f"checkpoints/ckpt-{step}"
    expected, _ = final_weights(tmp_path / "single", config, checkpoint)
    got, _ = final_weights(job, config, checkpoint)
    for name, value in expected.items():
      np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-6,
                                 err_msg=f"{name} at step {step}")


# Kills the process in the middle of writing checkpoint argv[3]: its tensors
# are in the temporary shard files, the final files and the checkpoint list
# not yet written (TensorFlow's merge step is the one cut short).
KILLED_DURING_SAVE = """
import os, sys
from tensorflow.python.ops import gen_io_ops
from deeplab.training import loop
from tests.harness import config_with
merge = gen_io_ops.merge_v2_checkpoints

def merge_or_die(checkpoint_prefixes, destination_prefix, **kwargs):
  if destination_prefix.numpy().decode().endswith(sys.argv[3]):
    os._exit(3)
  return merge(checkpoint_prefixes, destination_prefix, **kwargs)

gen_io_ops.merge_v2_checkpoints = merge_or_die
loop.train(config_with(sys.argv[1], **{"train.steps": "8"}), sys.argv[2])
"""


def test_a_save_killed_midway_or_a_damaged_checkpoint_resumes_from_the_one_before(
    records, tmp_path):
  result = run_cli("-c", KILLED_DURING_SAVE, records, tmp_path, "ckpt-8", timeout=300)
  assert result.returncode == 3, result.stderr[-3000:]
  assert run_dir.latest_checkpoint(str(tmp_path)).endswith("ckpt-4")
  code, output = run_train(tmp_path, tiny_overrides(records, **{"train.steps": "8"}))
  assert code == 0 and re.search(r"Resumed from \S+ckpt-4 ", output), output
  # A truncated data file of the latest checkpoint: named, then skipped.
  data = tmp_path / "checkpoints" / "ckpt-8.data-00000-of-00001"
  data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
  code, output = run_train(tmp_path, tiny_overrides(records))
  assert code == 0, output
  assert re.search(r"Checkpoint \S+ckpt-8 is damaged", output), output
  assert re.search(r"Resumed from \S+ckpt-4 ", output), output
  assert run_dir.latest_checkpoint(str(tmp_path)).endswith("ckpt-12")


def test_an_unwritable_workdir_is_refused_before_training(records, tmp_path, monkeypatch):
  real = tf.io.gfile.GFile

  def read_only(path, mode="r"):  # A read-only file system, as root sees it.
    if "w" in mode or "a" in mode:
      raise tf.errors.PermissionDeniedError(None, None, f"{path}: Read-only file system")
    return real(path, mode)

  monkeypatch.setattr(tf.io.gfile, "GFile", read_only)
  with pytest.raises(PermissionError, match="cannot be written .*Read-only file system"):
    loop.train(config_with(records), str(tmp_path / "run"))


def test_a_failing_save_names_the_intact_checkpoint(records, tmp_path, monkeypatch):
  save = tf.train.CheckpointManager.save

  def disk_full_at_step_8(self, checkpoint_number=None, **kwargs):
    if checkpoint_number == 8:
      raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")
    return save(self, checkpoint_number=checkpoint_number, **kwargs)

  monkeypatch.setattr(tf.train.CheckpointManager, "save", disk_full_at_step_8)
  with pytest.raises(run_dir.CheckpointWriteError,
                     match=r"step 8 .*No space left on device.*intact up to \S+ckpt-4"):
    loop.train(config_with(records), str(tmp_path))
  assert run_dir.latest_checkpoint(str(tmp_path)).endswith("ckpt-4")
  _, step = run_dir.restore_model(config_with(records), str(tmp_path))
  assert step == 4
