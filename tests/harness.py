"""One test harness for models: config round trip, shapes, a training step,
save/reload, mixed precision. Parameterized by the tests that use it."""

from __future__ import annotations

import math

import keras
import numpy as np

from deeplab import model as model_lib


def random_images(shape, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


def expected_size(size: int, stride: int) -> int:
  """Spatial size after ``log2(stride)`` stride-2 layers with 'same' borders."""
  for _ in range(int(math.log2(stride))):
    size = math.ceil(size / 2)
  return size


def check_forward_shape(model: keras.Model, height: int, width: int):
  logits = model(random_images((2, height, width, 3)), training=False)
  assert tuple(logits.shape) == (2, height, width, model.num_classes)
  assert logits.dtype == "float32"
  assert np.all(np.isfinite(np.asarray(logits)))


def check_config_round_trip(model: model_lib.DeepLab):
  config = model.get_config()
  rebuilt = model_lib.DeepLab.from_config(config)
  assert rebuilt.get_config() == config
  assert rebuilt.count_params() == model.count_params()
  assert [w.path for w in rebuilt.weights] == [w.path for w in model.weights]
  rebuilt.set_weights(model.get_weights())
  x = random_images((1, 33, 41, 3), seed=1)
  np.testing.assert_allclose(rebuilt(x, training=False),
                             model(x, training=False), atol=1e-5)


def check_save_reload(model: keras.Model, path):
  x = random_images((1, 33, 33, 3), seed=2)
  expected = np.asarray(model(x, training=False))
  model.save(path)
  restored = keras.models.load_model(path, compile=False)
  assert isinstance(restored, model_lib.DeepLab)
  assert restored.get_config() == model.get_config()
  np.testing.assert_allclose(restored(x, training=False), expected, atol=1e-5)


def check_training_step(model: keras.Model, size: int = 33):
  """One SGD step on random labels: finite loss, every weight gets a gradient,
  every kernel moves, batch norm statistics update.

  (Tiny gradients of batch norm gammas can round to no change in float32, so
  connectivity is checked on the gradients and movement on the kernels.)
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  x = random_images((2, size, size, 3), seed=4)
  y = rng.integers(0, model.num_classes, (2, size, size)).astype("int32")
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
  kernels = [w for w in model.trainable_weights if "kernel" in w.path]
  kernels_before = [np.array(w) for w in kernels]
  stats = [w for w in model.non_trainable_weights if "moving_mean" in w.path]
  stats_before = [np.array(w) for w in stats]
  with tf.GradientTape() as tape:
    loss = loss_fn(y, model(x, training=True))
  grads = tape.gradient(loss, model.trainable_weights)
  assert np.isfinite(float(loss))
  dead = [w.path for g, w in zip(grads, model.trainable_weights)
          if g is None or not np.any(np.asarray(g))]
  assert not dead, f"weights without gradient: {dead}"
  optimizer.apply(grads, model.trainable_weights)
  unmoved = [w.path for b, w in zip(kernels_before, kernels)
             if np.array_equal(b, np.asarray(w))]
  assert not unmoved, f"kernels that did not move in a step: {unmoved}"
  assert all(not np.array_equal(b, np.asarray(w))
             for b, w in zip(stats_before, stats)), "batch norm stats frozen"
