"""Building blocks of DeepLab: conv+BN+ReLU, atrous separable conv, ASPP, decoder.

Every block is a function that adds named Keras layers to a functional graph
and returns the output tensor. Layer names are the original DeepLab variable
scopes with ``/`` replaced by ``.`` (Keras 3 forbids ``/`` in names), so
``xception_65.entry_flow.conv1_1`` holds the weights that the original
checkpoint stores under ``xception_65/entry_flow/conv1_1/weights`` and its
batch norm ``xception_65.entry_flow.conv1_1.BatchNorm`` those under
``.../conv1_1/BatchNorm/{gamma,beta,moving_mean,moving_variance}``.
``deeplab.naming`` turns this convention into the weight table.

Layers that hold no weights (activations, padding, adds) get the name of the
layer they follow plus a suffix such as ``.relu``; they never appear in a
checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import keras
import tensorflow as tf

from deeplab import kernels

SCOPE_SEPARATOR = "."


def scope(*parts: str) -> str:
  """Joins original-checkpoint scope parts into a Keras layer name."""
  return SCOPE_SEPARATOR.join(p for p in parts if p)


@dataclasses.dataclass(frozen=True)
class BatchNormSpec:
  """How batch normalization layers are made.

  Attributes:
    momentum: moving-average decay of the statistics (the original's
      ``batch_norm_decay``, 0.9997).
    synchronized: if True, statistics are reduced across all replicas of a
      ``tf.distribute`` strategy (synchronized batch norm).
    factory: optional callable ``(name, epsilon, momentum) -> Layer`` that
      replaces ``keras.layers.BatchNormalization``; inject a custom
      normalization here.
    folded: inference only: no batch norm layers; the convolutions carry a
      bias instead, into which ``deeplab.folding`` folds trained statistics.
  """
  momentum: float = 0.9997
  synchronized: bool = False
  factory: Optional[Callable[..., keras.layers.Layer]] = None
  folded: bool = False

  def apply(self, x, name: str, epsilon: float):
    """``x`` through a new batch norm layer ``name`` (unchanged if folded)."""
    return x if self.folded else self(name, epsilon)(x)

  def __call__(self, name: str, epsilon: float) -> keras.layers.Layer:
    if self.factory is not None:
      return self.factory(name=name, epsilon=epsilon, momentum=self.momentum)
    layer = (kernels.TwoPassSyncBatchNorm if self.synchronized
             else kernels.FusedBatchNorm)
    return layer(momentum=self.momentum, epsilon=epsilon, name=name)


def truncated_normal(stddev: float) -> dict:
  """TF1's ``truncated_normal_initializer(stddev)`` as a Keras initializer
  config: every layer given it deserializes its own initializer (one Keras
  initializer object reused across layers draws the same values each time)."""
  return {"class_name": "TruncatedNormal", "config": {"stddev": stddev}}


# The head's initializers in the original (model.py): slim.conv2d's default
# xavier (Glorot uniform) for its plain convolutions, and
# split_separable_conv2d's truncated normals for its separable ones.
HEAD_CONV_INITIALIZER = "glorot_uniform"
HEAD_DEPTHWISE_STDDEV = 0.33
HEAD_POINTWISE_STDDEV = 0.06


def fixed_padding(x, kernel_size: int, rate: int, name: str):
  """Pads symmetrically so a VALID strided conv sees the original's borders.

  The original Xception and ResNet pad explicitly before every strided
  convolution (``pad_total = effective_kernel - 1``, split evenly with the
  extra pixel at the end) and then convolve with VALID padding. Keras 'same'
  with stride 2 would put all the padding at the end for even sizes, which
  shifts the sampling grid by one pixel and breaks checkpoint parity.
  """
  effective = kernel_size + (kernel_size - 1) * (rate - 1)
  pad_total = effective - 1
  pad_beg = pad_total // 2
  pad_end = pad_total - pad_beg
  return keras.layers.ZeroPadding2D(
      ((pad_beg, pad_end), (pad_beg, pad_end)), name=name + ".pad")(x)


def activation_layer(x, activation: Optional[str], name: str):
  """Applies ``activation`` ('relu', 'relu6' or None) as a named layer."""
  if activation is None:
    return x
  if activation == "relu":
    return keras.layers.ReLU(name=name + ".relu")(x)
  if activation == "relu6":
    return keras.layers.ReLU(max_value=6.0, name=name + ".relu6")(x)
  raise ValueError(f"activation must be 'relu', 'relu6' or None, got {activation!r}")


def conv_bn_act(x, filters: int, kernel_size: int, *, name: str,
                norm: BatchNormSpec, epsilon: float, strides: int = 1,
                rate: int = 1, activation: Optional[str] = "relu",
                explicit_padding: bool = False,
                kernel_initializer="he_normal"):
  """Convolution (no bias), batch norm, activation: the slim ``conv2d`` unit.

  Args:
    x: input tensor [batch, height, width, channels].
    filters: output channels.
    kernel_size: square kernel size.
    name: the original scope, e.g. ``resnet_v1_101.conv1_1``.
    norm: how to make the batch norm layer.
    epsilon: batch norm epsilon.
    strides: convolution stride.
    rate: atrous (dilation) rate.
    activation: 'relu', 'relu6' or None.
    explicit_padding: pad symmetrically before a strided conv (Xception and
      ResNet ``conv2d_same``); otherwise Keras/TF 'same' padding.
    kernel_initializer: Keras initializer (name or config) of the kernel;
      the default, He normal, is the ResNet arg scope's variance scaling.

  Returns:
    The output tensor.
  """
  padding = "same"
  if explicit_padding and strides > 1:
    x = fixed_padding(x, kernel_size, rate, name)
    padding = "valid"
  pointwise = kernel_size == 1 and strides == 1 and not norm.folded
  conv = kernels.MatMulPointwiseConv if pointwise else keras.layers.Conv2D
  x = conv(
      filters, kernel_size, strides=strides, dilation_rate=rate,
      padding=padding, use_bias=norm.folded,
      kernel_initializer=kernel_initializer, name=name)(x)
  x = norm.apply(x, name + ".BatchNorm", epsilon)
  return activation_layer(x, activation, name)


def depthwise_bn_act(x, *, name: str, norm: BatchNormSpec, epsilon: float,
                     kernel_size: int = 3, strides: int = 1, rate: int = 1,
                     activation: Optional[str] = "relu",
                     explicit_padding: bool = False,
                     depthwise_initializer="he_normal"):
  """Depthwise convolution (no bias), batch norm, activation."""
  padding = "same"
  if explicit_padding and strides > 1:
    x = fixed_padding(x, kernel_size, rate, name)
    padding = "valid"
  x = kernels.Float32GradDepthwiseConv(
      kernel_size, strides=strides, dilation_rate=rate, padding=padding,
      use_bias=norm.folded, depthwise_initializer=depthwise_initializer,
      name=name)(x)
  x = norm.apply(x, name + ".BatchNorm", epsilon)
  return activation_layer(x, activation, name)


def atrous_separable_conv(x, filters: int, *, name: str, norm: BatchNormSpec,
                          epsilon: float, kernel_size: int = 3,
                          strides: int = 1, rate: int = 1,
                          activation: Optional[str] = "relu",
                          explicit_padding: bool = False,
                          depthwise_initializer=None,
                          pointwise_initializer=None):
  """Atrous separable convolution exactly as the original's.

  3x3 depthwise conv with dilation ``rate`` -> BN -> activation -> 1x1
  pointwise conv -> BN -> activation. Keras ``SeparableConv2D`` fuses the two
  convolutions with nothing in between, which is not what DeepLab trained, so
  the two halves are separate layers named ``{name}_depthwise`` and
  ``{name}_pointwise`` like the original's ``split_separable_conv2d``.

  Args:
    x: input tensor.
    filters: output channels of the pointwise conv.
    name: original scope without the ``_depthwise``/``_pointwise`` suffix,
      e.g. ``decoder.decoder_conv0`` or ``aspp1``.
    norm: how to make batch norm layers.
    epsilon: batch norm epsilon.
    kernel_size: depthwise kernel size.
    strides: depthwise stride.
    rate: atrous rate of the depthwise conv.
    activation: activation after each batch norm, or None (Xception's
      pre-activation units apply ReLU before the block instead).
    explicit_padding: symmetric padding before a strided depthwise conv.
    depthwise_initializer: initializer of the depthwise kernel; default
      the original head's truncated normal (stddev 0.33).
    pointwise_initializer: initializer of the pointwise kernel; default
      the original head's truncated normal (stddev 0.06).

  Returns:
    The output tensor.
  """
  x = depthwise_bn_act(
      x, name=name + "_depthwise", norm=norm, epsilon=epsilon,
      kernel_size=kernel_size, strides=strides, rate=rate,
      activation=activation, explicit_padding=explicit_padding,
      depthwise_initializer=(depthwise_initializer or
                             truncated_normal(HEAD_DEPTHWISE_STDDEV)))
  return conv_bn_act(x, filters, 1, name=name + "_pointwise", norm=norm,
                     epsilon=epsilon, activation=activation,
                     kernel_initializer=(pointwise_initializer or
                                         truncated_normal(HEAD_POINTWISE_STDDEV)))


@keras.saving.register_keras_serializable(package="deeplab")
class ResizeBilinear(keras.layers.Layer):
  """Bilinear resize of ``inputs`` to the spatial size of ``reference``.

  With ``align_corners=True`` (the default) the convention of the original
  DeepLab: every ``tf.image.resize_bilinear`` call in it passes
  ``align_corners=True``, and so do the RESIZE_BILINEAR ops of the released
  TFLite files converted from it. With inputs of size ``output_stride * k +
  1`` the corner-aligned grids of all feature maps coincide exactly, which
  is why the original's crop sizes are 513, 769, 1025... Keeping the same
  convention is what lets released weights reproduce their logits to 1e-3;
  other sizes work, with the same mapping. ``align_corners=False``
  (``half_pixel_centers=False``, TensorFlow's legacy mapping) is that of
  files converted without aligned corners, whose grids line up at sizes
  ``output_stride * k`` (MLPerf's 512x512 DeepLabv3+).

  Args:
    align_corners: the resize's mapping (``ModelArgs.align_corners``).
    **kwargs: Keras' layer arguments (``name``, ``dtype``).
  """

  def __init__(self, align_corners: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.align_corners = align_corners

  def call(self, inputs, reference):
    if kernels.converting() and tuple(inputs.shape[1:3]) == (1, 1):
      # Every output pixel of a bilinear resize of one pixel is that pixel,
      # under either mapping (kernels.converted_graph says why).
      return tf.broadcast_to(inputs, tf.concat(
          [tf.shape(reference)[:3], tf.shape(inputs)[3:]], 0))
    size = tf.shape(reference)[1:3]
    resized = tf.raw_ops.ResizeBilinear(
        images=inputs, size=size, align_corners=self.align_corners,
        half_pixel_centers=False)
    return tf.cast(resized, inputs.dtype)

  def get_config(self):
    return {**super().get_config(), "align_corners": self.align_corners}

  def compute_output_shape(self, inputs_shape, reference_shape):
    return (inputs_shape[0], reference_shape[1], reference_shape[2],
            inputs_shape[3])


def aspp(features, *, filters: int, atrous_rates: Sequence[int],
         separable: bool, image_pooling: bool, dropout_rate: float,
         norm: BatchNormSpec, epsilon: float, align_corners: bool = True):
  """Atrous spatial pyramid pooling with image-level features.

  Branch order is the original's (it fixes the input-channel order of
  ``concat_projection``): image pooling, ``aspp0`` (1x1), then ``aspp1..n``
  (3x3, atrous). An empty ``atrous_rates`` leaves image pooling + ``aspp0``,
  the head of the released MobileNetV2 checkpoints.

  Args:
    features: backbone output at the output stride.
    filters: channels of every branch and of the projection (256).
    atrous_rates: rates of the 3x3 branches, e.g. (6, 12, 18) at OS 16.
    separable: atrous separable convs in the 3x3 branches (else plain convs).
    image_pooling: add the global-average-pool branch.
    dropout_rate: dropout after the projection, active in training only.
    norm: how to make batch norm layers.
    epsilon: batch norm epsilon of the head (1e-5 in the original).
    align_corners: mapping of the image-pooling upsample (``ResizeBilinear``).

  Returns:
    Tensor [batch, h, w, filters] at the output stride.
  """
  branches = []
  if image_pooling:
    pooled = keras.layers.GlobalAveragePooling2D(
        keepdims=True, name="image_pooling.pool")(features)
    pooled = conv_bn_act(pooled, filters, 1, name="image_pooling", norm=norm,
                         epsilon=epsilon, kernel_initializer=HEAD_CONV_INITIALIZER)
    branches.append(
        ResizeBilinear(align_corners, name="image_pooling.upsample")(
            pooled, features))
  branches.append(conv_bn_act(features, filters, 1, name="aspp0", norm=norm,
                              epsilon=epsilon,
                              kernel_initializer=HEAD_CONV_INITIALIZER))
  for i, rate in enumerate(atrous_rates, start=1):
    if separable:
      branch = atrous_separable_conv(features, filters, name=f"aspp{i}",
                                     rate=rate, norm=norm, epsilon=epsilon)
    else:
      branch = conv_bn_act(features, filters, 3, name=f"aspp{i}", rate=rate,
                           norm=norm, epsilon=epsilon,
                           kernel_initializer=HEAD_CONV_INITIALIZER)
    branches.append(branch)
  x = (keras.layers.Concatenate(name="aspp.concat")(branches)
       if len(branches) > 1 else branches[0])
  x = conv_bn_act(x, filters, 1, name="concat_projection", norm=norm,
                  epsilon=epsilon, kernel_initializer=HEAD_CONV_INITIALIZER)
  return keras.layers.Dropout(dropout_rate,
                              name="concat_projection_dropout")(x)


def decoder(encoder_output, low_level_features: Sequence, *,
            low_level_filters: int, filters: int, separable: bool,
            norm: BatchNormSpec, epsilon: float, align_corners: bool = True):
  """The DeepLabv3+ decoder: refine the encoder output with low-level features.

  One stage per tensor of ``low_level_features`` (the paper's decoder: one,
  the stride-4 features), each as the original's ``refine_by_decoder``:
  project the features to ``low_level_filters`` (48) with a 1x1 conv,
  upsample the running output to their size, concatenate, and apply two 3x3
  convs of ``filters`` (256) channels, separable or plain. The first stage
  has the original's unsuffixed names (``decoder/feature_projection0``),
  stage k > 0 adds ``_k`` to them (``decoder/decoder_conv0_1``). The
  upsampling maps pixels by ``align_corners`` (``ResizeBilinear``).

  Returns:
    Tensor [batch, h / s, w / s, filters], s the last stage's stride.
  """
  x = encoder_output
  for stage, features in enumerate(low_level_features):
    suffix = f"_{stage}" if stage else ""
    projected = conv_bn_act(features, low_level_filters, 1,
                            name=f"decoder.feature_projection0{suffix}",
                            norm=norm, epsilon=epsilon,
                            kernel_initializer=HEAD_CONV_INITIALIZER)
    upsampled = ResizeBilinear(align_corners,
                               name=f"decoder.upsample{suffix}")(x, projected)
    x = keras.layers.Concatenate(name=f"decoder.concat{suffix}")(
        [upsampled, projected])
    for i in range(2):
      if separable:
        x = atrous_separable_conv(x, filters,
                                  name=f"decoder.decoder_conv{i}{suffix}",
                                  norm=norm, epsilon=epsilon)
      else:
        # slim.repeat names the two convs decoder_conv0/decoder_conv0_{1,2}
        # (decoder_conv0_1/decoder_conv0_1_{1,2} in stage 1).
        repeat = f"decoder_conv0{suffix}"
        x = conv_bn_act(x, filters, 3,
                        name=f"decoder.{repeat}.{repeat}_{i + 1}",
                        norm=norm, epsilon=epsilon,
                        kernel_initializer=HEAD_CONV_INITIALIZER)
  return x
