"""MobileNetV2 as DeepLab uses it (``MobilenetV2/...``, up to ``layer_18``).

DeepLab stops at ``expanded_conv_16`` (no final 1280-channel conv), runs the
strided units past the output stride as atrous units, and, for depth
multipliers other than 1.0, rounds channel counts to multiples of 1 instead
of 8 (``feature_extractor._mobilenet_v2``: ``divisible_by=1``, ``min_depth=1``),
which is why the released 0.5 model has 8, 12, 16 ... channel layers. The
expansion widths are rounded to multiples of 8, except the first unit's
(expansion 1, not rounded: it has no expand conv at any multiplier).
"""

from __future__ import annotations

import dataclasses
from typing import Dict

import keras

from deeplab import layers
from deeplab.backbones import common

BATCH_NORM_EPSILON = 1e-3  # slim's default, kept by mobilenet's training_scope.
ROOT = "MobilenetV2"
# Every kernel's initializer in mobilenet's training_scope (stddev=0.09).
INITIALIZER = layers.truncated_normal(0.09)

# (expansion factor, output channels at multiplier 1.0, stride) per unit;
# unit i is named 'expanded_conv' for i == 0 else f'expanded_conv_{i}'.
UNITS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)
# The decoder's input at each stride: 'layer_N/depthwise_output' (the
# depthwise output, after its batch norm and ReLU6, of unit N - 2) as in the
# original's DECODER_END_POINTS: layer_4 at stride 4 (the paper's decoder),
# layer_7 at 8; layer_2 at stride 2 is ours, for a decoder stage at 2.
DECODER_END_POINT_UNITS = {2: 0, 4: 2, 8: 5}
# Channels of the classification net's last conv (``Conv_1``) at depth
# multiplier 1; DeepLab's feature extractor leaves it out.
LAST_CHANNELS = 1280


def make_divisible(value: float, divisor: int, min_value: int = None) -> int:
  """Rounds a channel count as the original mobilenet ``_make_divisible``."""
  min_value = min_value or divisor
  rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:  # Never round down by more than 10%.
    rounded += divisor
  return rounded


def _unit_name(index: int) -> str:
  return layers.scope(ROOT, "expanded_conv" + (f"_{index}" if index else ""))


def mobilenet_v2(inputs, output_stride: int, norm: layers.BatchNormSpec,
                 depth_multiplier: float = 1.0) -> Dict[int, "keras.KerasTensor"]:
  """Builds the DeepLab MobileNetV2 feature extractor on ``inputs``.

  Args:
    inputs: image tensor [batch, height, width, 3] scaled to [-1, 1].
    output_stride: 8, 16 or 32.
    norm: how to make batch norm layers.
    depth_multiplier: width multiplier of every layer (0.5, 1.0, ...).

  Returns:
    ``{stride: tensor}`` with the output stride and each stride below it:
    2, 4 and 8 hold the decoder end points (``DECODER_END_POINT_UNITS``).
  """
  divisible_by = 8 if depth_multiplier == 1.0 else 1

  def depth(channels: int) -> int:
    return make_divisible(channels * depth_multiplier, divisible_by)

  x = layers.conv_bn_act(inputs, depth(32), 3, strides=2, activation="relu6",
                         norm=norm, epsilon=BATCH_NORM_EPSILON,
                         kernel_initializer=INITIALIZER,
                         name=layers.scope(ROOT, "Conv"))
  features = {2: x}
  depthwise_outputs = []
  tracker = common.StrideTracker(output_stride, current_stride=2)
  for index, (expansion, channels, stride) in enumerate(UNITS):
    name = _unit_name(index)
    unit_stride, rate = tracker.next(stride)
    in_channels = x.shape[-1]
    out_channels = depth(channels)
    # The first unit's expansion is expand_input(1, divisible_by=1) in the
    # original: never rounded up, so it never adds an expand conv (at depth
    # multipliers such as 0.35 rounding 11 channels to 16 would).
    expanded = make_divisible(in_channels * expansion, 1 if index == 0 else 8)
    y = x
    if expanded > in_channels:
      y = layers.conv_bn_act(y, expanded, 1, activation="relu6", norm=norm,
                             epsilon=BATCH_NORM_EPSILON,
                             kernel_initializer=INITIALIZER,
                             name=layers.scope(name, "expand"))
    y = layers.depthwise_bn_act(y, strides=unit_stride, rate=rate,
                                activation="relu6", norm=norm,
                                epsilon=BATCH_NORM_EPSILON,
                                depthwise_initializer=INITIALIZER,
                                name=layers.scope(name, "depthwise"))
    depthwise_outputs.append(y)
    y = layers.conv_bn_act(y, out_channels, 1, activation=None, norm=norm,
                           epsilon=BATCH_NORM_EPSILON,
                           kernel_initializer=INITIALIZER,
                           name=layers.scope(name, "project"))
    if unit_stride == 1 and in_channels == out_channels:
      y = keras.layers.Add(name=name + ".add")([x, y])
    x = y
    features[tracker.current_stride] = x
  features.update({stride: depthwise_outputs[unit] for stride, unit
                   in DECODER_END_POINT_UNITS.items() if stride < output_stride})
  return features


@dataclasses.dataclass(frozen=True)
class MobileNetV2(common.Backbone):
  """MobileNetV2: its record and builder."""

  def build(self, inputs, output_stride, norm, depth_multiplier, multi_grid):
    del multi_grid  # MobileNetV2 has no multi-grid block.
    return mobilenet_v2(inputs, output_stride, norm, depth_multiplier)

  def classifier_prelogits(self, features, depth_multiplier, norm):
    """``Conv_1``, channels scaled and rounded as the backbone's own layers."""
    divisible_by = 8 if depth_multiplier == 1.0 else 1
    channels = make_divisible(LAST_CHANNELS * depth_multiplier, divisible_by)
    return layers.conv_bn_act(
        features, channels, 1, activation="relu6", norm=norm,
        epsilon=BATCH_NORM_EPSILON, kernel_initializer=INITIALIZER,
        name=layers.scope(ROOT, "Conv_1"))


VARIANTS = (MobileNetV2(
    name="mobilenet_v2", root_scope=ROOT,
    # The original keeps mobilenet's training_scope bn_decay of 0.997.
    batch_norm_decay=0.997, batch_norm_epsilon=BATCH_NORM_EPSILON,
    feature_end_points={stride: f"layer_{unit + 2}/depthwise_output"
                        for stride, unit in DECODER_END_POINT_UNITS.items()},
    # multi_grid is ignored, but takes the other backbones' 3 rates.
    multi_grid_length=3,
    logits_scope=f"{ROOT}/Logits/Conv2d_1c_1x1",
    classifier_head_scopes=(f"{ROOT}/Conv_1/", f"{ROOT}/Logits/")),)
