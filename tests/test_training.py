"""Training: learning, resume after SIGKILL, multi-worker parity, stops, errors."""

import json
import logging
import os
import re
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab import loss as loss_lib
from deeplab import naming
from deeplab import run_dir
from deeplab.training import loop
from deeplab.training import schedule as schedule_lib
from deeplab.training import trainer as trainer_lib
from tests.harness import config_with
from tests.harness import final_weights
from tests.harness import launch_workers
from tests.harness import run_cli
from tests.harness import run_train
from tests.harness import tiny_overrides


@pytest.mark.slow
def test_the_tiny_default_learns_the_synthetic_shapes(records, tmp_path):
  # 300 steps of batch 8 at 129x129 take about two minutes on 2 cores; chance
  # level on 5 classes is a mIoU of about 0.2 (all background: ~0.16).
  code, output = run_train(tmp_path, [
      f"--config.data.train_pattern={records}/train-*.tfrecord",
      f"--config.data.eval_pattern={records}/val-*.tfrecord",
      "--config.train.steps=300", "--config.checkpoint.every=300",
      "--config.eval.num_summary_images=1"], extra_flags=["--mode=train_and_eval"])
  assert code == 0, output
  metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
  assert metrics["step"] == 300
  assert metrics["miou"] >= 0.5, metrics
  assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 300
  log = [json.loads(l) for l in (tmp_path / run_dir.LOG_FILE).read_text().splitlines()]
  steps = [r for r in log if "loss" in r]
  assert steps[-1]["loss"] < steps[0]["loss"]
  # No time budget: the schedule ends at config.train.steps.
  assert {r["schedule_horizon"] for r in steps} == {300}
  # The validation mIoU of each checkpoint is in the log, for curves.
  (evaluated,) = [r for r in log if "val_miou" in r]
  assert evaluated["step"] == 300 and evaluated["val_miou"] == metrics["miou"]
  assert evaluated["val_per_class_iou"] == metrics["per_class_iou"]


def test_resume_after_sigkill_matches_an_uninterrupted_run(records, tmp_path):
  overrides = tiny_overrides(records)  # Dropout on: its random state resumes too.
  code, output = run_train(tmp_path / "straight", overrides)
  assert code == 0, output
  killed = tmp_path / "killed"
  launched = run_train(killed, overrides, wait=False)
  deadline = time.time() + 300
  while not (killed / "checkpoints" / "ckpt-8.index").exists():
    launched.assert_running(deadline)
    time.sleep(0.05)
  launched.process.send_signal(signal.SIGKILL)
  launched.process.wait()
  code, output = run_train(killed, overrides)
  assert code == 0, output
  assert "Resumed from" in output
  config = config_with(records)
  expected, step = final_weights(tmp_path / "straight", config)
  resumed, resumed_step = final_weights(killed, config)
  assert step == resumed_step == 12
  # Same batches, same order (deterministic pipeline skipped to the resumed
  # step); differences come only from float reduction order in oneDNN.
  for name, value in expected.items():
    np.testing.assert_allclose(resumed[name], value, rtol=1e-4, atol=1e-5,
                               err_msg=name)


