"""Optimization: the time budget's schedule (with a fake clock), AdamW's
decay, gradient clipping by the global batch's norm."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab import loss as loss_lib
from deeplab import model as model_lib
from deeplab import run_dir
from deeplab.training import loop
from deeplab.training import trainer as trainer_lib
from tests.harness import REPO
from tests.harness import config_with


class Preempted(Exception):
  pass


class FakeClock:
  """One second passes at each reading; at reading ``crash_at`` the process
  "dies" (an exception: nothing after the last checkpoint is kept)."""

  def __init__(self, start=0.0, crash_at=None):
    self.now, self.readings, self.crash_at = start, 0, crash_at

  def __call__(self):
    self.readings += 1
    if self.readings == self.crash_at:
      raise Preempted
    self.now += 1.0
    return self.now


def _steps_logged(workdir):
  return [json.loads(l) for l in (workdir / run_dir.LOG_FILE).read_text().splitlines()
          if "loss" in json.loads(l)]


def test_the_schedule_spends_the_time_budget_and_resumes_with_it(records, tmp_path,
                                                                capsys):
  # 2 steps a loop call, a second a call: a pace of 0.5 s a step, measured
  # from the second call on; 15 s of budget give a horizon of 30 steps,
  # far below config.train.steps.
  config = config_with(records, **{"train.steps": "1000",
                                   "checkpoint.every": "8",
                                   "budget.max_minutes": "0.25"})
  straight = loop.train(config, str(tmp_path / "straight"), clock=FakeClock())
  assert straight == {"step": 30, "loss": straight["loss"], "stopped": "max_minutes"}
  log = _steps_logged(tmp_path / "straight")
  assert [r["schedule_horizon"] for r in log] == [1000] + [30] * 14
  rates = [r["learning_rate"] for r in log]
  assert rates[-1] == 0.0 and all(a > b for a, b in zip(rates[1:], rates[2:]))
  assert log[-1]["minutes"] == pytest.approx(0.25)
  # The progress line counts to the budget's horizon, not to train.steps.
  assert "train 30/30 " in capsys.readouterr().err

  # Killed at step 10, resumed from step 8 on another clock: the same
  # horizon, rates and last step, from the time and pace in the checkpoint.
  resumed = tmp_path / "resumed"
  with pytest.raises(Preempted):
    loop.train(config, str(resumed), clock=FakeClock(crash_at=6))
  second = loop.train(config, str(resumed), clock=FakeClock(start=5000.0))
  assert second["step"] == 30 and second["stopped"] == "max_minutes"
  assert ([(r["step"], r["learning_rate"], r["schedule_horizon"])
           for r in _steps_logged(resumed)] ==
          [(r["step"], r["learning_rate"], r["schedule_horizon"]) for r in log])


def _zero_step(optimizer, model):
  optimizer.apply([tf.zeros_like(v) for v in model.trainable_variables],
                  model.trainable_variables)


def test_adamw_decays_the_weights_the_l2_rule_decays(records):
  config = config_with(records, **{"optimizer.name": "adamw",
                                   "optimizer.weight_decay": "0.1"})
  model = model_lib.build_model(config)
  kernels = loss_lib.decayed_kernels(model)
  optimizer = trainer_lib.make_optimizer(config.optimizer, 0.5, model, kernels)
  before = {v.path: v.numpy() for v in model.trainable_variables}
  _zero_step(optimizer, model)  # Zero gradients: only the decay moves weights.
  decayed = {k.path for k in kernels}
  assert decayed and len(decayed) < len(before)
  for variable in model.trainable_variables:
    factor = 1 - 0.5 * 0.1 if variable.path in decayed else 1.0
    np.testing.assert_allclose(variable.numpy(), before[variable.path] * factor,
                               rtol=1e-6, err_msg=variable.path)
  # SGD leaves decay to the loss: zero gradients move nothing.
  sgd = trainer_lib.make_optimizer(config_with(records).optimizer, 0.5, model, kernels)
  after = [v.numpy() for v in model.trainable_variables]
  _zero_step(sgd, model)
  for value, variable in zip(after, model.trainable_variables):
    np.testing.assert_array_equal(variable.numpy(), value)


def test_optimizer_and_clipping_fields_are_checked(records, tmp_path):
  for key, value, message in [("optimizer.name", "adam", "config.optimizer.name"),
                              ("optimizer.clip_global_norm", "-1.0", "clip_global_norm"),
                              ("budget.max_minutes", "-5.0", "max_minutes")]:
    with pytest.raises(ValueError, match=message):
      loop.train(config_with(records, **{key: value}), str(tmp_path))


def test_clipping_scales_the_gradient_to_the_norm_unscaled_by_loss_scaling():
  grads = [tf.constant([3.0, 0.0]), tf.constant([[4.0]])]  # Norm 5.
  clipped, norm = trainer_lib.clip_by_global_norm(grads, 1.0)
  assert float(norm) == pytest.approx(5.0)
  np.testing.assert_allclose(clipped[0], [0.6, 0.0], rtol=1e-6)
  np.testing.assert_allclose(clipped[1], [[0.8]], rtol=1e-6)
  kept, _ = trainer_lib.clip_by_global_norm(grads, 10.0)
  np.testing.assert_allclose(kept[0], [3.0, 0.0])
  # Loss-scaled gradients (x 1024) of norm 5: clipped as 5, still scaled.
  scaled = [g * 1024 for g in grads]
  clipped, norm = trainer_lib.clip_by_global_norm(scaled, 1.0, loss_scale=1024.0)
  assert float(norm) == pytest.approx(5.0)
  np.testing.assert_allclose(clipped[0], [0.6 * 1024, 0.0], rtol=1e-6)


TWO_REPLICA_CLIP_SCRIPT = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from deeplab.training import trainer
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
parts = tf.constant([[3.0, 0.0], [0.0, 4.0]])  # Replica i's gradient: row i.
data = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices(parts).batch(2))

@tf.function
def step(batch):
  def fn(row):
    clipped, norm = trainer.clip_by_global_norm([row[0]], 1.0)
    return tf.distribute.get_replica_context().all_reduce("sum", clipped[0]), norm
  return strategy.run(fn, args=(batch,))

summed, norm = step(next(iter(data)))
print("RESULT", strategy.experimental_local_results(summed)[0].numpy().tolist(),
      [float(n) for n in strategy.experimental_local_results(norm)])
"""


def test_clipping_over_two_replicas_clips_the_summed_gradient():
  # Replicas hold (3, 0) and (0, 4): their sum has norm 5 (each part alone
  # would be clipped differently), so what the optimizer sums is (0.6, 0.8).
  result = subprocess.run([sys.executable, "-c", TWO_REPLICA_CLIP_SCRIPT],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  line = [l for l in result.stdout.splitlines() if l.startswith("RESULT")][0]
  summed, norms = eval(line[len("RESULT"):].replace("] [", "], ["))  # noqa: S307
  np.testing.assert_allclose(summed, [0.6, 0.8], rtol=1e-6)
  assert norms == pytest.approx([5.0, 5.0])


def test_a_float16_run_clips_and_trains(records, tmp_path):
  config = config_with(records, **{"train.steps": "2", "optimizer.clip_global_norm": "0.5",
                                   "optimizer.name": "adamw",
                                   "model.dtype_policy": "mixed_float16"})
  result = loop.train(config, str(tmp_path))
  assert result["step"] == 2 and np.isfinite(result["loss"])
