"""Gradient accumulation under several replicas: each replica's micro-batches
sum into the update of the global batch (tests/test_training.py checks one
replica)."""

import pytest

from tests.test_distribution import _run_script

# Trains 2 updates of a global batch of 8 under MirroredStrategy over
# argv[1] logical CPUs, with 2 micro-batches a replica and with 1, and
# prints their largest differences.
ACCUMULATED_REPLICAS = """
import tempfile
from deeplab.training import trainer as trainer_lib
from tests import test_training
from tests.harness import config_with

# No randomness and batch norm on its moving statistics: the two differ
# by float summation order only.
STILL = {**test_training.STILL, "train.batch_size": "8", "optimizer.weight_decay": "0.01"}
rng = np.random.default_rng(0)
images = rng.uniform(-1, 1, (16, 65, 65, 3)).astype(np.float32)
labels = rng.integers(0, 5, (16, 65, 65)).astype(np.int32)
# Few labelled pixels on some images: the loss is normalised by the
# labelled pixels of the global batch, not of a replica or micro-batch.
labels[0, :50] = labels[5, :, 5:] = labels[10, 10:] = 255

initial = None

def train(strategy, accumulation_steps):
  global initial
  config = config_with("unused", **STILL, **{"train.accumulation_steps": str(accumulation_steps)})
  trainer = trainer_lib.Trainer(config, tempfile.mkdtemp(), strategy)
  trainer.restore_or_initialize()
  initial = trainer.model.get_weights()
  dataset = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensor_slices((images, labels)).batch(8))
  loss = float(trainer.make_train_loop()(iter(dataset), tf.constant(2)))
  return trainer.step, loss, trainer.model.get_weights()

(steps, loss, weights), (whole_steps, whole_loss, whole) = train(strategy, 2), train(strategy, 1)
print("steps", steps, whole_steps)
print("loss", abs(loss - whole_loss) / whole_loss)
print("weights", max(float(np.max(np.abs(a - b) / (np.abs(b) + 1e-3)))
                     for a, b in zip(weights, whole)))
moved = max(float(np.max(np.abs(a - b))) for a, b in zip(whole, initial))
print("moved", moved)
# The difference of the two updates against the update itself.
print("update", max(float(np.max(np.abs(a - b))) for a, b in zip(weights, whole)) / moved)
"""


@pytest.mark.slow  # About a minute on 2 cores: two trainers under MirroredStrategy.
def test_micro_batches_on_two_replicas_give_the_update_of_one_batch():
  output = _run_script(ACCUMULATED_REPLICAS, 2, timeout=600)
  figures = dict(line.split(" ", 1) for line in output.splitlines() if " " in line)
  assert figures["steps"] == "2 2", output
  assert float(figures["loss"]) < 1e-5, output
  assert float(figures["weights"]) < 1e-4, output
  assert float(figures["moved"]) > 1e-4, output  # The updates changed the weights,
  assert float(figures["update"]) < 1e-3, output  # and alike.
