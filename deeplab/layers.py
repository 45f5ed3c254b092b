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
import functools
from typing import Callable, Optional, Sequence

import keras
import tensorflow as tf

SCOPE_SEPARATOR = "."


def scope(*parts: str) -> str:
  """Joins original-checkpoint scope parts into a Keras layer name."""
  return SCOPE_SEPARATOR.join(p for p in parts if p)


@keras.saving.register_keras_serializable(package="deeplab")
class BatchNormalization(keras.layers.BatchNormalization):
  """Keras batch norm computed by TensorFlow's fused kernel.

  Keras 3 normalizes with separate moments, multiply and add ops in float32
  (casting mixed-precision inputs up and back). The fused kernel
  (``FusedBatchNormV3``) does it in one pass on float32, float16 or bfloat16
  inputs with float32 statistics (training steps 25-35% faster, see
  bench/README.md). For inference ``deeplab.folding`` removes batch norm
  altogether. Same variables, same update rule
  (``moving = momentum * moving + (1 - momentum) * batch``, with the batch
  variance biased as in Keras); anything the kernel cannot do (masks,
  renorm, another axis, rank other than 4, no scale or center, another
  backend) takes the Keras path.
  """

  def _fusable(self, inputs, training, mask) -> bool:
    del training
    return (mask is None and not self.renorm and self.scale and self.center
            and len(inputs.shape) == 4 and self.axis in (-1, 3)
            and keras.backend.backend() == "tensorflow")

  def call(self, inputs, training=None, mask=None):
    if not self._fusable(inputs, training, mask):
      return super().call(inputs, training=training, mask=mask)
    x = tf.cast(inputs, self.compute_dtype)
    training = bool(training and self.trainable)
    if training:
      mean = variance = tf.constant([], tf.float32)
    else:
      mean, variance = self.moving_mean.value, self.moving_variance.value
    y, mean, variance = fused_batch_norm(x, self.gamma.value, self.beta.value,
                                         mean, variance, self.epsilon, training)
    if training:
      # The kernel's batch variance is the unbiased estimate (n / (n - 1));
      # Keras and the normalization itself use the biased one.
      count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
      variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
      decay = 1.0 - self.momentum
      self.moving_mean.assign(self.moving_mean * self.momentum + mean * decay)
      self.moving_variance.assign(
          self.moving_variance * self.momentum + variance * decay)
    return y


# oneDNN's bfloat16 batch norm kernels need the channel count to be a multiple
# of this; other counts (Xception's 728, MobileNetV2's 24) fall back to a
# generic loop 3-7x slower than the padded kernel (bench/README.md).
_BF16_CHANNEL_BLOCK = 16


def fused_batch_norm(x, scale, offset, mean, variance, epsilon: float,
                     training: bool):
  """``FusedBatchNormV3`` over the last axis: (y, batch or given mean, variance).

  bfloat16 inputs whose channel count is not a multiple of 16 are padded
  with zero channels (scale 1, offset 0, variance 1) up to the next
  multiple, normalized and sliced back: same values, the fast kernel.
  """
  channels = x.shape[-1]
  pad = -channels % _BF16_CHANNEL_BLOCK if x.dtype == tf.bfloat16 else 0
  if pad:
    x = tf.pad(x, [[0, 0]] * (len(x.shape) - 1) + [[0, pad]])
    scale = tf.pad(scale, [[0, pad]], constant_values=1.0)
    offset = tf.pad(offset, [[0, pad]])
    if not training:
      mean = tf.pad(mean, [[0, pad]])
      variance = tf.pad(variance, [[0, pad]], constant_values=1.0)
  y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
      x=x, scale=scale, offset=offset, mean=mean, variance=variance,
      epsilon=epsilon, is_training=training)
  if pad:
    # tf.slice, whose gradient is a Pad; StridedSlice's gradient kernel is
    # several times slower in bfloat16.
    y = tf.slice(y, [0] * len(x.shape), [-1] * (len(x.shape) - 1) + [channels])
    mean, variance = mean[:channels], variance[:channels]
  return y, mean, variance


