"""The DeepLabv3 / DeepLabv3+ model: backbone -> ASPP -> decoder -> logits."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import keras

from deeplab import backbones
from deeplab import classifier  # noqa: F401  Registers Classifier with Keras (.keras files).
from deeplab import config as config_lib
from deeplab import layers
from deeplab import tasks
from deeplab.model_args import ModelArgs
from deeplab.model_args import ModelFromArgs


@keras.saving.register_keras_serializable(package="deeplab")
class DeepLab(ModelFromArgs, keras.Model):
  """DeepLabv3+ (Chen et al., ECCV 2018) as a Keras functional model.

  Maps a float32 batch ``[n, h, w, 3]`` scaled to [-1, 1] to float32 logits
  ``[n, h, w, num_classes]`` (logits are upsampled bilinearly to the input
  size). Any input size works; sizes of the form ``output_stride * k + 1``
  (513, 769...) make the feature grids align exactly, as in the original
  (``output_stride * k`` with ``align_corners=False``).

  Every weighted layer is named after its original DeepLab variable scope
  (``/`` written as ``.``), see ``deeplab.naming``.

  Example:
    >>> model = DeepLab(num_classes=21, backbone="mobilenet_v2",
    ...                 output_stride=8, atrous_rates=(), use_decoder=False,
    ...                 depth_multiplier=0.5)
    >>> model(np.zeros((1, 65, 65, 3), "float32")).shape
    TensorShape([1, 65, 65, 21])

  Args:
    args: a ``ModelArgs``; its fields can also be given as keyword
      arguments (they replace the ones of ``args``). ``ModelArgs``
      documents each field, its default and its rule.
    **kwargs: ``ModelArgs`` fields, and Keras' ``name`` and ``trainable``.

  Raises:
    ArgumentError (a ValueError): an argument broke its rule; the message
      names it.
  """

  TASK = "segmentation"
  OTHER_MODEL = "deeplab.classifier.Classifier classifies"

  def __init__(self, args: Optional[ModelArgs] = None, **kwargs):
    a = args = self.resolve_args(args, kwargs)

    # === Layers and functional graph ===
    norm = layers.BatchNormSpec(momentum=a.batch_norm_momentum,
                                synchronized=a.sync_batch_norm,
                                factory=a.batch_norm_factory,
                                folded=a.fold_batch_norm)
    backbone_norm = dataclasses.replace(
        norm, momentum=(a.backbone_batch_norm_momentum or
                        backbones.get(a.backbone).batch_norm_decay))
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(a.dtype_policy)
    try:
      inputs = keras.Input(shape=a.input_shape, name="image")
      features = backbones.build_backbone(
          a.backbone, inputs, output_stride=a.output_stride, norm=backbone_norm,
          depth_multiplier=a.depth_multiplier, multi_grid=a.multi_grid)
      x = layers.aspp(features[a.output_stride], filters=a.aspp_filters,
                      atrous_rates=a.atrous_rates,
                      separable=a.aspp_separable, image_pooling=a.image_pooling,
                      dropout_rate=a.dropout_rate, norm=norm,
                      epsilon=a.head_batch_norm_epsilon,
                      align_corners=a.align_corners)
      if a.use_decoder:
        x = layers.decoder(x, [features[s] for s in a.decoder_output_strides],
                           low_level_filters=a.low_level_filters,
                           filters=a.decoder_filters,
                           separable=a.decoder_separable, norm=norm,
                           epsilon=a.head_batch_norm_epsilon,
                           align_corners=a.align_corners)
      logits = keras.layers.Conv2D(
          a.num_classes, 1, name="logits.semantic",
          kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01))(x)
      logits = layers.ResizeBilinear(a.align_corners,
                                     name="logits.upsample")(logits, inputs)
      # Loss and argmax want float32 logits under mixed precision.
      logits = keras.layers.Activation("linear", dtype="float32",
                                       name="logits.float32")(logits)
    finally:
      keras.config.set_dtype_policy(previous_policy)
    super().__init__(inputs=inputs, outputs=logits,
                     name=kwargs.pop("name", f"deeplab_{a.backbone}"), **kwargs)

    # === Config ===
    self.args = args


def build_model(config, input_shape: Sequence[Optional[int]] = (None, None, 3),
                **overrides) -> keras.Model:
  """Builds the model an experiment config describes: its task's model
  (``deeplab.tasks``): a ``DeepLab``, or a ``Classifier`` for the
  classification task.

  Args:
    config: an experiment config (``configs/<name>.py``'s ``get_config()``).
    input_shape: ``(height, width, 3)``; ``None`` dims accept any size.
    **overrides: ``ModelArgs`` fields that replace the config's (e.g.
      ``sync_batch_norm=True`` under a multi-replica strategy).

  Returns:
    The model, freshly initialized: ``config.model.backbone_weights`` (and
    ``config.init.checkpoint``) are loaded by training, where a run
    starts (``deeplab.training.warm_start``), not each time a run's model
    is rebuilt to restore a checkpoint.

  Raises:
    ArgumentError (a ValueError): naming the config key of a bad value.

  Example:
    >>> import deeplab
    >>> from deeplab_configs import synthetic
    >>> model = deeplab.build_model(synthetic.get_config())
  """
  config_lib.validate(config)
  args = ModelArgs.from_experiment(config, input_shape=tuple(input_shape),
                                   **overrides)
  return tasks.get(args.task).MODEL(args)
