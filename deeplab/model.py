"""The DeepLabv3 / DeepLabv3+ model: backbone -> ASPP -> decoder -> logits."""

from __future__ import annotations

from typing import Optional, Sequence

import keras

from deeplab import backbones
from deeplab import layers

VALID_OUTPUT_STRIDES = (8, 16, 32)
DTYPE_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


class ArgumentError(ValueError):
  """A model argument broke its rule; ``field`` names the argument."""

  def __init__(self, field: str, rule: str, value):
    super().__init__(f"{field} must be {rule}, got {value!r}")
    self.field, self.rule, self.value = field, rule, value


def _check(condition: bool, field: str, rule: str, value):
  if not condition:
    raise ArgumentError(field, rule, value)


def _positive_ints(values) -> bool:
  return all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
             for v in values)


def check_arguments(*, num_classes, backbone, output_stride, atrous_rates,
                    multi_grid, dropout_rate, depth_multiplier,
                    batch_norm_momentum, aspp_filters, decoder_filters,
                    low_level_filters, dtype_policy, **unused):
  """Raises ``ArgumentError`` (a ValueError) naming the first bad argument."""
  del unused
  _check(_positive_ints([num_classes]), "num_classes", "an integer >= 1",
         num_classes)
  _check(backbone in backbones.BACKBONES, "backbone",
         f"one of {sorted(backbones.BACKBONES)}", backbone)
  _check(output_stride in VALID_OUTPUT_STRIDES, "output_stride",
         f"one of {VALID_OUTPUT_STRIDES}", output_stride)
  _check(_positive_ints(atrous_rates), "atrous_rates",
         "a sequence of positive integers", tuple(atrous_rates))
  _check(_positive_ints(multi_grid), "multi_grid",
         "a sequence of positive integers", tuple(multi_grid))
  _check(backbone.startswith("resnet") or len(multi_grid) == 3, "multi_grid",
         f"3 rates for {backbone} (one per conv of the last unit)",
         tuple(multi_grid))
  _check(0.0 <= dropout_rate < 1.0, "dropout_rate", "in [0, 1)", dropout_rate)
  _check(depth_multiplier > 0, "depth_multiplier", "> 0", depth_multiplier)
  _check(0.0 < batch_norm_momentum < 1.0, "batch_norm_momentum", "in (0, 1)",
         batch_norm_momentum)
  for field, value in (("aspp_filters", aspp_filters),
                       ("decoder_filters", decoder_filters),
                       ("low_level_filters", low_level_filters)):
    _check(_positive_ints([value]), field, "an integer >= 1", value)
  _check(dtype_policy in DTYPE_POLICIES, "dtype_policy",
         f"one of {DTYPE_POLICIES}", dtype_policy)