@keras.saving.register_keras_serializable(package="deeplab")
class SyncBatchNormalization(BatchNormalization):
  """Batch norm whose training statistics span every replica in sync.

  Keras' own ``synchronized=True`` all-reduces sum(x) and sum(x^2) and takes
  E[x^2] - E[x]^2, which cancels catastrophically in float32 when a channel's
  mean is large against its spread (relative errors near 1e-4 in the logits of
  a MobileNetV2 head). This layer reduces in two passes instead, the global
  mean first and then the summed squared deviations from it, so N replicas of
  batch B compute what one replica of batch N*B would, up to summation order.
  With one replica (or outside ``strategy.run``) it is the plain layer.
  """

  def _fusable(self, inputs, training, mask) -> bool:
    context = tf.distribute.get_replica_context()
    synchronizing = (training and self.trainable and context is not None
                     and context.num_replicas_in_sync > 1)
    return not synchronizing and super()._fusable(inputs, training, mask)

  def _moments(self, inputs, mask):
    context = tf.distribute.get_replica_context()
    if mask is not None or context is None or context.num_replicas_in_sync == 1:
      return super()._moments(inputs, mask)
    x = tf.cast(inputs, tf.float32)
    axes = list(self._reduction_axes)
    count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)
    total = context.all_reduce(
        tf.distribute.ReduceOp.SUM,
        tf.concat([tf.reduce_sum(x, axis=axes), count[None]], axis=0))
    global_count = total[-1]
    mean = total[:-1] / tf.maximum(global_count, 1.0)
    squared = context.all_reduce(
        tf.distribute.ReduceOp.SUM,
        tf.reduce_sum(tf.square(x - mean), axis=axes))
    variance = squared / tf.maximum(global_count, 1.0)
    return tf.cast(mean, inputs.dtype), tf.cast(variance, inputs.dtype)


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
    layer = SyncBatchNormalization if self.synchronized else BatchNormalization
    return layer(momentum=self.momentum, epsilon=epsilon, name=name)


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


@keras.saving.register_keras_serializable(package="deeplab")
class ReLUOfSum(keras.layers.Layer):
  """ReLU of a residual sum that something else also reads: ``max(x, 0)``.

  The same values as ``keras.layers.ReLU``, built from a ``Maximum`` op
  instead of ``Relu``. TensorFlow's graph remapper (2.21, CPU) fuses
  Conv2D + BiasAdd + Add + Relu into one op without checking that the Add
  has no other reader; where it has one (Xception's unit input, read by the
  next unit's ReLU and by its shortcut) the rewrite fails ("Mutation::Apply
  error: fanout ... exist for missing node") and the remapper gives up on
  the whole graph, leaving every convolution of the folded model without
  its bias and ReLU fusion. ``tests/test_folding.py`` checks that grappler
  fuses the folded graphs' convolutions.
  """

  def call(self, inputs):
    return tf.maximum(inputs, tf.zeros((), inputs.dtype))


@keras.saving.register_keras_serializable(package="deeplab")
class PointwiseConv2D(keras.layers.Conv2D):
  """A 1x1, stride-1 ``Conv2D`` computed as one matrix product.

  The same layer as ``keras.layers.Conv2D(filters, 1)``: same kernel
  ``[1, 1, in, out]``, same outputs. Over NHWC it is
  ``[N*H*W, in] @ [in, out]``, and as a ``MatMul`` its two gradients are
  matrix products too. oneDNN's bfloat16 convolution gradient with respect
  to the kernel runs at about float32 speed, while its bfloat16 matrix
  products are up to 3.6x faster than float32 ones: bfloat16 training steps
  of Xception-65 and ResNet-50 take 14-17% less time, float32 ones the same
  (bench/README.md, bench/kernel_routes.py). Folded inference models keep
  ``Conv2D``, which grappler fuses with its bias and ReLU.
  """

  def __init__(self, filters, kernel_size=1, **kwargs):
    super().__init__(filters, kernel_size, **kwargs)
    if (self.kernel_size != (1, 1) or self.strides != (1, 1)
        or self.groups != 1 or self.data_format != "channels_last"):
      raise ValueError(
          f"{self.name}: PointwiseConv2D needs kernel_size 1, strides 1, "
          f"groups 1 and channels_last, got kernel_size {self.kernel_size}, "
          f"strides {self.strides}, groups {self.groups}, {self.data_format}")

  def call(self, inputs):
    channels = self.kernel.shape[2]
    kernel = tf.cast(tf.reshape(self.kernel, [channels, self.filters]),
                     self.compute_dtype)
    y = tf.matmul(tf.reshape(inputs, [-1, channels]), kernel)
    if self.use_bias:
      y = tf.nn.bias_add(y, tf.cast(self.bias, self.compute_dtype))
    y = tf.reshape(y, tf.concat([tf.shape(inputs)[:-1], [self.filters]], 0))
    return y if self.activation is None else self.activation(y)


