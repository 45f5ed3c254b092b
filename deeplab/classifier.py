"""The backbone classifier: backbone -> global average pooling -> dropout ->
logits, for pretraining a backbone on image classification.

Its layers carry the original ImageNet checkpoints' names (slim's nets, as
DeepLab's ``core/xception.py``, ``core/resnet_v1_beta.py`` and slim's
``mobilenet_v2.py`` build them), so a checkpoint of ours loads into
``DeepLab`` through the same name table as a released one, and a released
ImageNet checkpoint loads into the classifier:

============  =====================================================
backbone      head (original variable scopes)
============  =====================================================
xception_*    ``xception_65/logits`` (1x1 conv with biases)
resnet_*      ``resnet_v1_101/logits`` (1x1 conv with biases)
mobilenet_v2  ``MobilenetV2/Conv_1`` (1x1 conv, batch norm, ReLU6: the
              classification net's last layer, which DeepLab's feature
              extractor leaves out), then
              ``MobilenetV2/Logits/Conv2d_1c_1x1``
============  =====================================================

The original's ImageNet checkpoints have 1001 logits (id 0 is a background
class no image has; see the dataset table's ``imagenet`` entry).
"""

from __future__ import annotations

from typing import Optional

import keras

from deeplab import backbones
from deeplab import layers
from deeplab.model_args import ModelArgs
from deeplab.model_args import ModelFromArgs


@keras.saving.register_keras_serializable(package="deeplab")
class Classifier(ModelFromArgs, keras.Model):
  """A backbone of ours as an image classifier (backbone pretraining).

  Maps a float32 batch ``[n, h, w, 3]`` scaled to [-1, 1] to float32 logits
  ``[n, num_classes]``. Any input size works (global average pooling).

  Example:
    >>> model = Classifier(num_classes=10, backbone="mobilenet_v2",
    ...                    depth_multiplier=0.25, output_stride=32)
    >>> model(np.zeros((2, 64, 64, 3), "float32")).shape
    TensorShape([2, 10])

  Args:
    args: a ``ModelArgs`` (its ``task`` 'classification'); its fields can
      also be given as keyword arguments. The segmentation head's fields
      (ASPP, decoder) are ignored. ``dropout_rate`` is the dropout before
      the logits (the original's ImageNet nets: 0.5 for Xception, 0.2 for
      MobileNetV2, none for ResNet). ``output_stride`` 32 is the
      original's ImageNet network; 8 or 16 run the last blocks atrous.
    **kwargs: ``ModelArgs`` fields, and Keras' ``name`` and ``trainable``.

  Raises:
    ArgumentError (a ValueError): an argument broke its rule, or ``task``
      is not 'classification'.
  """

  TASK = "classification"
  OTHER_MODEL = "DeepLab is the segmentation model"

  def __init__(self, args: Optional[ModelArgs] = None, **kwargs):
    a = args = self.resolve_args(args, kwargs)

    # === Layers and functional graph ===
    backbone = backbones.get(a.backbone)
    norm = layers.BatchNormSpec(
        momentum=(a.backbone_batch_norm_momentum or
                  backbone.batch_norm_decay),
        synchronized=a.sync_batch_norm, factory=a.batch_norm_factory,
        folded=a.fold_batch_norm)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(a.dtype_policy)
    try:
      inputs = keras.Input(shape=a.input_shape, name="image")
      features = backbones.build_backbone(
          a.backbone, inputs, output_stride=a.output_stride, norm=norm,
          depth_multiplier=a.depth_multiplier, multi_grid=a.multi_grid)
      x = backbone.classifier_prelogits(features[a.output_stride],
                                        a.depth_multiplier, norm)
      scope = layers.scope(*backbone.logits_scope.split("/"))
      x = keras.layers.GlobalAveragePooling2D(keepdims=True,
                                              name=scope + ".pool")(x)
      x = keras.layers.Dropout(a.dropout_rate, name=scope + ".dropout")(x)
      x = keras.layers.Conv2D(
          a.num_classes, 1, name=scope,
          kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01))(x)
      x = keras.layers.Flatten(name=scope + ".flatten")(x)
      # Loss and top-k want float32 logits under mixed precision.
      logits = keras.layers.Activation("linear", dtype="float32",
                                       name=scope + ".float32")(x)
    finally:
      keras.config.set_dtype_policy(previous_policy)
    super().__init__(inputs=inputs, outputs=logits,
                     name=kwargs.pop("name", f"classifier_{a.backbone}"),
                     **kwargs)

    # === Config ===
    self.args = args