@pytest.mark.slow
def test_two_workers_match_one_worker_with_the_same_global_batch(records, tmp_path):
  # No randomness anywhere: no shuffle, no scaling or flip, no dropout, one
  # shard read record by record, so worker 0 gets records 0, 2, 4, ... and
  # worker 1 records 1, 3, 5, ...: together exactly the single worker's batch.
  # Batch norm is frozen here: in training mode its batch statistics amplify
  # float32 summation-order noise (reordering the images of one batch on one
  # worker already moves the logits by ~4e-5), which SGD then grows over the
  # steps; synchronized batch norm has its own test below. Frozen, the only
  # differences left are the all-reduce's float32 summation order.
  overrides = tiny_overrides(
      records, **{"data.shuffle_buffer": "1", "data.min_scale": "1.0",
                  "data.max_scale": "1.0", "data.flip": "False",
                  "model.dropout_rate": "0.0", "data.crop_size": "(161,161)",
                  "train.fine_tune_batch_norm": "False",
                  "train.steps": "6", "checkpoint.every": "6"})
  code, output = run_train(tmp_path / "single", overrides)
  assert code == 0, output
  processes = launch_workers(tmp_path / "multi", overrides)
  results = [p.wait() for p in processes]
  assert all(code == 0 for code, _ in results), [out[-5000:] for _, out in results]
  single = [json.loads(l) for l in (tmp_path / "single" / run_dir.LOG_FILE).read_text().splitlines()]
  multi = [json.loads(l) for l in (tmp_path / "multi" / run_dir.LOG_FILE).read_text().splitlines()]
  assert [r["step"] for r in multi] == [r["step"] for r in single]
  np.testing.assert_allclose([r["loss"] for r in multi],
                             [r["loss"] for r in single], rtol=1e-5)
  config = config_with(records, **{"model.dropout_rate": "0.0"})
  expected, _ = final_weights(tmp_path / "single", config)
  got, _ = final_weights(tmp_path / "multi", config)
  for name, value in expected.items():
    np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-6, err_msg=name)


SYNC_BN_SCRIPT = """
import sys
import numpy as np, tensorflow as tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from deeplab_configs import synthetic
from deeplab import model as model_lib
config = synthetic.get_config()
config.model.dropout_rate = 0.0
plain = model_lib.build_model(config)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
  split = model_lib.build_model(config, sync_batch_norm=sys.argv[1] == "sync")
split.set_weights(plain.get_weights())
x = np.random.RandomState(0).uniform(-1, 1, (4, 97, 97, 3)).astype("float32")
whole = plain(x, training=True).numpy()
halves = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices(x).batch(4))
out = strategy.run(tf.function(lambda b: split(b, training=True)),
                   args=(next(iter(halves)),))
got = np.concatenate([t.numpy() for t in strategy.experimental_local_results(out)])
print("max_abs_diff", float(np.abs(got - whole).max()))
"""


