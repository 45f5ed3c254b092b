"""Backbones return {stride: features} with the original's strides and rates."""

import keras
import pytest

from deeplab import backbones
from deeplab import layers
from deeplab import naming
from tests import harness

NAMES = sorted(backbones.BACKBONES)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("name", NAMES)
def test_feature_dict_strides(name, output_stride):
  inputs = keras.Input((97, 75, 3))
  features = backbones.build_backbone(
      name, inputs, output_stride=output_stride, norm=layers.BatchNormSpec(),
      depth_multiplier=1.0, multi_grid=(1, 2, 4))
  assert {4, output_stride} <= set(features)
  assert max(features) == output_stride
  for stride, tensor in features.items():
    assert tensor.shape[1:3] == (harness.expected_size(97, stride),
                                 harness.expected_size(75, stride)), stride


def _dilations(model, prefix):
  return [l.dilation_rate[0] for l in model.layers
          if l.name.startswith(prefix) and hasattr(l, "dilation_rate")
          and l.name.endswith("_depthwise")]


def test_xception65_atrous_rates_follow_output_stride():
  def build(output_stride):
    inputs = keras.Input((65, 65, 3))
    features = backbones.build_backbone(
        "xception_65", inputs, output_stride=output_stride,
        norm=layers.BatchNormSpec())
    return keras.Model(inputs, features[output_stride])
  # OS 16: exit_flow/block1 loses its stride, block2 runs at rate 2.
  model = build(16)
  assert _dilations(model, "xception_65.exit_flow.block1") == [1, 1, 1]
  assert _dilations(model, "xception_65.exit_flow.block2") == [2, 2, 2]
  # OS 8: entry_flow/block3 loses its stride; middle flow at 2, exit at 2/4.
  model = build(8)
  assert set(_dilations(model, "xception_65.middle_flow")) == {2}
  assert _dilations(model, "xception_65.exit_flow.block2") == [4, 4, 4]


def test_resnet_multi_grid_in_block4():
  inputs = keras.Input((65, 65, 3))
  features = backbones.build_backbone(
      "resnet_50", inputs, output_stride=16, norm=layers.BatchNormSpec(),
      multi_grid=(1, 2, 4))
  model = keras.Model(inputs, features[16])
  rates = [model.get_layer(f"resnet_v1_50.block4.unit_{i}.bottleneck_v1.conv2")
           .dilation_rate[0] for i in (1, 2, 3)]
  assert rates == [2, 4, 8]


def test_mobilenet_depth_multiplier_rounds_like_the_original():
  inputs = keras.Input((65, 65, 3))
  features = backbones.build_backbone(
      "mobilenet_v2", inputs, output_stride=8, norm=layers.BatchNormSpec(),
      depth_multiplier=0.5)
  # The released x0.5 model: 16-channel stem, 8-channel expanded_conv (the
  # last unit at stride 2), 160-channel last unit; as decoder features the
  # 72-channel depthwise output of expanded_conv_2 at stride 4 and the
  # 16-channel one of expanded_conv at stride 2.
  model = keras.Model(inputs, features)
  assert model.get_layer("MobilenetV2.Conv").filters == 16
  assert model.get_layer("MobilenetV2.expanded_conv.project").filters == 8
  assert features[2].shape[-1] == 16
  assert features[8].shape[-1] == 160
  assert features[4].shape[-1] == 72


def test_unknown_backbone():
  with pytest.raises(ValueError, match="backbone must be one of .* got 'vgg'"):
    backbones.build_backbone("vgg", keras.Input((33, 33, 3)), output_stride=16,
                             norm=layers.BatchNormSpec())
  with pytest.raises(ValueError, match="backbone must be one of .* got 'vgg'"):
    backbones.get("vgg")


_XCEPTION_END_POINT = "entry_flow/block{}/unit_1/xception_module/separable_conv2_pointwise"


@pytest.mark.parametrize("name, root, decay, epsilon, end_points", [
    ("xception_41", "xception_41", 0.9997, 1e-3, {4: _XCEPTION_END_POINT.format(2)}),
    ("xception_65", "xception_65", 0.9997, 1e-3, {4: _XCEPTION_END_POINT.format(2)}),
    ("xception_71", "xception_71", 0.9997, 1e-3, {4: _XCEPTION_END_POINT.format(3)}),
    ("resnet_50", "resnet_v1_50", 0.95, 1e-5, {4: "block1/unit_2/bottleneck_v1/conv3"}),
    ("resnet_101", "resnet_v1_101", 0.95, 1e-5, {4: "block1/unit_2/bottleneck_v1/conv3"}),
    ("mobilenet_v2", "MobilenetV2", 0.997, 1e-3, {2: "layer_2/depthwise_output",
                                                  4: "layer_4/depthwise_output",
                                                  8: "layer_7/depthwise_output"}),
])
def test_each_backbone_record_holds_the_originals_facts(name, root, decay, epsilon, end_points):
  """The original's root scope, batch norm decay (feature_extractor.py) and
  epsilon, and decoder end points; every weight the builder makes lies under
  the root scope and belongs to the backbone."""
  record = backbones.get(name)
  assert (record.name, record.root_scope, record.batch_norm_decay,
          record.batch_norm_epsilon) == (name, root, decay, epsilon)
  assert dict(record.feature_end_points) == end_points
  inputs = keras.Input((33, 33, 3))
  features = backbones.build_backbone(
      name, inputs, output_stride=32, norm=layers.BatchNormSpec(),
      depth_multiplier=0.35, multi_grid=(1, 2, 4))
  model = keras.Model(inputs, features)
  names = list(naming.original_names(model))
  assert names and all(record.is_backbone_weight(n) for n in names)
  assert {l.epsilon for l in model.layers
          if isinstance(l, keras.layers.BatchNormalization)} == {epsilon}
