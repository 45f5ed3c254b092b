"""The one definition of DeepLab's (and the backbone classifier's) arguments.

Each field of ``ModelArgs`` carries its default, its rule, its meaning, where
it lives in an experiment config, and whether it decides which weights the
model has. Everything else is derived from here: ``DeepLab``'s keyword
arguments and ``get_config``, the experiment config's ``model`` section
(``deeplab.config``), and the "same architecture?" rule that guards resuming
and restoring a run (``deeplab.run_dir``). Adding a model option is one
field here plus its use in ``deeplab.model``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Tuple

import keras

from deeplab import backbones
from deeplab import rules
from deeplab import tasks

OUTPUT_STRIDES = (8, 16, 32)
# Strides of backbone features a decoder stage can refine with.
DECODER_STRIDES = (2, 4, 8)
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
# What a model is for: DeepLab segments (deeplab.model); the classifier
# pretrains a backbone on image classification (deeplab.classifier).
TASKS = tasks.NAMES
# The segmentation head's arguments: a classifier has no ASPP or decoder.
_SEGMENTATION = ("segmentation",)


class ArgumentError(rules.RuleError):
  """A model argument broke its rule; ``key`` is its config key
  (``config.model.output_stride``), or its name if it has none.

  Attributes:
    field: the argument's name.
    config_key: where the argument lives in an experiment config
      (``model.output_stride``, ``dataset.num_classes``), or None.
    rule: what the value must be.
    value: the value received.
  """

  def __init__(self, field: str, rule: str, value, config_key: Optional[str]):
    super().__init__(f"config.{config_key}" if config_key else field, rule,
                     value)
    self.field, self.config_key = field, config_key


def _positive_int(value) -> bool:
  return rules.is_int(value) and value >= 1


def _positive_ints(values) -> bool:
  return isinstance(values, tuple) and all(_positive_int(v) for v in values)


def _arg(default, doc: str, check: Optional[Callable[[Any], bool]] = None,
         rule: str = "", *, weights: Optional[Callable[[Any], Any]] = None,
         section: Optional[str] = "model", tasks: Tuple[str, ...] = TASKS):
  """A ``ModelArgs`` field.

  Args:
    default: the default value.
    doc: what the field means (shown in the config's documentation).
    check: predicate the value must satisfy (None: any value); with
      ``rule``, the field's entry of the rule table
      (``ModelArgs.rule_table``).
    rule: the rule in words, for the error message.
    weights: if the field decides the model's weights, the function of its
      value that does (``lambda v: v`` for the value itself, ``len`` when
      only the count matters); None if weights fit any value.
    section: section of the experiment config holding the field
      (``model``, ``dataset``), or None for arguments of the built model
      only (input shape, folding, normalization factory).
    tasks: the tasks whose models use the field (the segmentation head's
      fields mean nothing to a classifier, nor decide its weights).
  """
  return dataclasses.field(default=default, metadata=dict(
      doc=doc, rule=rules.Rule(check, rule) if check else None,
      weights=weights, section=section, tasks=tasks))


def _decoder_strides(values) -> bool:
  return (isinstance(values, tuple) and len(values) >= 1 and
          all(v in DECODER_STRIDES for v in values) and
          all(a > b for a, b in zip(values, values[1:])))


def _same(value):
  return value


@dataclasses.dataclass(frozen=True)
class ModelArgs:
  """The model's arguments, validated when made (``ArgumentError`` names the
  first bad one). Sequences are stored as tuples. ``task`` says which model
  they describe (``DeepLab`` or ``Classifier``); a field whose ``tasks``
  leave that task out is ignored by it."""

  task: str = _arg(
      "segmentation", "What the model is for: 'segmentation' (DeepLab) or "
      "'classification' (the backbone, global average pooling, dropout and "
      "logits named as in the original's ImageNet checkpoints: backbone "
      "pretraining, deeplab.classifier).", lambda v: v in TASKS,
      f"one of {TASKS}", weights=_same)
  num_classes: int = _arg(
      21, "Number of classes the model predicts (the logits' channels).",
      _positive_int, "an integer >= 1", weights=_same, section="dataset")
  backbone: str = _arg(
      "xception_65", "Backbone: xception_41/65/71, resnet_50/101, "
      "mobilenet_v2.", lambda v: v in backbones.BACKBONES,
      f"one of {sorted(backbones.BACKBONES)}", weights=_same)
  output_stride: int = _arg(
      16, "Input-to-feature resolution ratio of the encoder output.",
      lambda v: v in OUTPUT_STRIDES, f"one of {OUTPUT_STRIDES}")
  atrous_rates: Tuple[int, ...] = _arg(
      (6, 12, 18), "Atrous rates of the ASPP 3x3 branches (feature-map "
      "pixels): (6, 12, 18) at output stride 16, (12, 24, 36) at 8; () for "
      "image pooling + 1x1 only (the MobileNetV2 checkpoints' head).",
      _positive_ints, "a sequence of positive integers", weights=len,
      tasks=_SEGMENTATION)
  aspp_separable: bool = _arg(
      True, "Atrous separable convs in the ASPP 3x3 branches (else plain).",
      weights=_same, tasks=_SEGMENTATION)
  image_pooling: bool = _arg(
      True, "Add ASPP's image-level (global average pool) branch.",
      weights=_same, tasks=_SEGMENTATION)
  aspp_filters: int = _arg(
      256, "Channels of each ASPP branch and of its 1x1 projection.",
      _positive_int, "an integer >= 1", weights=_same, tasks=_SEGMENTATION)
  dropout_rate: float = _arg(
      0.1, "Dropout probability, training only: after the ASPP projection "
      "(segmentation), before the logits (classification; the original's "
      "ImageNet nets: 0.5 Xception, 0.2 MobileNetV2, none ResNet).",
      lambda v: 0.0 <= v < 1.0, "in [0, 1)")
  use_decoder: bool = _arg(
      True, "The DeepLabv3+ decoder (False: plain DeepLabv3, logits at the "
      "output stride).", weights=_same, tasks=_SEGMENTATION)
  decoder_output_strides: Tuple[int, ...] = _arg(
      (4,), "Strides of the decoder's stages, in order (the original's "
      "decoder_output_stride list): each projects the backbone features of "
      "its stride to low_level_filters channels, concatenates them with "
      "the upsampled previous output and applies the two 3x3 convs. (4,) "
      "is the paper's decoder; (4, 2) adds a stage at stride 2 for thin "
      "structures, (8, 4) refines twice.", _decoder_strides,
      f"a non-empty decreasing sequence of {DECODER_STRIDES}",
      weights=_same, tasks=_SEGMENTATION)
  decoder_separable: bool = _arg(
      True, "Separable convs in the decoder's two 3x3 convs.", weights=_same,
      tasks=_SEGMENTATION)
  decoder_filters: int = _arg(
      256, "Channels of the decoder's 3x3 convs.", _positive_int,
      "an integer >= 1", weights=_same, tasks=_SEGMENTATION)
  low_level_filters: int = _arg(
      48, "Channels the backbone features of each decoder stage are "
      "projected to.",
      _positive_int, "an integer >= 1", weights=_same, tasks=_SEGMENTATION)
  align_corners: bool = _arg(
      True, "Bilinear resizes of the model (image pooling, decoder and "
      "logits upsampling) and of inference (multi-scale, back to the input) "
      "align corners, as every resize of the original does; input sizes of "
      "the form output_stride * k + 1 (513) make the feature grids line up. "
      "False: TensorFlow's align_corners=False (half_pixel_centers=False), "
      "as TFLite files converted that way resize, with sizes "
      "output_stride * k (512). Weights fit either.", tasks=_SEGMENTATION)
  depth_multiplier: float = _arg(
      1.0, "MobileNetV2 width multiplier (ignored by other backbones).",
      lambda v: v > 0, "> 0", weights=_same)
  multi_grid: Tuple[int, ...] = _arg(
      (1, 1, 1), "Unit rates of the last backbone block, times the block's "
      "atrous rate (Xception: 3 entries; ResNet: one unit per entry, "
      "(1, 2, 4) in the paper).", _positive_ints,
      "a sequence of positive integers", weights=len)
  batch_norm_momentum: float = _arg(
      0.9997, "Moving-average decay of the ASPP and decoder batch norm "
      "statistics (the original's 0.9997).",
      lambda v: 0.0 < v < 1.0, "in (0, 1)", tasks=_SEGMENTATION)
  backbone_batch_norm_momentum: Optional[float] = _arg(
      None, "Moving-average decay of the backbone's batch norm statistics; "
      "None: the original's for that backbone (Xception 0.9997, ResNet "
      "0.95, MobileNetV2 0.997; Backbone.batch_norm_decay).",
      lambda v: v is None or 0.0 < v < 1.0, "None or in (0, 1)")
  head_batch_norm_epsilon: float = _arg(
      1e-5, "Epsilon of the ASPP and decoder batch norms (backbones keep "
      "their own: 1e-3 Xception and MobileNetV2, 1e-5 ResNet).",
      lambda v: v > 0, "> 0", tasks=_SEGMENTATION)
  sync_batch_norm: bool = _arg(
      False, "Reduce batch norm statistics across replicas (set "
      "automatically when a strategy has more than one replica).")
  dtype_policy: str = _arg(
      "float32", "Compute dtype policy; logits are always float32.",
      lambda v: v in DTYPE_POLICIES, f"one of {DTYPE_POLICIES}")
  input_shape: Tuple[Optional[int], ...] = _arg(
      (None, None, 3), "(height, width, 3); None dims accept any size.",
      lambda v: len(v) == 3 and v[2] == 3, "(height, width, 3)",
      section=None)
  batch_norm_factory: Optional[Callable[..., Any]] = _arg(
      None, "Callable (name, epsilon, momentum) -> Layer replacing batch "
      "norm (register it with Keras to survive .keras saving).",
      section=None)
  fold_batch_norm: bool = _arg(
      False, "Inference form without batch norm layers (convolutions with "
      "biases), made from a trained model by deeplab.folding.",
      section=None)

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, list):
        object.__setattr__(self, field.name, tuple(value))
    broken = rules.first_broken(vars(self), self.rule_table())
    if broken:
      name, rule, value = broken
      raise self.error(name, rule.words, value)
    if (self.uses("decoder_output_strides") and self.use_decoder and
        max(self.decoder_output_strides) >= self.output_stride):
      raise self.error("decoder_output_strides", "strides below the output "
                       f"stride {self.output_stride}",
                       self.decoder_output_strides)
    rates = backbones.get(self.backbone).multi_grid_length
    if rates is not None and len(self.multi_grid) != rates:
      raise self.error("multi_grid", f"{rates} rates for {self.backbone} (one "
                       "per conv of the last unit)", self.multi_grid)

  @staticmethod
  def rule_table() -> rules.Table:
    """The rule table of the fields that have a rule, in field order."""
    return {name: f.metadata["rule"] for name, f in _FIELDS.items()
            if f.metadata["rule"]}

  @classmethod
  def error(cls, name: str, rule: str, value) -> ArgumentError:
    return ArgumentError(name, rule, value, cls.config_key(name))

  @staticmethod
  def config_key(name: str) -> Optional[str]:
    """``section.name`` of a field in an experiment config, or None."""
    section = _FIELDS[name].metadata["section"]
    return f"{section}.{name}" if section else None

  @staticmethod
  def config_fields():
    """The fields an experiment config holds, as dataclass fields."""
    return [f for f in _FIELDS.values() if f.metadata["section"]]

  @classmethod
  def from_experiment(cls, config, **overrides) -> "ModelArgs":
    """The arguments an experiment config tree describes.

    Raises:
      ArgumentError: naming the config key of the first bad value.
    """
    values = {}
    for field in cls.config_fields():
      section, name = cls.config_key(field.name).split(".")
      values[field.name] = config[section][name]
    values.update(overrides)
    return cls(**values)

  def replace(self, **changes) -> "ModelArgs":
    return dataclasses.replace(self, **changes)

  def uses(self, name: str) -> bool:
    """Whether the model of this task uses the field ``name``."""
    return self.task in _FIELDS[name].metadata["tasks"]

  def weight_signature(self) -> Dict[str, Any]:
    """What decides the weights: ``{field: value or count}``.

    Two models with the same signature have the same weights with the same
    shapes (output stride, rates and multi-grid values do not matter: a
    model trained at one runs at another).
    """
    return {f.name: f.metadata["weights"](getattr(self, f.name))
            for f in _FIELDS.values() if f.metadata["weights"] is not None
            and self.uses(f.name)}

  def differences(self, other: "ModelArgs") -> Dict[str, Tuple[Any, Any]]:
    """Fields whose weight signatures differ: ``{field: (self, other)}``."""
    mine, theirs = self.weight_signature(), other.weight_signature()
    names = list(mine) + [name for name in theirs if name not in mine]
    return {name: (getattr(self, name), getattr(other, name))
            for name in names if mine.get(name) != theirs.get(name)}

  def to_config(self) -> Dict[str, Any]:
    """JSON-able dict (tuples as lists, the factory serialized by Keras)."""
    config = {}
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, tuple):
        value = list(value)
      if field.name == "batch_norm_factory":
        value = keras.saving.serialize_keras_object(value)
      config[field.name] = value
    return config

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> "ModelArgs":
    """Inverse of ``to_config``.

    Raises:
      ValueError: a key that is no field (a misspelt or retired option of a
        saved model), named.
    """
    unknown = sorted(set(config) - set(_FIELDS))
    if unknown:
      raise ValueError(f"unknown DeepLab arguments {unknown}; the arguments "
                       f"are {sorted(_FIELDS)}")
    values = dict(config)
    if "batch_norm_factory" in values:
      values["batch_norm_factory"] = keras.saving.deserialize_keras_object(
          values["batch_norm_factory"])
    return cls(**values)


_FIELDS = {f.name: f for f in dataclasses.fields(ModelArgs)}


class ModelFromArgs:
  """What a Keras model built from a ``ModelArgs`` shares (``DeepLab``,
  ``Classifier``): its arguments from ``args`` and keyword fields, checked
  against the model's task, and the Keras config that mirrors them.

  Subclasses set ``TASK`` and ``OTHER_MODEL`` (named in the error when the
  task is another), call ``resolve_args`` first in ``__init__`` and keep
  the result in ``self.args``.
  """

  TASK = ""
  OTHER_MODEL = ""

  @classmethod
  def resolve_args(cls, args: Optional[ModelArgs], kwargs: Dict) -> ModelArgs:
    """``args`` (default: all defaults for the task) with the ``ModelArgs``
    fields of ``kwargs`` applied; those fields are removed from ``kwargs``
    (the rest are Keras' ``name`` and ``trainable``)."""
    fields = {k: kwargs.pop(k) for k in list(kwargs)
              if k in ModelArgs.__dataclass_fields__}
    args = (args or ModelArgs(task=cls.TASK)).replace(**fields)
    if args.task != cls.TASK:
      raise ModelArgs.error("task", f"{cls.TASK!r} for {cls.__name__} "
                            f"({cls.OTHER_MODEL})", args.task)
    return args

  def get_config(self):
    return {"name": self.name, "trainable": self.trainable,
            **self.args.to_config()}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    keras_kwargs = {k: config.pop(k) for k in ("name", "trainable")
                    if k in config}
    return cls(ModelArgs.from_config(config), **keras_kwargs)
