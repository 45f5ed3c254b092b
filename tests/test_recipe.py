"""The original's training recipe in its details (issue 13): each test
checks one rule against numbers it computes itself on a hand-made case."""

import keras
import numpy as np
import tensorflow as tf

from deeplab import kernels
from deeplab.training import trainer as trainer_lib
from tests import harness


def test_fine_tune_batch_norm_false_trains_gamma_and_beta_on_moving_statistics():
  inputs = keras.Input((2, 2, 1))
  norm = kernels.FusedBatchNorm(epsilon=1e-3, momentum=0.9, name="bn")
  model = keras.Model(inputs, norm(inputs))
  norm.set_weights([np.array([2.0]), np.array([0.5]), np.array([1.0]),
                    np.array([4.0])])  # gamma, beta, moving mean, variance.
  trainer_lib.batch_norm_in_inference_mode(model)
  x = np.array([0.0, 1.0, 3.0, 6.0], np.float32).reshape(1, 2, 2, 1)
  with tf.GradientTape() as tape:
    y = model(x, training=True)
    loss = tf.reduce_sum(y)
  grads = tape.gradient(loss, model.trainable_variables)
  normalized = (x - 1.0) / np.sqrt(4.0 + 1e-3)  # The moving statistics.
  np.testing.assert_allclose(y, 2.0 * normalized + 0.5, rtol=1e-5)
  assert [v.name for v in model.trainable_variables] == ["gamma", "beta"]
  np.testing.assert_allclose(grads[0], [normalized.sum()], rtol=1e-5)
  np.testing.assert_allclose(grads[1], [4.0], rtol=1e-6)
  np.testing.assert_array_equal(norm.moving_mean, [1.0])
  np.testing.assert_array_equal(norm.moving_variance, [4.0])


def test_every_batch_norm_of_the_model_keeps_gamma_and_beta_trainable():
  model = harness.small_model("mobilenet_v2")
  trainable = len(model.trainable_variables)
  trainer_lib.batch_norm_in_inference_mode(model)
  assert len(model.trainable_variables) == trainable
  norms = [l for l in model.layers
           if isinstance(l, keras.layers.BatchNormalization)]
  assert norms and all(l.inference_statistics for l in norms)
  before = [np.array(l.moving_mean) for l in norms]
  model(harness.random_images((1, 33, 33, 3)), training=True)
  assert all(np.array_equal(b, l.moving_mean) for b, l in zip(before, norms))