@keras.saving.register_keras_serializable(package="deeplab")
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
  """``keras.layers.DepthwiseConv2D`` whose strided bfloat16 gradients run in float32.

  oneDNN has no fast bfloat16 kernel for the input gradient of a strided
  depthwise convolution (3-4x slower than float32 at Xception's and
  MobileNetV2's stride-2 layers, bench/README.md). In training calls under
  a bfloat16 compute dtype with a stride above 1, the forward pass stays in
  bfloat16 and the gradients are computed in float32 and cast back.
  Everything else is the Keras layer.
  """

  def call(self, inputs, training=None):
    # Only training needs gradients; elsewhere the wrapper would only keep
    # grappler from fusing the convolution with its bias and activation.
    if (not training or self.compute_dtype != "bfloat16"
        or max(self.strides) == 1):
      return super().call(inputs)
    convolve = functools.partial(
        keras.ops.depthwise_conv, strides=self.strides, padding=self.padding,
        dilation_rate=self.dilation_rate, data_format=self.data_format)
    outputs = _with_float32_gradients(convolve)(
        tf.cast(inputs, self.compute_dtype),
        tf.cast(self.kernel, self.compute_dtype))
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, tf.cast(tf.reshape(self.bias, [-1]),
                                                self.compute_dtype))
    return outputs if self.activation is None else self.activation(outputs)


def _with_float32_gradients(fn):
  """``fn(x, kernel)`` as it is, with its gradients computed in float32."""

  @tf.custom_gradient
  def wrapped(x, kernel):
    def grad(dy):
      x32, kernel32 = tf.cast(x, tf.float32), tf.cast(kernel, tf.float32)
      with tf.GradientTape() as tape:
        tape.watch([x32, kernel32])
        y32 = fn(x32, kernel32)
      dx, dkernel = tape.gradient(y32, [x32, kernel32],
                                  output_gradients=tf.cast(dy, tf.float32))
      return tf.cast(dx, x.dtype), tf.cast(dkernel, kernel.dtype)
    return fn(x, kernel), grad

  return wrapped


def conv_bn_act(x, filters: int, kernel_size: int, *, name: str,
                norm: BatchNormSpec, epsilon: float, strides: int = 1,
                rate: int = 1, activation: Optional[str] = "relu",
                explicit_padding: bool = False):
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

  Returns:
    The output tensor.
  """
  padding = "same"
  if explicit_padding and strides > 1:
    x = fixed_padding(x, kernel_size, rate, name)
    padding = "valid"
  pointwise = kernel_size == 1 and strides == 1 and not norm.folded
  conv = PointwiseConv2D if pointwise else keras.layers.Conv2D
  x = conv(
      filters, kernel_size, strides=strides, dilation_rate=rate,
      padding=padding, use_bias=norm.folded, kernel_initializer="he_normal",
      name=name)(x)
  x = norm.apply(x, name + ".BatchNorm", epsilon)
  return activation_layer(x, activation, name)


def depthwise_bn_act(x, *, name: str, norm: BatchNormSpec, epsilon: float,
                     kernel_size: int = 3, strides: int = 1, rate: int = 1,
                     activation: Optional[str] = "relu",
                     explicit_padding: bool = False):
  """Depthwise convolution (no bias), batch norm, activation."""
  padding = "same"
  if explicit_padding and strides > 1:
    x = fixed_padding(x, kernel_size, rate, name)
    padding = "valid"
  x = DepthwiseConv2D(
      kernel_size, strides=strides, dilation_rate=rate, padding=padding,
      use_bias=norm.folded, depthwise_initializer="he_normal", name=name)(x)
  x = norm.apply(x, name + ".BatchNorm", epsilon)
  return activation_layer(x, activation, name)


def atrous_separable_conv(x, filters: int, *, name: str, norm: BatchNormSpec,
                          epsilon: float, kernel_size: int = 3,
                          strides: int = 1, rate: int = 1,
                          activation: Optional[str] = "relu",
                          explicit_padding: bool = False):
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

  Returns:
    The output tensor.
  """
  x = depthwise_bn_act(
      x, name=name + "_depthwise", norm=norm, epsilon=epsilon,
      kernel_size=kernel_size, strides=strides, rate=rate,
      activation=activation, explicit_padding=explicit_padding)
  return conv_bn_act(x, filters, 1, name=name + "_pointwise", norm=norm,
                     epsilon=epsilon, activation=activation)