@pytest.mark.parametrize("mode", ["sync", "local"])
def test_synchronized_batch_norm_over_two_replicas_equals_one_batch(mode, tmp_path):
  result = run_cli("-c", SYNC_BN_SCRIPT, mode, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  diff = float(re.search(r"max_abs_diff (\S+)", result.stdout).group(1))
  if mode == "sync":
    # Float32 summation-order noise only (see the multi-worker test).
    assert diff < 2e-4
  else:  # Per-replica statistics really differ: the check can fail.
    assert diff > 1e-2
def test_sigterm_and_max_minutes_stop_cleanly_with_a_checkpoint(records, tmp_path):
  overrides = tiny_overrides(records, **{"train.steps": "100000",
                                         "checkpoint.every": "100000"})
  launched = run_train(tmp_path / "term", overrides, wait=False)
  deadline = time.time() + 300
  while not (tmp_path / "term" / run_dir.LOG_FILE).exists():
    launched.assert_running(deadline)
    time.sleep(0.05)
  launched.process.send_signal(signal.SIGTERM)
  code, output = launched.wait(timeout=120)
  assert code == 0, output
  assert "Training stopped (SIGTERM)" in output
  assert tf.train.latest_checkpoint(str(tmp_path / "term" / "checkpoints"))
  code, output = run_train(tmp_path / "minutes", overrides + [
      "--config.budget.max_minutes=0.002"])
  assert code == 0 and "Training stopped (max_minutes)" in output, output
  assert tf.train.latest_checkpoint(str(tmp_path / "minutes" / "checkpoints"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(records, tmp_path):
  code, _ = run_train(tmp_path, tiny_overrides(records, **{"train.steps": "4"}))
  assert code == 0
  before = sorted(os.listdir(tmp_path / "checkpoints"))
  code, output = run_train(tmp_path, tiny_overrides(
      records, **{"train.steps": "40", "schedule.base_learning_rate": "1e12"}))
  assert code != 0
  assert "FloatingPointError: loss is" in output
  assert sorted(os.listdir(tmp_path / "checkpoints")) == before


def test_fine_tune_from_a_workdir_with_a_fresh_logits_layer(records, tmp_path):
  code, output = run_train(tmp_path / "source", tiny_overrides(records, **{"train.steps": "2"}))
  assert code == 0, output
  config = config_with(records)
  config.dataset.name = "shapes3"
  config.dataset.num_classes = 3
  config.init.checkpoint = str(tmp_path / "source")
  config.init.initialize_last_layer = False
  trainer = trainer_lib.Trainer(config, str(tmp_path / "target"), tf.distribute.get_strategy())
  trainer.restore_or_initialize()
  source, _ = final_weights(tmp_path / "source", config_with(records))
  names = naming.original_names(trainer.model)
  np.testing.assert_array_equal(names["MobilenetV2/Conv/weights"], source["MobilenetV2/Conv/weights"])
  assert names["logits/semantic/weights"].shape[-1] == 3


@pytest.mark.parametrize("overrides, message", [
    ({"distribution.strategy": "horovod"}, "config.distribution.strategy must be one of"),
    ({"dataset.num_classes": "7"}, "config.dataset.num_classes=7 contradicts the records"),
    ({"data.train_pattern": "/nowhere/*.tfrecord"}, "config.data.train_pattern='/nowhere/*.tfrecord' matches no files"),
])
def test_bad_input_gives_clear_errors(records, tmp_path, overrides, message):
  config = config_with(records)
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = type(config[section][field])(value)
  with pytest.raises((ValueError, FileNotFoundError), match=re.escape(message)):
    loop.train(config, str(tmp_path))


def test_a_workdir_that_is_a_file_is_refused(records, tmp_path):
  path = tmp_path / "file"
  path.write_text("")
  with pytest.raises(ValueError, match="is a file, not a folder"):
    loop.train(config_with(records), str(path))


def test_poly_schedule_with_warmup():
  schedule = schedule_lib.PolyWithWarmup(0.01, 110, power=0.9, warmup_steps=10,
                                         warmup_learning_rate=0.001,
                                         warmup_type="linear")
  assert float(schedule(0)) == pytest.approx(0.001)
  assert float(schedule(5)) == pytest.approx(0.0055)
  assert float(schedule(10)) == pytest.approx(0.01)
  assert float(schedule(60)) == pytest.approx(0.01 * 0.5 ** 0.9)
  assert float(schedule(110)) == pytest.approx(0.0)


def test_loss_ignores_pixels_weights_classes_and_mines_hard_pixels():
  logits = tf.constant([[[[2.0, 0.0], [0.0, 2.0], [5.0, 0.0], [0.0, 0.0]]]])
  labels = tf.constant([[[0, 0, 255, 1]]])
  losses, weights = loss_lib.pixel_losses(logits, labels, 2, 255)
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits
  expected = [float(ce(labels=[0], logits=[[2.0, 0.0]])[0]),
              float(ce(labels=[0], logits=[[0.0, 2.0]])[0]), 0.0, np.log(2)]
  np.testing.assert_allclose(losses[0, 0], expected, rtol=1e-6)
  np.testing.assert_array_equal(weights[0, 0], [1, 1, 0, 1])
  weighted, _ = loss_lib.pixel_losses(logits, labels, 2, 255, (1.0, 3.0))
  np.testing.assert_allclose(weighted[0, 0, 3], 3 * np.log(2), rtol=1e-6)
  total, count = loss_lib.loss_sum_and_count(losses, weights, 0.5)
  assert float(count) == 2
  assert float(total) == pytest.approx(expected[1] + expected[3], rel=1e-6)


def _jaccard_losses(labels, predicted, present, valid):
  """1 - IoU of each present class, from hard predictions (numpy)."""
  out = []
  for c in present:
    truth, guess = (labels == c) & valid, (predicted == c) & valid
    out.append(1.0 - (truth & guess).sum() / (truth | guess).sum())
  return np.array(out)


def test_lovasz_softmax_is_the_jaccard_loss_on_one_hot_predictions():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, size=(2, 5, 7))
  labels[0, 0, :3] = 255
  labels[1, 4, 6] = 9  # out of range: left out like the ignore label
  labels[labels == 2] = 0  # class 2 is absent: it does not count
  predicted = np.where(rng.random(labels.shape) < 0.6, labels, rng.integers(0, 4, labels.shape))
  predicted = np.clip(predicted, 0, 3)
  logits = 60.0 * tf.one_hot(predicted, 4)
  valid = (labels != 255) & (labels < 4)
  expected = _jaccard_losses(labels, predicted, (0, 1, 3), valid).mean()
  value = float(loss_lib.lovasz_softmax(logits, labels, 4, 255))
  assert value == pytest.approx(expected, abs=1e-5)
  assert 0.05 < value < 0.95  # neither all right nor all wrong


def _lovasz_extension(errors, truth):
  """The Lovasz extension of 1 - IoU at ``errors``, from its definition:
  sum over k of e_(k) * (J(S_k) - J(S_(k-1))), S_k the k largest errors."""
  order = np.argsort(-errors, kind="stable")
  total, previous = 0.0, 0.0
  for k in range(1, len(order) + 1):
    wrong = np.zeros_like(truth)
    wrong[order[:k]] = True
    union = (truth | wrong).sum()
    jaccard = 1.0 - (truth & ~wrong).sum() / union
    total += errors[order[k - 1]] * (jaccard - previous)
    previous = jaccard
  return total


def test_lovasz_softmax_matches_the_extension_on_soft_predictions():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 3, size=(1, 4, 6))
  labels[0, 1, 1:4] = 255
  logits = rng.normal(size=(1, 4, 6, 3)).astype(np.float32)
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  valid = (labels != 255).reshape(-1)
  expected = np.mean([
      _lovasz_extension(np.abs((labels == c).reshape(-1)[valid] * 1.0
                               - probs[..., c].reshape(-1)[valid]),
                        (labels == c).reshape(-1)[valid])
      for c in range(3)])
  value = float(loss_lib.lovasz_softmax(tf.constant(logits), labels, 3, 255))
  assert value == pytest.approx(expected, rel=1e-5)


def test_lovasz_softmax_gradient_leaves_ignored_pixels_and_lowers_the_loss():
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 3, size=(1, 6, 6))
  labels[0, :2] = 255
  logits = tf.Variable(rng.normal(size=(1, 6, 6, 3)).astype(np.float32))
  with tf.GradientTape() as tape:
    before = loss_lib.lovasz_softmax(logits, labels, 3, 255)
  grad = tape.gradient(before, logits)
  np.testing.assert_array_equal(grad.numpy()[0, :2], 0.0)
  assert np.abs(grad.numpy()[0, 2:]).max() > 0
  logits.assign_sub(0.5 * grad / tf.reduce_max(tf.abs(grad)))
  assert float(loss_lib.lovasz_softmax(logits, labels, 3, 255)) < float(before)