@keras.saving.register_keras_serializable(package="deeplab")
class DeepLab(keras.Model):
  """DeepLabv3+ (Chen et al., ECCV 2018) as a Keras functional model.

  Maps a float32 batch ``[n, h, w, 3]`` scaled to [-1, 1] to float32 logits
  ``[n, h, w, num_classes]`` (logits are upsampled bilinearly to the input
  size). Any input size works; sizes of the form ``output_stride * k + 1``
  (513, 769...) make the feature grids align exactly, as in the original.

  Every weighted layer is named after its original DeepLab variable scope
  (``/`` written as ``.``), see ``deeplab.naming``.

  Example:
    >>> model = DeepLab(num_classes=21, backbone="mobilenet_v2",
    ...                 output_stride=8, atrous_rates=(), use_decoder=False,
    ...                 depth_multiplier=0.5)
    >>> model(np.zeros((1, 65, 65, 3), "float32")).shape
    TensorShape([1, 65, 65, 21])

  Args:
    num_classes: number of output classes (>= 1).
    backbone: one of ``deeplab.backbones.BACKBONES``.
    output_stride: ratio of input to encoder-output resolution: 8, 16 or 32.
    atrous_rates: rates of the ASPP 3x3 branches; empty for the
      "aspp0 + image pooling" head of the MobileNetV2 checkpoints.
    aspp_separable: atrous separable convs in ASPP (else plain 3x3).
    image_pooling: add ASPP's image-level feature branch.
    aspp_filters: channels of ASPP branches and projection.
    dropout_rate: dropout after the ASPP projection (training only).
    use_decoder: DeepLabv3+ decoder (False gives plain DeepLabv3).
    decoder_separable: separable convs in the decoder.
    decoder_filters: channels of the decoder's 3x3 convs.
    low_level_filters: channels of the low-level projection (48).
    depth_multiplier: MobileNetV2 width multiplier.
    multi_grid: unit rates of the backbone's last block (Xception, ResNet).
    batch_norm_momentum: moving-average decay of batch norm statistics.
    head_batch_norm_epsilon: epsilon of the ASPP/decoder batch norms (the
      backbones keep their own: 1e-3 Xception and MobileNetV2, 1e-5 ResNet).
    sync_batch_norm: reduce batch statistics across replicas.
    dtype_policy: 'float32', 'mixed_bfloat16' or 'mixed_float16'; logits are
      always float32.
    input_shape: ``(height, width, 3)``; ``None`` dims accept any size.
    batch_norm_factory: optional callable ``(name, epsilon, momentum) ->
      Layer`` replacing Keras batch norm (must be registered with Keras to
      survive ``.keras`` saving).
    fold_batch_norm: inference form without batch norm layers (convolutions
      with biases); made from a trained model by ``deeplab.folding``.
  """

  def __init__(self,
               num_classes: int,
               backbone: str = "xception_65",
               output_stride: int = 16,
               atrous_rates: Sequence[int] = (6, 12, 18),
               aspp_separable: bool = True,
               image_pooling: bool = True,
               aspp_filters: int = 256,
               dropout_rate: float = 0.1,
               use_decoder: bool = True,
               decoder_separable: bool = True,
               decoder_filters: int = 256,
               low_level_filters: int = 48,
               depth_multiplier: float = 1.0,
               multi_grid: Sequence[int] = (1, 1, 1),
               batch_norm_momentum: float = 0.9997,
               head_batch_norm_epsilon: float = 1e-5,
               sync_batch_norm: bool = False,
               dtype_policy: str = "float32",
               input_shape: Sequence[Optional[int]] = (None, None, 3),
               batch_norm_factory=None,
               fold_batch_norm: bool = False,
               **kwargs):
    check_arguments(
        num_classes=num_classes, backbone=backbone,
        output_stride=output_stride, atrous_rates=atrous_rates,
        multi_grid=multi_grid, dropout_rate=dropout_rate,
        depth_multiplier=depth_multiplier,
        batch_norm_momentum=batch_norm_momentum, aspp_filters=aspp_filters,
        decoder_filters=decoder_filters, low_level_filters=low_level_filters,
        dtype_policy=dtype_policy)
    input_shape = tuple(input_shape)
    _check(len(input_shape) == 3 and input_shape[2] == 3, "input_shape",
           "(height, width, 3)", input_shape)

    # === Layers and functional graph ===
    norm = layers.BatchNormSpec(momentum=batch_norm_momentum,
                                synchronized=sync_batch_norm,
                                factory=batch_norm_factory,
                                folded=fold_batch_norm)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype_policy)
    try:
      inputs = keras.Input(shape=input_shape, name="image")
      features = backbones.build_backbone(
          backbone, inputs, output_stride=output_stride, norm=norm,
          depth_multiplier=depth_multiplier, multi_grid=multi_grid)
      x = layers.aspp(features[output_stride], filters=aspp_filters,
                      atrous_rates=tuple(atrous_rates),
                      separable=aspp_separable, image_pooling=image_pooling,
                      dropout_rate=dropout_rate, norm=norm,
                      epsilon=head_batch_norm_epsilon)
      if use_decoder:
        x = layers.decoder(x, features[4], low_level_filters=low_level_filters,
                           filters=decoder_filters,
                           separable=decoder_separable, norm=norm,
                           epsilon=head_batch_norm_epsilon)
      logits = keras.layers.Conv2D(
          num_classes, 1, name="logits.semantic",
          kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01))(x)
      logits = layers.ResizeBilinear(name="logits.upsample")(logits, inputs)
      # Loss and argmax want float32 logits under mixed precision.
      logits = keras.layers.Activation("linear", dtype="float32",
                                       name="logits.float32")(logits)
    finally:
      keras.config.set_dtype_policy(previous_policy)
    super().__init__(inputs=inputs, outputs=logits,
                     name=kwargs.pop("name", f"deeplab_{backbone}"), **kwargs)

    # === Config ===
    self.num_classes = num_classes
    self.backbone = backbone
    self.output_stride = output_stride
    self.atrous_rates = tuple(atrous_rates)
    self.aspp_separable = aspp_separable
    self.image_pooling = image_pooling
    self.aspp_filters = aspp_filters
    self.dropout_rate = dropout_rate
    self.use_decoder = use_decoder
    self.decoder_separable = decoder_separable
    self.decoder_filters = decoder_filters
    self.low_level_filters = low_level_filters
    self.depth_multiplier = depth_multiplier
    self.multi_grid = tuple(multi_grid)
    self.batch_norm_momentum = batch_norm_momentum
    self.head_batch_norm_epsilon = head_batch_norm_epsilon
    self.sync_batch_norm = sync_batch_norm
    self.dtype_policy_name = dtype_policy
    self.model_input_shape = input_shape
    self.batch_norm_factory = batch_norm_factory
    self.fold_batch_norm = fold_batch_norm

  def get_config(self):
    return {
        "name": self.name,
        "trainable": self.trainable,
        "num_classes": self.num_classes,
        "backbone": self.backbone,
        "output_stride": self.output_stride,
        "atrous_rates": list(self.atrous_rates),
        "aspp_separable": self.aspp_separable,
        "image_pooling": self.image_pooling,
        "aspp_filters": self.aspp_filters,
        "dropout_rate": self.dropout_rate,
        "use_decoder": self.use_decoder,
        "decoder_separable": self.decoder_separable,
        "decoder_filters": self.decoder_filters,
        "low_level_filters": self.low_level_filters,
        "depth_multiplier": self.depth_multiplier,
        "multi_grid": list(self.multi_grid),
        "batch_norm_momentum": self.batch_norm_momentum,
        "head_batch_norm_epsilon": self.head_batch_norm_epsilon,
        "sync_batch_norm": self.sync_batch_norm,
        "dtype_policy": self.dtype_policy_name,
        "input_shape": list(self.model_input_shape),
        "batch_norm_factory": keras.saving.serialize_keras_object(
            self.batch_norm_factory),
        "fold_batch_norm": self.fold_batch_norm,
    }

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    config["batch_norm_factory"] = keras.saving.deserialize_keras_object(
        config.get("batch_norm_factory"))
    return cls(**config)


