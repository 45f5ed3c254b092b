"""What every backbone shares: its record, and the stride-to-rate rule."""

from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Sequence, Tuple

import keras

from deeplab import layers


@dataclasses.dataclass(frozen=True)
class Backbone:
  """One backbone's facts and its builder; each family subclasses it next to
  its layers and overrides ``build`` (and ``classifier_prelogits`` where the
  classifier adds layers of the backbone's own scope).

  Attributes:
    name: our name (``ModelArgs.backbone``), e.g. 'xception_65'.
    root_scope: the original checkpoints' root scope of its variables.
    batch_norm_decay: its batch norm moving-average decay (Keras momentum) in
      the original, used unless ``ModelArgs.backbone_batch_norm_momentum``
      is set.
    batch_norm_epsilon: the epsilon of its batch norms in the original.
    feature_end_points: ``{stride: end point}``: the original's decoder end
      point at each stride (its ``DECODER_END_POINTS``, relative to
      ``root_scope``, as ``features[stride]`` holds it).
    multi_grid_length: how many ``multi_grid`` rates it takes (one per conv
      of the last unit), or None for any number (one unit per rate).
    logits_scope: the original scope of its ImageNet classifier's logits.
    classifier_head_scopes: original scope prefixes (ending in '/') of the
      classifier's layers under ``root_scope`` that DeepLab's backbone does
      not have: its logits, and layers ``classifier_prelogits`` adds.
  """
  name: str
  root_scope: str
  batch_norm_decay: float
  batch_norm_epsilon: float
  feature_end_points: Mapping[int, str]
  multi_grid_length: Optional[int]
  logits_scope: str
  classifier_head_scopes: Tuple[str, ...]

  def build(self, inputs, output_stride: int, norm: layers.BatchNormSpec,
            depth_multiplier: float, multi_grid: Sequence[int]
            ) -> Dict[int, "keras.KerasTensor"]:
    """Builds the backbone on ``inputs``.

    Args:
      inputs: image tensor [batch, height, width, 3] scaled to [-1, 1].
      output_stride: 8, 16 or 32; strides beyond it become atrous rates.
      norm: how to make batch norm layers.
      depth_multiplier: width multiplier of every layer, where the
        backbone has one.
      multi_grid: rates of the last block's units or convs, times the
        block's atrous rate (``multi_grid_length`` of them).

    Returns:
      ``{stride: tensor}``: the output stride and every stride below it,
      from 2 (``deeplab.backbones``).
    """
    raise NotImplementedError(f"backbone {self.name!r} has no builder")

  def classifier_prelogits(self, features, depth_multiplier: float,
                           norm: layers.BatchNormSpec):
    """The classifier's layers between the backbone's last features and the
    pooling (none by default)."""
    del depth_multiplier, norm
    return features

  def is_backbone_weight(self, name: str) -> bool:
    """Whether the original variable ``name`` is a weight of the backbone
    itself: under its root scope, and not the classifier's head, which
    DeepLab does not have."""
    return (name.startswith(self.root_scope + "/") and
            not name.startswith(self.classifier_head_scopes))


class StrideTracker:
  """Turns strides beyond the output stride into atrous rates.

  The rule of slim's ``stack_blocks_dense`` and of ``mobilenet_base``, which
  the released checkpoints were built with: once the accumulated stride has
  reached ``output_stride``, a unit that would stride runs with stride 1 at
  the current rate, and the rate of every later unit is multiplied by the
  stride it skipped.
  """

  def __init__(self, output_stride: int, current_stride: int = 1):
    self.output_stride = output_stride
    self.current_stride = current_stride
    self.rate = 1

  def next(self, stride: int) -> Tuple[int, int]:
    """Returns (stride, atrous rate) for the next unit of nominal ``stride``."""
    if self.current_stride == self.output_stride:
      unit = (1, self.rate)
      self.rate *= stride
      return unit
    self.current_stride *= stride
    return stride, 1