def test_lovasz_weight_adds_the_lovasz_loss_to_the_segmentation_loss(records):
  from deeplab import tasks  # pylint: disable=g-import-not-at-top
  config = config_with(records)
  rng = np.random.default_rng(3)
  logits = tf.constant(rng.normal(size=(2, 5, 5, 5)).astype(np.float32))
  labels = tf.constant(rng.integers(0, 5, size=(2, 5, 5)))
  plain = tasks.make_task(config).loss_sum_and_count(logits, labels, 0)
  config.loss.lovasz_weight = 0.5
  mixed = tasks.make_task(config).loss_sum_and_count(logits, labels, 0)
  lovasz = loss_lib.lovasz_softmax(logits, labels, 5, config.dataset.ignore_label)
  assert float(mixed[1]) == float(plain[1]) == 50
  assert float(mixed[0] / mixed[1]) == pytest.approx(
      float(plain[0] / plain[1] + 0.5 * lovasz), rel=1e-6)
  config.loss.lovasz_pixel_stride = 2
  strided = tasks.make_task(config).loss_sum_and_count(logits, labels, 0)
  lovasz = loss_lib.lovasz_softmax(logits[:, ::2, ::2], labels[:, ::2, ::2], 5,
                                   config.dataset.ignore_label)
  assert float(strided[0] / strided[1]) == pytest.approx(
      float(plain[0] / plain[1] + 0.5 * lovasz), rel=1e-6)


