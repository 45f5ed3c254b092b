"""Batch norm folding: the inference form computes what the trained model does."""


import keras
import numpy as np
import pytest

from deeplab import folding
from deeplab import layers
from tests import harness


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "xception_41", "resnet_50"])
def test_folded_model_equals_the_model_at_inference(backbone):
  # Seeded: some random initializations give logits too small to compare.
  keras.utils.set_random_seed(0)
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


@pytest.mark.parametrize("backbone", ["xception_41", "mobilenet_v2", "resnet_50"])
def test_folded_graph_fuses_every_convolution_with_its_bias(backbone):
  # TensorFlow's remapper gives up on a whole graph when one rewrite fails;
  # Xception's residual sums once made it fail (kernels.ReLUOfSum), leaving
  # every Conv2D, BiasAdd and Relu as separate ops.
  ops = harness.grappler_op_counts(folding.fold_batch_norm(harness.small_model(backbone)))
  harness.check_fusion(ops, harness.onednn_enabled())


FUSION_WITHOUT_ONEDNN = """
from deeplab import folding
from tests import harness
assert not harness.onednn_enabled()
ops = harness.grappler_op_counts(
    folding.fold_batch_norm(harness.small_model("xception_41")))
harness.check_fusion(ops, onednn=False)
print("fused", ops["_FusedConv2D"])
"""


def test_fusion_without_onednn_as_on_cpus_without_avx512():
  # TensorFlow leaves oneDNN off on CPUs without AVX512-VNNI/BF16 or AMX;
  # the same graph must still fuse what TensorFlow's own kernels can.
  result = harness.run_cli("-c", FUSION_WITHOUT_ONEDNN, timeout=300,
                           env_overrides={"TF_ENABLE_ONEDNN_OPTS": "0"})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "fused" in result.stdout
