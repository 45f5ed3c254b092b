"""Modified aligned Xception-41/65/71 as in DeepLab (``core/xception.py``).

Differences from the ImageNet Xception of Chollet, as the paper lists them:
more middle-flow units (65, 71), every max pooling replaced by a strided
separable conv, and batch norm after every depthwise conv. In the released
code the units of the entry and middle flows are *pre-activation*: a ReLU
before each separable conv and no activation after its two batch norms; only
the last exit-flow block puts ReLU after both batch norms
(``activation_fn_in_separable_conv=True``). We follow the code, since it is
what the released checkpoints were trained with.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Sequence, Tuple

import keras

from deeplab import kernels
from deeplab import layers
from deeplab.backbones import common

BATCH_NORM_EPSILON = 1e-3  # The original xception_arg_scope's epsilon.
# Every kernel's initializer in xception_arg_scope (its
# weights_initializer_stddev=0.09), separable convolutions' halves included.
INITIALIZER = layers.truncated_normal(0.09)

# (block scope, depth_list, skip connection, units, stride,
#  activation inside the separable convs)
_ENTRY_65 = (
    ("entry_flow/block1", (128, 128, 128), "conv", 1, 2, False),
    ("entry_flow/block2", (256, 256, 256), "conv", 1, 2, False),
    ("entry_flow/block3", (728, 728, 728), "conv", 1, 2, False),
)
_ENTRY_71 = (
    ("entry_flow/block1", (128, 128, 128), "conv", 1, 2, False),
    ("entry_flow/block2", (256, 256, 256), "conv", 1, 1, False),
    ("entry_flow/block3", (256, 256, 256), "conv", 1, 2, False),
    ("entry_flow/block4", (728, 728, 728), "conv", 1, 1, False),
    ("entry_flow/block5", (728, 728, 728), "conv", 1, 2, False),
)
_EXIT = (
    ("exit_flow/block1", (728, 1024, 1024), "conv", 1, 2, False),
    ("exit_flow/block2", (1536, 1536, 2048), "none", 1, 1, True),
)


def _middle(units: int):
  return (("middle_flow/block1", (728, 728, 728), "sum", units, 1, False),)


def _xception_module(x, depth_list: Sequence[int], skip: str, stride: int,
                     rate: int, unit_rates: Sequence[int],
                     activation_inside: bool, name: str,
                     norm: layers.BatchNormSpec, end_points: dict):
  """One unit: three separable convs with a conv, sum or no shortcut."""
  residual = x
  for i in range(3):
    conv_name = layers.scope(name, f"separable_conv{i + 1}")
    if not activation_inside:
      # Pre-activation: ReLU on the unit's input, none after the batch norms.
      # The unit's input is the previous unit's sum, which the shortcut
      # reads too (see kernels.ReLUOfSum).
      relu = kernels.ReLUOfSum if i == 0 else keras.layers.ReLU
      residual = relu(name=conv_name + ".preact")(residual)
    residual = layers.atrous_separable_conv(
        residual, depth_list[i], name=conv_name, norm=norm,
        epsilon=BATCH_NORM_EPSILON, strides=stride if i == 2 else 1,
        rate=rate * unit_rates[i],
        activation="relu" if activation_inside else None,
        explicit_padding=True, depthwise_initializer=INITIALIZER,
        pointwise_initializer=INITIALIZER)
    end_points[conv_name + "_pointwise"] = residual
  if skip == "conv":
    shortcut = layers.conv_bn_act(
        x, depth_list[-1], 1, name=layers.scope(name, "shortcut"), norm=norm,
        epsilon=BATCH_NORM_EPSILON, strides=stride, activation=None,
        kernel_initializer=INITIALIZER)
    return keras.layers.Add(name=name + ".add")([residual, shortcut])
  if skip == "sum":
    return keras.layers.Add(name=name + ".add")([residual, x])
  return residual


@dataclasses.dataclass(frozen=True)
class Xception(common.Backbone):
  """A modified aligned Xception: its record and builder.

  Attributes:
    blocks: (block scope, depth_list, skip connection, units, stride,
      activation inside the separable convs) per block.
  """
  blocks: Tuple[tuple, ...] = ()

  def build(self, inputs, output_stride: int, norm: layers.BatchNormSpec,
            depth_multiplier: float, multi_grid: Sequence[int]
            ) -> Dict[int, "keras.KerasTensor"]:
    """Builds the Xception on ``inputs`` (``common.Backbone.build``): no
    width multiplier; ``multi_grid`` holds the rates of the last block's
    three convs, times the block's atrous rate (the original's
    ``multi_grid``); ``{stride: tensor}`` has the low-level features at 4."""
    del depth_multiplier
    root = self.root_scope
    end_points: Dict[str, "keras.KerasTensor"] = {}
    x = layers.conv_bn_act(inputs, 32, 3, strides=2, norm=norm,
                           epsilon=BATCH_NORM_EPSILON, explicit_padding=True,
                           kernel_initializer=INITIALIZER,
                           name=layers.scope(root, "entry_flow.conv1_1"))
    x = layers.conv_bn_act(x, 64, 3, norm=norm, epsilon=BATCH_NORM_EPSILON,
                           kernel_initializer=INITIALIZER,
                           name=layers.scope(root, "entry_flow.conv1_2"))
    features = {2: x}
    tracker = common.StrideTracker(output_stride, current_stride=2)
    for block, depths, skip, units, stride, act_inside in self.blocks:
      unit_rates = multi_grid if block == "exit_flow/block2" else (1, 1, 1)
      for unit in range(units):
        unit_stride, rate = tracker.next(stride)
        name = layers.scope(root, block.replace("/", "."), f"unit_{unit + 1}",
                            "xception_module")
        x = _xception_module(x, depths, skip, unit_stride, rate, unit_rates,
                             act_inside, name, norm, end_points)
        features[tracker.current_stride] = x
    low_level = layers.scope(root, self.feature_end_points[4].replace("/", "."))
    features[4] = end_points[low_level]
    return features


def _variant(name: str, entry: tuple, middle_units: int,
             low_level_block: int) -> Xception:
  return Xception(
      name=name, root_scope=name,
      # feature_extractor.py passes 0.9997 to the Xception arg scope.
      batch_norm_decay=0.9997, batch_norm_epsilon=BATCH_NORM_EPSILON,
      # The decoder's stride-4 input: the original's DECODER_END_POINTS.
      feature_end_points={4: f"entry_flow/block{low_level_block}/unit_1/"
                             "xception_module/separable_conv2_pointwise"},
      multi_grid_length=3, logits_scope=f"{name}/logits",
      classifier_head_scopes=(f"{name}/logits/",),
      blocks=entry + _middle(middle_units) + _EXIT)


VARIANTS = (
    _variant("xception_41", _ENTRY_65, middle_units=8, low_level_block=2),
    _variant("xception_65", _ENTRY_65, middle_units=16, low_level_block=2),
    _variant("xception_71", _ENTRY_71, middle_units=16, low_level_block=3),
)