def test_weight_decay_covers_conv_kernels_only():
  import keras  # pylint: disable=g-import-not-at-top

  from deeplab import model as model_lib  # pylint: disable=g-import-not-at-top
  model = model_lib.DeepLab(num_classes=3, backbone="mobilenet_v2",
                            depth_multiplier=0.35, atrous_rates=(2,))
  kernels = loss_lib.decayed_kernels(model)
  paths = {k.path for k in kernels}
  assert "aspp1_pointwise/kernel" in paths and "logits.semantic/kernel" in paths
  assert not any("depthwise" in p and "pointwise" not in p for p in paths)
  convs = [l for l in model.layers if hasattr(l, "kernel")
           and not isinstance(l, keras.layers.DepthwiseConv2D)]
  assert len(kernels) == len(convs)
  value = float(loss_lib.weight_decay_loss(kernels, 4e-5))
  assert value == pytest.approx(4e-5 * sum(float(np.sum(np.square(k))) for k in kernels) / 2, rel=1e-5)


def test_restoring_with_another_architecture_names_the_fields(records, tmp_path):
  code, output = run_train(tmp_path, tiny_overrides(records, **{"train.steps": "2"}))
  assert code == 0, output
  config = config_with(records)
  model, step = run_dir.restore_model(config, str(tmp_path))
  assert step == 2
  config.model.use_decoder = False
  config.model.depth_multiplier = 1.0
  with pytest.raises(ValueError, match=r"config.model.use_decoder=False \(the "
                     r"run has True\); config.model.depth_multiplier=1.0"):
    run_dir.restore_model(config, str(tmp_path))
  # Output stride is not an architecture change: the same weights run at 8.
  config = config_with(records, **{"model.output_stride": "8"})
  run_dir.restore_model(config, str(tmp_path))


def test_eval_cli_writes_the_metrics_contract(records, tmp_path):
  code, output = run_train(tmp_path, tiny_overrides(records, **{"train.steps": "2"}))
  assert code == 0, output
  result = run_cli("eval.py", f"--workdir={tmp_path}",
                   "--config.eval.scales=(0.75,1.0)", "--config.eval.flip=True")
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
  assert metrics["step"] == 2
  assert set(metrics["per_class_iou"]) == set(synthetic_class_names())
  assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["pixel_accuracy"] <= 1.0
  assert metrics["pixels"] == 24 * 161 * 161  # every val pixel, full size


def synthetic_class_names():
  from deeplab.data import dataset_table  # pylint: disable=g-import-not-at-top
  return dataset_table.DATASETS["synthetic"].class_names


# --- XLA, gradient accumulation and the batch norm warning. ---

# No randomness and batch norm frozen: two ways of computing one update
# differ by float summation order only.
STILL = {"model.dropout_rate": "0.0", "train.fine_tune_batch_norm": "False",
         "data.min_scale": "1.0", "data.max_scale": "1.0", "data.flip": "False"}


def _train_steps(config, workdir, steps, dataset=None):
  """Restores (or starts) the run in ``workdir``, trains ``steps`` updates
  through ``Trainer.make_train_loop`` as ``loop.train`` does (on the
  config's records, or on ``dataset``), saves."""
  trainer = trainer_lib.Trainer(config, str(workdir), tf.distribute.get_strategy())
  trainer.restore_or_initialize()
  start = trainer.step
  loop = trainer.make_train_loop()
  dataset = dataset or trainer.task.train_dataset(None, start)
  loss = float(loop(iter(dataset), tf.constant(steps)))
  trainer.save()
  return trainer, loss


def _assert_same_weights(got, expected, rtol=1e-4, atol=1e-5):
  for a, b, variable in zip(got.model.get_weights(), expected.model.get_weights(),
                            expected.model.weights):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=variable.path)


def test_xla_training_gives_the_weights_of_plain_training(records, tmp_path):
  plain, plain_loss = _train_steps(config_with(records, **STILL), tmp_path / "plain", 3)
  compiled, compiled_loss = _train_steps(
      config_with(records, **STILL, **{"train.jit_compile": "True"}), tmp_path / "xla", 3)
  assert compiled.step == plain.step == 3
  assert compiled_loss == pytest.approx(plain_loss, rel=1e-4)
  _assert_same_weights(compiled, plain)


