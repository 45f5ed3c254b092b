"""Backbone registry: name -> the backbone's record (``common.Backbone``).

Each family's module holds its builder and the record of each variant (root
scope, batch norm defaults, decoder end points, classifier head); adding a
backbone is one module plus its line in ``BACKBONES``.

Every builder takes ``(inputs, output_stride, norm, depth_multiplier,
multi_grid)`` and returns a dict keyed by integer stride that holds the
output stride and every stride below it, from 2: the decoder's input at that
stride (``ModelArgs.decoder_output_strides``). At 4 it is the original's
decoder end point of every backbone; MobileNetV2 has them at 2 and 8 too,
the others give the last output at that stride there
(``Backbone.feature_end_points``).
"""

from __future__ import annotations

from typing import Dict, Sequence

from deeplab import layers
from deeplab.backbones import mobilenet_v2
from deeplab.backbones import resnet
from deeplab.backbones import xception
from deeplab.backbones.common import Backbone

BACKBONES: Dict[str, Backbone] = {backbone.name: backbone for backbone in (
    *xception.VARIANTS,
    *resnet.VARIANTS,
    *mobilenet_v2.VARIANTS,
)}


def get(name: str) -> Backbone:
  """The record of backbone ``name``.

  Raises:
    ValueError: no backbone has that name.
  """
  if name not in BACKBONES:
    raise ValueError(
        f"backbone must be one of {sorted(BACKBONES)}, got {name!r}")
  return BACKBONES[name]


def build_backbone(name: str, inputs, *, output_stride: int,
                   norm: layers.BatchNormSpec, depth_multiplier: float = 1.0,
                   multi_grid: Sequence[int] = (1, 1, 1)):
  """Builds backbone ``name`` on ``inputs``; see the module docstring."""
  return get(name).build(inputs, output_stride, norm, depth_multiplier,
                         tuple(multi_grid))
