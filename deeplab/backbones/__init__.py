"""Backbone registry: name -> builder returning ``{stride: features}``.

Every builder takes ``(inputs, output_stride, norm, depth_multiplier,
multi_grid)`` and returns a dict keyed by integer stride that holds the
output stride and every stride below it, from 2: the decoder's input at that
stride (``ModelArgs.decoder_output_strides``). At 4 it is the original's
decoder end point of every backbone; MobileNetV2 has them at 2 and 8 too,
the others give the last output at that stride there.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence

from deeplab import layers
from deeplab.backbones.mobilenet_v2 import mobilenet_v2
from deeplab.backbones.resnet import resnet
from deeplab.backbones.xception import xception


def _xception(variant):
  def build(inputs, output_stride, norm, depth_multiplier, multi_grid):
    del depth_multiplier  # Xception has no width multiplier.
    return xception(inputs, variant, output_stride, norm, multi_grid)
  return build


def _resnet(variant):
  def build(inputs, output_stride, norm, depth_multiplier, multi_grid):
    del depth_multiplier
    return resnet(inputs, variant, output_stride, norm, multi_grid)
  return build


def _mobilenet(inputs, output_stride, norm, depth_multiplier, multi_grid):
  del multi_grid  # MobileNetV2 has no multi-grid block.
  return mobilenet_v2(inputs, output_stride, norm, depth_multiplier)


BACKBONES: Dict[str, Callable] = {
    "xception_41": _xception("xception_41"),
    "xception_65": _xception("xception_65"),
    "xception_71": _xception("xception_71"),
    "resnet_50": _resnet("resnet_50"),
    "resnet_101": _resnet("resnet_101"),
    "mobilenet_v2": _mobilenet,
}

# Batch norm decay (Keras momentum) of each backbone in the original:
# feature_extractor.py passes 0.9997 to the Xception and 0.95 to the ResNet
# arg scopes; MobileNetV2 keeps its training_scope's bn_decay of 0.997. The
# ASPP/decoder head uses 0.9997 (model.py), ModelArgs.batch_norm_momentum.
BATCH_NORM_DECAY = {
    "xception_41": 0.9997,
    "xception_65": 0.9997,
    "xception_71": 0.9997,
    "resnet_50": 0.95,
    "resnet_101": 0.95,
    "mobilenet_v2": 0.997,
}

# The original checkpoints' root scope of each backbone.
ROOT_SCOPES = {
    "xception_41": "xception_41",
    "xception_65": "xception_65",
    "xception_71": "xception_71",
    "resnet_50": "resnet_v1_50",
    "resnet_101": "resnet_v1_101",
    "mobilenet_v2": "MobilenetV2",
}


def build_backbone(name: str, inputs, *, output_stride: int,
                   norm: layers.BatchNormSpec, depth_multiplier: float = 1.0,
                   multi_grid: Sequence[int] = (1, 1, 1)):
  """Builds backbone ``name`` on ``inputs``; see the module docstring."""
  if name not in BACKBONES:
    raise ValueError(
        f"backbone must be one of {sorted(BACKBONES)}, got {name!r}")
  return BACKBONES[name](inputs, output_stride, norm, depth_multiplier,
                         tuple(multi_grid))