def test_k_micro_batches_give_the_update_of_one_batch_of_k_times_the_images(
    records, tmp_path):
  # Images with few labelled pixels beside fully labelled ones: the loss is
  # normalised by the labelled pixels of the whole batch, not of each
  # micro-batch; a strong weight decay shows if it acted more than once.
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (8, 65, 65, 3)).astype(np.float32)
  labels = rng.integers(0, 5, (8, 65, 65)).astype(np.int32)
  labels[0, :50] = labels[3, :, 5:] = labels[6, 10:] = 255
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
  still = dict(STILL, **{"optimizer.weight_decay": "0.01"})
  whole, whole_loss = _train_steps(config_with(records, **still), tmp_path / "whole", 2,
                                   dataset)
  config = config_with(records, **still, **{"train.accumulation_steps": "4"})
  accumulated, accumulated_loss = _train_steps(config, tmp_path / "micro", 2, dataset)
  # Two updates of 4 images, not eight of 1: the schedule, the hard-pixel
  # mining ramp and the checkpoints follow the updates.
  assert accumulated.step == whole.step == 2
  assert run_dir.latest_checkpoint(str(tmp_path / "micro")).endswith("ckpt-2")
  assert float(accumulated.optimizer.learning_rate) == pytest.approx(
      float(accumulated.schedule(2)))
  assert accumulated_loss == pytest.approx(whole_loss, rel=1e-5)
  _assert_same_weights(accumulated, whole)


@pytest.mark.parametrize("overrides", [
    {"train.jit_compile": "True"},
    {"train.accumulation_steps": "2", "model.dtype_policy": "mixed_float16"},
], ids=["xla", "accumulation_float16"])
def test_a_resumed_run_matches_an_uninterrupted_one(records, tmp_path, overrides):
  config = config_with(records, **STILL, **overrides)
  straight, _ = _train_steps(config, tmp_path / "straight", 4)
  _train_steps(config, tmp_path / "resumed", 2)
  resumed, _ = _train_steps(config, tmp_path / "resumed", 2)
  assert resumed.step == straight.step == 4
  if config.model.dtype_policy == "mixed_float16":  # The loss scale resumes too.
    assert float(resumed.optimizer.dynamic_scale) == float(straight.optimizer.dynamic_scale)
  _assert_same_weights(resumed, straight)


def test_accumulation_steps_must_divide_each_replicas_batch(records, tmp_path):
  with pytest.raises(ValueError, match=r"config.train.accumulation_steps must be "
                     r">= 1 and divide config.train.batch_size \(4\), got 3"):
    loop.train(config_with(records, **{"train.accumulation_steps": "3"}), str(tmp_path))
  config = config_with(records, **{"train.accumulation_steps": "4"})

  class TwoReplicas:  # Refused before anything is built.
    num_replicas_in_sync = 2

  with pytest.raises(ValueError, match=r"config.train.batch_size=4 must be a multiple of "
                     r"the 2 replica\(s\) times config.train.accumulation_steps=4"):
    trainer_lib.Trainer(config, str(tmp_path), TwoReplicas())


def test_batch_norm_on_a_small_batch_warns_naming_the_fields(records, tmp_path, caplog):
  config = config_with(records, **{"train.batch_size": "16",
                                   "train.accumulation_steps": "2"})
  message = trainer_lib.small_batch_norm_warning(config)
  assert "batches of 8 images" in message
  for field in ("config.train.fine_tune_batch_norm=False", "config.train.batch_size to 24",
                "config.train.accumulation_steps does not help batch norm"):
    assert field in message
  with caplog.at_level(logging.WARNING, logger="absl"):
    trainer_lib.Trainer(config, str(tmp_path), tf.distribute.get_strategy())
  assert message in caplog.text
  config.train.fine_tune_batch_norm = False
  assert not trainer_lib.small_batch_norm_warning(config)
  config.train.fine_tune_batch_norm = True
  config.train.accumulation_steps = 1
  assert trainer_lib.batch_norm_images(config) == 16
  assert not trainer_lib.small_batch_norm_warning(config)
