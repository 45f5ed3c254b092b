"""ResNet-50/101 v1 "beta" as in DeepLab (``core/resnet_v1_beta.py``).

The beta variant replaces the 7x7 stem with three 3x3 convs (64, 64, 128
channels), keeps the slim v1 bottleneck (stride on the 3x3 conv, at the last
unit of each block), and runs the last block at stride 1 with multi-grid
rates. Variable scopes are ``resnet_v1_{50,101}/...`` as in the original
checkpoints.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Sequence, Tuple

import keras

from deeplab import layers
from deeplab.backbones import common

BATCH_NORM_EPSILON = 1e-5  # The original resnet arg scope's epsilon.
# Kernels keep conv_bn_act's default He normal initializer: the resnet arg
# scope's variance_scaling_initializer() (factor 2, fan in, truncated normal).

# The decoder's stride-4 input (the original's DECODER_END_POINTS): the conv3
# output of the unit before block1's strided unit, before the residual add.
LOW_LEVEL_END_POINT = "block1/unit_2/bottleneck_v1/conv3"


def _bottleneck(x, depth: int, depth_bottleneck: int, stride: int, rate: int,
                name: str, norm: layers.BatchNormSpec, end_points: dict):
  """The slim v1 bottleneck: 1x1, 3x3 (strided, atrous), 1x1, add, ReLU."""
  if x.shape[-1] == depth:
    shortcut = x
    if stride > 1:
      # slim's subsample(): a 1x1 max pool with stride, i.e. x[:, ::s, ::s].
      shortcut = keras.layers.MaxPooling2D(1, strides=stride,
                                           name=name + ".shortcut")(x)
  else:
    shortcut = layers.conv_bn_act(x, depth, 1, strides=stride, activation=None,
                                  name=layers.scope(name, "shortcut"),
                                  norm=norm, epsilon=BATCH_NORM_EPSILON)
  residual = layers.conv_bn_act(x, depth_bottleneck, 1, norm=norm,
                                epsilon=BATCH_NORM_EPSILON,
                                name=layers.scope(name, "conv1"))
  residual = layers.conv_bn_act(residual, depth_bottleneck, 3, strides=stride,
                                rate=rate, explicit_padding=True, norm=norm,
                                epsilon=BATCH_NORM_EPSILON,
                                name=layers.scope(name, "conv2"))
  residual = layers.conv_bn_act(residual, depth, 1, activation=None, norm=norm,
                                epsilon=BATCH_NORM_EPSILON,
                                name=layers.scope(name, "conv3"))
  end_points[layers.scope(name, "conv3")] = residual
  x = keras.layers.Add(name=name + ".add")([shortcut, residual])
  return keras.layers.ReLU(name=name + ".relu")(x)


@dataclasses.dataclass(frozen=True)
class ResNet(common.Backbone):
  """A ResNet v1 beta: its record and builder.

  Attributes:
    units: units per block (block1..block3); block4 has one unit per
      multi-grid rate.
  """
  units: Tuple[int, ...] = ()

  def build(self, inputs, output_stride: int, norm: layers.BatchNormSpec,
            depth_multiplier: float, multi_grid: Sequence[int]
            ) -> Dict[int, "keras.KerasTensor"]:
    """Builds the ResNet on ``inputs`` (``common.Backbone.build``): no width
    multiplier; block4 has one unit per ``multi_grid`` rate, each times the
    block's atrous rate."""
    del depth_multiplier
    root = self.root_scope
    end_points: Dict[str, "keras.KerasTensor"] = {}
    x = layers.conv_bn_act(inputs, 64, 3, strides=2, explicit_padding=True,
                           norm=norm, epsilon=BATCH_NORM_EPSILON,
                           name=layers.scope(root, "conv1_1"))
    x = layers.conv_bn_act(x, 64, 3, norm=norm, epsilon=BATCH_NORM_EPSILON,
                           name=layers.scope(root, "conv1_2"))
    x = layers.conv_bn_act(x, 128, 3, norm=norm, epsilon=BATCH_NORM_EPSILON,
                           name=layers.scope(root, "conv1_3"))
    features = {2: x}
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same",
                                  name=layers.scope(root, "pool1"))(x)
    features[4] = x
    tracker = common.StrideTracker(output_stride, current_stride=4)
    blocks = [(f"block{i + 1}", 64 * 2**i, [1] * (n - 1) + [2], [1] * n)
              for i, n in enumerate(self.units)]
    blocks.append(("block4", 512, [1] * len(multi_grid), list(multi_grid)))
    for block, base_depth, strides, unit_rates in blocks:
      for unit, (stride, unit_rate) in enumerate(zip(strides, unit_rates)):
        unit_stride, rate = tracker.next(stride)
        name = layers.scope(root, block, f"unit_{unit + 1}", "bottleneck_v1")
        x = _bottleneck(x, base_depth * 4, base_depth, unit_stride,
                        rate * unit_rate, name, norm, end_points)
        features[tracker.current_stride] = x
    low_level = self.feature_end_points[4].replace("/", ".")
    features[4] = end_points[layers.scope(root, low_level)]
    return features


def _variant(depth: int, units: Tuple[int, ...]) -> ResNet:
  root = f"resnet_v1_{depth}"
  return ResNet(
      name=f"resnet_{depth}", root_scope=root,
      # feature_extractor.py passes 0.95 to the ResNet arg scope.
      batch_norm_decay=0.95, batch_norm_epsilon=BATCH_NORM_EPSILON,
      feature_end_points={4: LOW_LEVEL_END_POINT}, multi_grid_length=None,
      logits_scope=f"{root}/logits", classifier_head_scopes=(f"{root}/logits/",),
      units=units)


VARIANTS = (_variant(50, units=(3, 4, 6)), _variant(101, units=(3, 4, 23)))
