"""Kernel routes: Keras layers computed through faster TensorFlow kernels.

Each class here is a Keras layer with the same variables, the same values
and the same update rule as the Keras layer it extends; only the
TensorFlow ops that compute it differ, to reach kernels that are faster on
CPUs (oneDNN) and unchanged elsewhere. ``tests/test_layer_kernels.py``
checks each against the Keras layer and checks that the route is taken;
``bench/kernel_routes.py`` times each (figures in bench/README.md).

- ``FusedBatchNorm``: batch norm on ``FusedBatchNormV3`` (bfloat16 inputs
  padded to a multiple of 16 channels); ``TwoPassSyncBatchNorm`` its
  cross-replica form.
- ``MatMulPointwiseConv``: a 1x1 stride-1 convolution as one matrix product.
- ``Float32GradDepthwiseConv``: strided bfloat16 depthwise convolutions
  whose training gradients are computed in float32; inside
  ``converted_graph()``, atrous ones as one dilated convolution.
- ``ReLUOfSum``: ``max(x, 0)`` where grappler's remapper breaks on ``Relu``.

``converting()`` tells the other code that traces differently for a
converter (``deeplab.layers.ResizeBilinear``, ``softmax``) that it is
inside ``converted_graph()``.

The three oneDNN workarounds (bfloat16 channel padding, the 1x1 matrix
product, float32 depthwise gradients) were measured on CPUs only; on GPUs
and TPUs (cuDNN, XLA) they would only add ops, so they apply where the
layer runs on CPUs (``cpu_routes_apply``), decided when the layer's call is
traced. Everywhere else the layers compute exactly what Keras does.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import keras
import tensorflow as tf

_ACCELERATORS = ("GPU", "TPU")
_TRACING = threading.local()


@contextlib.contextmanager
def converted_graph():
  """Layers called inside trace for a converter (tf2onnx), not for TensorFlow.

  ``tf.nn.depthwise_conv2d`` computes an atrous depthwise convolution as
  ``SpaceToBatchND``, a plain convolution and ``BatchToSpaceND``, because
  TensorFlow's own CPU kernel rejects dilations (only oneDNN's runs them).
  A converter copies that form into its file: in ONNX it became
  ``SpaceToDepth``/``DepthToSpace`` with pads, slices and transposes, a
  third of ONNX Runtime's time for MobileNetV2 (bench/README.md). Inside this
  context ``Float32GradDepthwiseConv`` traces its atrous stride-1 calls as
  one ``DepthwiseConv2dNative`` with ``dilations``, which ONNX's ``Conv``
  runs natively on every runtime. ``ResizeBilinear`` traces its resize of a
  1x1 map (the image pooling's) as a broadcast: OpenVINO's shape inference
  fails on ONNX's ``Resize`` to a size read from another tensor's shape.
  ``softmax`` is traced as the ops it is made of. The values are the same;
  a graph traced inside is for conversion only (TensorFlow without oneDNN
  cannot run it).
  """
  previous = converting()
  _TRACING.converted = True
  try:
    yield
  finally:
    _TRACING.converted = previous


def converting() -> bool:
  """True while layers are traced inside ``converted_graph()``."""
  return getattr(_TRACING, "converted", False)


def softmax(logits):
  """``tf.nn.softmax`` over the last axis; inside ``converted_graph()`` as
  the reductions and elementwise ops it is made of.

  tf2onnx turns the graph to ONNX's channels-first layout around the
  final resize, so a ``Softmax`` node would run over axis 1 of [b,
  classes, h, w], for which ONNX Runtime's kernel transposes: 108 of 255
  ms of a MobileNetV2 at 513x513 (``bench/profile_ops.py --mode=onnx``).
  The same function as five ops took the call from 233 to 124 ms at batch
  1 and 2.10 to 1.17 s at batch 8 (AMD EPYC, 2 cores), with the same labels
  and probabilities to 2e-8.
  """
  if not converting():
    return tf.nn.softmax(logits)
  exp = tf.exp(logits - tf.reduce_max(logits, axis=-1, keepdims=True))
  return exp / tf.reduce_sum(exp, axis=-1, keepdims=True)


@functools.lru_cache(maxsize=None)
def _accelerator_visible() -> bool:
  # Logical devices are fixed once TensorFlow has started: ask once.
  return any(tf.config.list_logical_devices(kind) for kind in _ACCELERATORS)


def cpu_routes_apply() -> bool:
  """True where the layers being called run on CPUs (the oneDNN routes).

  Under a ``tf.distribute`` strategy (TPUStrategy, MirroredStrategy over
  GPUs or CPUs, multi-worker) the strategy's devices decide; outside one,
  TensorFlow places ops on a GPU or TPU whenever one is visible.
  """
  if tf.distribute.has_strategy():
    devices = tf.distribute.get_strategy().extended.worker_devices
    return not any(tf.DeviceSpec.from_string(d).device_type in _ACCELERATORS
                   for d in devices)
  return not _accelerator_visible()



@keras.saving.register_keras_serializable(package="deeplab")
class FusedBatchNorm(keras.layers.BatchNormalization):
  """Keras batch norm computed by TensorFlow's fused kernel.

  Keras 3 normalizes with separate moments, multiply and add ops in float32
  (casting mixed-precision inputs up and back). The fused kernel
  (``FusedBatchNormV3``) does it in one pass on float32, float16 or bfloat16
  inputs with float32 statistics (docs/notes/speed_work.md has the training-step
  figures). For inference ``deeplab.folding`` removes batch norm
  altogether. Same variables, same update rule
  (``moving = momentum * moving + (1 - momentum) * batch``, with the batch
  variance biased as in Keras); anything the kernel cannot do (masks,
  renorm, another axis, rank other than 4, no scale or center, another
  backend) takes the Keras path.

  ``inference_statistics`` (set on the instance, not saved) normalizes with
  the moving statistics and leaves them alone even when called with
  ``training=True``, while gamma and beta still train: the original's
  ``fine_tune_batch_norm=False`` (``deeplab.training.trainer``).
  """

  inference_statistics = False

  def _fusable(self, inputs, training, mask) -> bool:
    del training
    # Keras 3.14 added renorm; a Keras without it never renormalizes.
    return (mask is None and not getattr(self, "renorm", False) and self.scale and self.center
            and len(inputs.shape) == 4 and self.axis in (-1, 3)
            and keras.backend.backend() == "tensorflow")

  def call(self, inputs, training=None, mask=None):
    training = bool(training and not self.inference_statistics)
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
# generic loop much slower than the padded kernel (bench/README.md).
_BF16_CHANNEL_BLOCK = 16


def fused_batch_norm(x, scale, offset, mean, variance, epsilon: float,
                     training: bool, pad_channels=None):
  """``FusedBatchNormV3`` over the last axis: (y, batch or given mean, variance).

  bfloat16 inputs whose channel count is not a multiple of 16 are padded
  with zero channels (scale 1, offset 0, variance 1) up to the next
  multiple, normalized and sliced back: same values, the fast kernel.
  ``pad_channels`` (default: ``cpu_routes_apply()``) turns that on or off.
  """
  if pad_channels is None:
    pad_channels = cpu_routes_apply()
  channels = x.shape[-1]
  pad = (-channels % _BF16_CHANNEL_BLOCK
         if pad_channels and x.dtype == tf.bfloat16 else 0)
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
class TwoPassSyncBatchNorm(FusedBatchNorm):
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
class MatMulPointwiseConv(keras.layers.Conv2D):
  """A 1x1, stride-1 ``Conv2D`` computed as one matrix product.

  The same layer as ``keras.layers.Conv2D(filters, 1)``: same kernel
  ``[1, 1, in, out]``, same outputs. Over NHWC it is
  ``[N*H*W, in] @ [in, out]``, and as a ``MatMul`` its two gradients are
  matrix products too. oneDNN's bfloat16 convolution gradient with respect
  to the kernel runs at about float32 speed, while its bfloat16 matrix
  products use the fast bfloat16 units (bench/README.md,
  bench/kernel_routes.py). Folded inference models keep
  ``Conv2D``, which grappler fuses with its bias and ReLU; off the CPU the
  layer is Keras' ``Conv2D``.
  """

  def __init__(self, filters, kernel_size=1, **kwargs):
    super().__init__(filters, kernel_size, **kwargs)
    if (self.kernel_size != (1, 1) or self.strides != (1, 1)
        or self.groups != 1 or self.data_format != "channels_last"):
      raise ValueError(
          f"{self.name}: MatMulPointwiseConv needs kernel_size 1, strides 1, "
          f"groups 1 and channels_last, got kernel_size {self.kernel_size}, "
          f"strides {self.strides}, groups {self.groups}, {self.data_format}")

  def call(self, inputs):
    if not cpu_routes_apply():
      return super().call(inputs)
    channels = self.kernel.shape[2]
    kernel = tf.cast(tf.reshape(self.kernel, [channels, self.filters]),
                     self.compute_dtype)
    y = tf.matmul(tf.reshape(inputs, [-1, channels]), kernel)
    if self.use_bias:
      y = tf.nn.bias_add(y, tf.cast(self.bias, self.compute_dtype))
    y = tf.reshape(y, tf.concat([tf.shape(inputs)[:-1], [self.filters]], 0))
    return y if self.activation is None else self.activation(y)


@keras.saving.register_keras_serializable(package="deeplab")
class Float32GradDepthwiseConv(keras.layers.DepthwiseConv2D):
  """``keras.layers.DepthwiseConv2D`` whose strided bfloat16 gradients run in float32.

  oneDNN has no fast bfloat16 kernel for the input gradient of a strided
  depthwise convolution (slower than float32 at Xception's and
  MobileNetV2's stride-2 layers, bench/README.md). In training calls under
  a bfloat16 compute dtype with a stride above 1, the forward pass stays in
  bfloat16 and the gradients are computed in float32 and cast back.
  Everything else, and any call off the CPU, is the Keras layer.
  """

  def call(self, inputs, training=None):
    if (converting() and max(self.dilation_rate) > 1
        and max(self.strides) == 1):
      return self._dilated(inputs)
    # Only training needs gradients; elsewhere the wrapper would only keep
    # grappler from fusing the convolution with its bias and activation.
    if (not training or self.compute_dtype != "bfloat16"
        or max(self.strides) == 1 or not cpu_routes_apply()):
      return super().call(inputs)
    convolve = functools.partial(
        keras.ops.depthwise_conv, strides=self.strides, padding=self.padding,
        dilation_rate=self.dilation_rate, data_format=self.data_format)
    outputs = _with_float32_gradients(convolve)(
        tf.cast(inputs, self.compute_dtype),
        tf.cast(self.kernel, self.compute_dtype))
    return self._bias_and_activation(outputs)

  def _bias_and_activation(self, outputs):
    """What the Keras layer does after its convolution."""
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, tf.cast(tf.reshape(self.bias, [-1]),
                                                self.compute_dtype))
    return outputs if self.activation is None else self.activation(outputs)

  def _dilated(self, inputs):
    """The atrous convolution as one dilated op (``converted_graph``)."""
    if self.data_format != "channels_last" or self.depth_multiplier != 1:
      raise ValueError(
          f"{self.name}: a converted atrous depthwise convolution needs "
          f"channels_last and depth_multiplier 1, got {self.data_format} and "
          f"{self.depth_multiplier}")
    # "same" as explicit pads: ONNX Runtime refuses dilations with automatic
    # padding; at stride 1 they do not depend on the input's size.
    pads = [0, 0, 0, 0, 0, 0, 0, 0]
    if self.padding == "same":
      for axis, (size, rate) in enumerate(zip(self.kernel_size, self.dilation_rate)):
        total = rate * (size - 1)
        pads[2 + 2 * axis:4 + 2 * axis] = [total // 2, total - total // 2]
    outputs = tf.raw_ops.DepthwiseConv2dNative(
        input=tf.cast(inputs, self.compute_dtype),
        filter=tf.cast(self.kernel, self.compute_dtype), strides=[1, 1, 1, 1],
        padding="EXPLICIT", explicit_paddings=pads,
        dilations=[1, *self.dilation_rate, 1])
    return self._bias_and_activation(outputs)


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