@keras.saving.register_keras_serializable(package="deeplab")
class ResizeBilinear(keras.layers.Layer):
  """Bilinear resize of ``inputs`` to the spatial size of ``reference``.

  Uses ``align_corners=True``, the convention of the original DeepLab (every
  ``tf.image.resize_bilinear`` call in it passes ``align_corners=True``, and
  the released TFLite model's RESIZE_BILINEAR ops carry that flag). With
  inputs of size ``output_stride * k + 1`` the corner-aligned grids of all
  feature maps coincide exactly, which is why the original's crop sizes are
  513, 769, 1025... Keeping the same convention is what lets released weights
  reproduce their logits to 1e-3; other sizes work, with the same mapping.
  """

  def call(self, inputs, reference):
    size = tf.shape(reference)[1:3]
    resized = tf.raw_ops.ResizeBilinear(
        images=inputs, size=size, align_corners=True, half_pixel_centers=False)
    return tf.cast(resized, inputs.dtype)

  def compute_output_shape(self, inputs_shape, reference_shape):
    return (inputs_shape[0], reference_shape[1], reference_shape[2],
            inputs_shape[3])


def aspp(features, *, filters: int, atrous_rates: Sequence[int],
         separable: bool, image_pooling: bool, dropout_rate: float,
         norm: BatchNormSpec, epsilon: float):
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

  Returns:
    Tensor [batch, h, w, filters] at the output stride.
  """
  branches = []
  if image_pooling:
    pooled = keras.layers.GlobalAveragePooling2D(
        keepdims=True, name="image_pooling.pool")(features)
    pooled = conv_bn_act(pooled, filters, 1, name="image_pooling", norm=norm,
                         epsilon=epsilon)
    branches.append(
        ResizeBilinear(name="image_pooling.upsample")(pooled, features))
  branches.append(conv_bn_act(features, filters, 1, name="aspp0", norm=norm,
                              epsilon=epsilon))
  for i, rate in enumerate(atrous_rates, start=1):
    if separable:
      branch = atrous_separable_conv(features, filters, name=f"aspp{i}",
                                     rate=rate, norm=norm, epsilon=epsilon)
    else:
      branch = conv_bn_act(features, filters, 3, name=f"aspp{i}", rate=rate,
                           norm=norm, epsilon=epsilon)
    branches.append(branch)
  x = (keras.layers.Concatenate(name="aspp.concat")(branches)
       if len(branches) > 1 else branches[0])
  x = conv_bn_act(x, filters, 1, name="concat_projection", norm=norm,
                  epsilon=epsilon)
  return keras.layers.Dropout(dropout_rate,
                              name="concat_projection_dropout")(x)


def decoder(encoder_output, low_level_features, *, low_level_filters: int,
            filters: int, separable: bool, norm: BatchNormSpec,
            epsilon: float):
  """The DeepLabv3+ decoder: refine the encoder output with stride-4 features.

  Projects the low-level features to ``low_level_filters`` (48) with a 1x1
  conv, upsamples the encoder output to their size, concatenates, and applies
  two 3x3 convs of ``filters`` (256) channels, separable or plain.

  Returns:
    Tensor [batch, h/4, w/4, filters].
  """
  projected = conv_bn_act(low_level_features, low_level_filters, 1,
                          name="decoder.feature_projection0", norm=norm,
                          epsilon=epsilon)
  upsampled = ResizeBilinear(name="decoder.upsample")(encoder_output,
                                                      projected)
  x = keras.layers.Concatenate(name="decoder.concat")([upsampled, projected])
  for i in range(2):
    if separable:
      x = atrous_separable_conv(x, filters, name=f"decoder.decoder_conv{i}",
                                norm=norm, epsilon=epsilon)
    else:
      # slim.repeat names the two convs decoder_conv0/decoder_conv0_{1,2}.
      x = conv_bn_act(x, filters, 3, name=f"decoder.decoder_conv0.decoder_conv0_{i + 1}",
                      norm=norm, epsilon=epsilon)
  return x