def model_kwargs(config) -> dict:
  """The ``DeepLab`` constructor arguments an experiment config describes."""
  m = config.model
  return dict(
      num_classes=config.dataset.num_classes,
      backbone=m.backbone,
      output_stride=m.output_stride,
      atrous_rates=tuple(m.atrous_rates),
      aspp_separable=m.aspp_separable,
      image_pooling=m.image_pooling,
      aspp_filters=m.aspp_filters,
      dropout_rate=m.dropout_rate,
      use_decoder=m.use_decoder,
      decoder_separable=m.decoder_separable,
      decoder_filters=m.decoder_filters,
      low_level_filters=m.low_level_filters,
      depth_multiplier=m.depth_multiplier,
      multi_grid=tuple(m.multi_grid),
      batch_norm_momentum=m.batch_norm_momentum,
      head_batch_norm_epsilon=m.head_batch_norm_epsilon,
      sync_batch_norm=m.sync_batch_norm,
      dtype_policy=m.dtype_policy,
  )


def build_model(config, input_shape: Sequence[Optional[int]] = (None, None, 3),
                **overrides) -> DeepLab:
  """Builds the model an experiment config describes.

  Args:
    config: an experiment config (``configs/<name>.py``'s ``get_config()``);
      validated first.
    input_shape: ``(height, width, 3)``; ``None`` dims accept any size.
    **overrides: ``DeepLab`` arguments that replace the config's (e.g.
      ``sync_batch_norm=True`` under a multi-replica strategy).

  Returns:
    A ``DeepLab`` model, with the backbone weights of
    ``config.model.backbone_weights`` loaded if that is set.

  Example:
    >>> import deeplab
    >>> from configs import synthetic
    >>> model = deeplab.build_model(synthetic.get_config())
  """
  from deeplab import config as config_lib  # pylint: disable=g-import-not-at-top
  from deeplab import weights  # pylint: disable=g-import-not-at-top
  config_lib.validate(config)
  kwargs = model_kwargs(config)
  kwargs.update(overrides)
  model = DeepLab(input_shape=input_shape, **kwargs)
  if config.model.backbone_weights:
    weights.load_backbone_weights(model, config.model.backbone_weights)
  return model
