"""Batch norm folding: the inference form computes what the trained model does."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.grappler import tf_optimizer

from deeplab import folding
from deeplab import layers
from tests import harness


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "xception_41", "resnet_50"])
def test_folded_model_equals_the_model_at_inference(backbone):
  model = harness.randomize_batch_norm(harness.small_model(backbone), np.random.default_rng(0))
  folded = folding.fold_batch_norm(model)
  assert folded.args.fold_batch_norm and folded.count_params() < model.count_params()
  assert not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
  x = np.random.default_rng(1).uniform(-1, 1, (2, 65, 49, 3)).astype("float32")
  expected = model(x, training=False).numpy()
  got = folded(x, training=False).numpy()
  assert np.abs(expected).max() > 1e-3
  np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max())
  # Folding is idempotent, and the folded form survives its config.
  assert folding.fold_batch_norm(folded) is folded
  rebuilt = type(folded).from_config(folded.get_config())
  rebuilt.set_weights(folded.get_weights())
  np.testing.assert_array_equal(rebuilt(x).numpy(), got)


def test_a_custom_normalization_is_not_folded():
  def factory(name, epsilon, momentum):
    del epsilon, momentum
    return keras.layers.LayerNormalization(name=name)

  model = harness.small_model("mobilenet_v2", batch_norm_factory=factory)
  assert folding.inference_model(model) is model
  with pytest.raises(ValueError, match="LayerNormalization.*cannot be folded"):
    folding.fold_batch_norm(model)


def test_folded_batch_norm_spec_makes_biased_convolutions():
  spec = layers.BatchNormSpec(folded=True)
  inputs = keras.Input((8, 8, 4))
  out = layers.conv_bn_act(inputs, 6, 3, name="c", norm=spec, epsilon=1e-3)
  model = keras.Model(inputs, out)
  assert [l.name for l in model.layers if l.weights] == ["c"]
  assert model.get_layer("c").use_bias


def _grappler_op_counts(model, size=65):
  """Op counts of the folded model's forward graph after grappler, as the
  CPU runtime would run it (every node placed on the CPU)."""
  function = tf.function(lambda x: model(x, training=False))
  concrete = function.get_concrete_function(
      tf.TensorSpec([1, size, size, 3], tf.float32))
  graph_def = concrete.graph.as_graph_def()
  for node in graph_def.node:
    node.device = "/device:CPU:0"
  graph = tf.Graph()
  with graph.as_default():
    tf.import_graph_def(graph_def, name="")
    meta_graph = tf.compat.v1.train.export_meta_graph(graph_def=graph_def, graph=graph)
  meta_graph.collection_def["train_op"].node_list.value.extend(
      [t.name.split(":")[0] for t in concrete.outputs])
  optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta_graph)
  return collections.Counter(node.op for node in optimized.node)


@pytest.mark.parametrize("backbone", ["xception_41", "mobilenet_v2", "resnet_50"])
def test_folded_graph_fuses_every_convolution_with_its_bias(backbone):
  # TensorFlow's remapper gives up on a whole graph when one rewrite fails;
  # Xception's residual sums once made it fail (layers.ReLUOfSum), leaving
  # every Conv2D, BiasAdd and Relu as separate ops.
  # Only atrous convolutions, which TensorFlow runs between SpaceToBatchND
  # and BatchToSpaceND, stay apart from their bias.
  ops = _grappler_op_counts(folding.fold_batch_norm(harness.small_model(backbone)))
  assert ops["_FusedConv2D"] > 0
  unfused = ops["Conv2D"] + ops["DepthwiseConv2dNative"]
  assert unfused <= ops["SpaceToBatchND"], ops
