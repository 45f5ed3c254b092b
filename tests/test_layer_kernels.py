"""The layers that route around slow oneDNN kernels compute what Keras does.

``MatMulPointwiseConv`` (1x1 conv as a matrix product), bfloat16 batch norm
with channels padded to a multiple of 16, and ``Float32GradDepthwiseConv`` with float32
gradients when strided under bfloat16: each must give Keras' values and
gradients, and each must really take its route (checked in the traced graph).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import kernels
from deeplab import layers
from deeplab import model as model_lib


def _op_types(fn, *args):
  return [op.type for op in tf.function(fn).get_concrete_function(*args)
          .graph.get_operations()]


def _values_and_gradients(layer, x, weights):
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = layer(x, training=True)
    loss = tf.reduce_sum(tf.cast(y, tf.float32) * weights)
  grads = tape.gradient(loss, [x] + layer.trainable_variables)
  return [np.asarray(tf.cast(t, tf.float32)) for t in [y] + grads]


@pytest.mark.parametrize("use_bias, activation", [(False, None), (True, "relu")])
def test_pointwise_conv_equals_keras_conv2d(use_bias, activation):
  rng = np.random.default_rng(0)
  x = tf.constant(rng.normal(size=(2, 7, 5, 6)).astype("float32"))
  made = [cls(4, 1, use_bias=use_bias, activation=activation,
              bias_initializer="random_normal")
          for cls in (keras.layers.Conv2D, kernels.MatMulPointwiseConv)]
  made[0].build(x.shape)
  made[1].build(x.shape)
  made[1].set_weights(made[0].get_weights())
  weights = rng.normal(size=(2, 7, 5, 4)).astype("float32")
  for want, got in zip(*(_values_and_gradients(m, x, weights) for m in made)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  ops = _op_types(made[1], tf.TensorSpec([None, None, None, 6]))
  assert "MatMul" in ops and "Conv2D" not in ops


def test_pointwise_conv_in_bfloat16_and_unknown_sizes():
  layer = kernels.MatMulPointwiseConv(3, dtype="mixed_bfloat16")
  fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 5])])
  y = fn(tf.ones((1, 9, 4, 5)))
  assert y.dtype == tf.bfloat16 and y.shape == (1, 9, 4, 3)
  assert layer.kernel.dtype == "float32"


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(strides=2),
                                    dict(groups=2)])
def test_pointwise_conv_rejects_other_convolutions(kwargs):
  with pytest.raises(ValueError, match="pw_bad: MatMulPointwiseConv needs"):
    kernels.MatMulPointwiseConv(4, name="pw_bad", **kwargs)


def test_model_uses_matrix_products_for_pointwise_convs_until_folded():
  model = model_lib.DeepLab(num_classes=3, backbone="mobilenet_v2",
                            depth_multiplier=0.35, atrous_rates=(),
                            use_decoder=False)
  project = model.get_layer("MobilenetV2.expanded_conv_1.project")
  assert isinstance(project, kernels.MatMulPointwiseConv)
  folded = model_lib.DeepLab.from_config(
      {**model.get_config(), "fold_batch_norm": True})
  assert type(folded.get_layer(project.name)) is keras.layers.Conv2D


def _reference_batch_norm(x, scale, offset, mean, variance, training):
  y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
      x=x, scale=scale, offset=offset, mean=mean, variance=variance,
      epsilon=1e-3, is_training=training)
  return y, mean, variance


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("channels", [24, 728])
def test_bfloat16_batch_norm_padding_changes_nothing(training, channels):
  rng = np.random.default_rng(channels)
  x = tf.constant((rng.normal(size=(2, 5, 3, channels)) * 3 + 1), tf.bfloat16)
  scale, offset, mean, variance = (
      tf.constant(rng.uniform(0.5, 2, channels), tf.float32) for _ in range(4))
  if training:
    mean = variance = tf.constant([], tf.float32)
  dy = tf.constant(rng.normal(size=x.shape), tf.bfloat16)
  results = []
  for fn in (_reference_batch_norm, kernels.fused_batch_norm):
    def run(x, scale, offset, fn=fn):
      if fn is kernels.fused_batch_norm:
        return fn(x, scale, offset, mean, variance, 1e-3, training)
      return fn(x, scale, offset, mean, variance, training)
    with tf.GradientTape() as tape:
      tape.watch([x, scale, offset])
      y, batch_mean, batch_variance = run(x, scale, offset)
    grads = tape.gradient(y, [x, scale, offset], output_gradients=dy)
    results.append([np.asarray(tf.cast(t, tf.float32))
                    for t in [y, batch_mean, batch_variance] + grads])
  for want, got in zip(*results):
    assert got.shape == want.shape
    # Both are bfloat16 results of float32 arithmetic: at most an ulp or so.
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)
  graph = tf.function(
      lambda v: kernels.fused_batch_norm(v, scale, offset, mean, variance,
                                        1e-3, training)).get_concrete_function(
          tf.TensorSpec(x.shape, tf.bfloat16)).graph
  [norm] = [op for op in graph.get_operations()
            if op.type == "FusedBatchNormV3"]
  assert norm.inputs[0].shape[-1] == -channels // 16 * -16
  # Sliced back with Slice (StridedSlice's gradient is slow in bfloat16).
  assert [c.type for c in norm.outputs[0].consumers()] == ["Slice"]


def test_batch_norm_pads_only_bfloat16_with_odd_channel_counts():
  def ops(dtype, channels):
    scale = tf.ones([channels])
    return _op_types(
        lambda v: kernels.fused_batch_norm(v, scale, scale, scale, scale, 1e-3,
                                          False),
        tf.TensorSpec([1, 4, 4, channels], dtype))
  assert "Pad" in ops(tf.bfloat16, 24)
  assert "Pad" not in ops(tf.bfloat16, 32)
  assert "Pad" not in ops(tf.float32, 24)


def test_padded_bfloat16_batch_norm_layer_updates_statistics_like_float32():
  rng = np.random.default_rng(1)
  x = tf.cast(tf.constant(rng.normal(size=(2, 6, 6, 24)) * 2 + 3, tf.float32),
              tf.bfloat16)
  made = [kernels.FusedBatchNorm(momentum=0.5, dtype=policy)
          for policy in ("float32", "mixed_bfloat16")]
  for layer in made:
    layer(tf.cast(x, tf.float32), training=True)
  f32, bf16 = made
  for a, b in zip(bf16.get_weights(), f32.get_weights()):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert not np.allclose(f32.moving_mean.numpy(), 0.0)


@pytest.mark.parametrize("strides, padding", [(2, "valid"), (2, "same"),
                                              (1, "same")])
def test_depthwise_conv_bfloat16_gradients(strides, padding):
  rng = np.random.default_rng(strides)
  x = tf.constant(rng.normal(size=(2, 11, 9, 5)), tf.float32)
  made = [cls(3, strides=strides, padding=padding, dtype=policy)
          for cls, policy in ((keras.layers.DepthwiseConv2D, "float32"),
                              (kernels.Float32GradDepthwiseConv, "mixed_bfloat16"),
                              (keras.layers.DepthwiseConv2D, "mixed_bfloat16"))]
  def bf16_values(v):
    return tf.cast(tf.cast(v, tf.bfloat16), tf.float32)

  made[0].build(x.shape)
  start = [bf16_values(w) for w in made[0].get_weights()]
  for layer in made[1:]:
    layer.build(x.shape)
  for layer in made:
    layer.set_weights(start)
  # Inputs and weights rounded to bfloat16 once, so every layer computes
  # with the same numbers.
  x = bf16_values(x)
  # Loss weights (the output gradient) also bfloat16 values: float32
  # gradients from the same numbers then differ from ours only by the final
  # rounding to bfloat16.
  weights = bf16_values(rng.normal(size=made[0](x).shape))
  f32, ours, keras_bf16 = (_values_and_gradients(m, x, weights) for m in made)
  np.testing.assert_array_equal(ours[0], keras_bf16[0])  # the same forward op
  if strides == 1:  # Keras' own layer, gradients and all
    for want, got in zip(keras_bf16, ours):
      np.testing.assert_array_equal(got, want)
  else:  # input and kernel gradients computed in float32
    for want, got in zip(f32[1:3], ours[1:3]):
      np.testing.assert_allclose(got, want, rtol=2 ** -8, atol=1e-6)
  backprop = [op for op in tf.function(lambda v: tf.gradients(
      made[1](v, training=True), v)).get_concrete_function(
          tf.TensorSpec(x.shape)).graph.get_operations()
      if op.type == "DepthwiseConv2dNativeBackpropInput"]
  assert [op.get_attr("T") for op in backprop] == (
      [tf.float32] if strides > 1 else [tf.bfloat16])
  # Outside training the plain Keras op, which grappler can fuse.
  assert "IdentityN" not in _op_types(lambda v: made[1](v, training=False),
                                      tf.TensorSpec(x.shape))


# --- The routes apply on CPUs only. ---


class _FakeStrategy:
  """What ``cpu_routes_apply`` reads of a strategy: its devices."""

  def __init__(self, *devices):
    self.extended = type("Extended", (), {"worker_devices": devices})()


def _under_strategy(monkeypatch, *devices):
  monkeypatch.setattr(tf.distribute, "has_strategy", lambda: True)
  monkeypatch.setattr(tf.distribute, "get_strategy",
                      lambda: _FakeStrategy(*devices))


def test_routes_apply_on_cpus_and_not_on_gpus_or_tpus(monkeypatch):
  assert kernels.cpu_routes_apply()  # This machine: CPUs only.
  with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
    assert kernels.cpu_routes_apply()
  with monkeypatch.context() as m:
    m.setattr(kernels, "_accelerator_visible", lambda: True)
    assert not kernels.cpu_routes_apply()  # Default placement: the GPU.
  with monkeypatch.context() as m:
    _under_strategy(m, "/job:worker/replica:0/task:0/device:TPU:0",
                    "/job:worker/replica:0/task:0/device:TPU:1")
    assert not kernels.cpu_routes_apply()
  with monkeypatch.context() as m:
    _under_strategy(m, "/job:localhost/replica:0/task:0/device:GPU:0")
    assert not kernels.cpu_routes_apply()
  with monkeypatch.context() as m:  # A CPU strategy on a GPU host.
    m.setattr(kernels, "_accelerator_visible", lambda: True)
    _under_strategy(m, "/job:worker/replica:0/task:1/device:CPU:0")
    assert kernels.cpu_routes_apply()


def _routed_ops():
  """Op types of the three routes' traced calls, bfloat16, with gradients."""
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    pointwise = kernels.MatMulPointwiseConv(24, 1)
    depthwise = kernels.Float32GradDepthwiseConv(3, strides=2)
    norm = kernels.FusedBatchNorm()
    pointwise.build((1, 9, 9, 24))
    depthwise.build((1, 9, 9, 24))
    norm.build((1, 9, 9, 24))
  finally:
    keras.mixed_precision.set_global_policy("float32")

  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = norm(depthwise(pointwise(x), training=True), training=True)
      loss = tf.reduce_sum(tf.cast(y, tf.float32))
    return tape.gradient(loss, x)

  graph = tf.function(step).get_concrete_function(
      tf.TensorSpec((1, 9, 9, 24), tf.float32)).graph
  ops = {}
  for op in graph.get_operations():
    dtype = op.get_attr("T") if "T" in op.node_def.attr else None
    ops.setdefault(op.type, set()).add(
        dtype if isinstance(dtype, tf.DType) else None)
  return ops


def test_off_the_cpu_the_layers_are_plain_keras(monkeypatch):
  on_cpu = _routed_ops()
  assert "MatMul" in on_cpu and "Conv2D" not in on_cpu
  assert "Pad" in on_cpu  # 24 bfloat16 channels padded to 32.
  assert tf.float32 in on_cpu["DepthwiseConv2dNativeBackpropInput"]
  monkeypatch.setattr(kernels, "_accelerator_visible", lambda: True)
  elsewhere = _routed_ops()
  assert "Conv2D" in elsewhere and "MatMul" not in elsewhere
  assert "Pad" not in elsewhere
  assert elsewhere["DepthwiseConv2dNativeBackpropInput"] == {tf.bfloat16}


def test_a_converted_graph_holds_atrous_depthwise_convolutions_as_one_dilated_op():
  """Inside ``converted_graph`` an atrous stride-1 depthwise convolution is
  traced as one ``DepthwiseConv2dNative`` with its dilations and the
  explicit pads of "same"; outside, as TensorFlow runs it (space to
  batch). ONNX Runtime runs the converted form: tests/test_export_onnx.py."""
  layer = kernels.Float32GradDepthwiseConv(3, dilation_rate=(2, 3), padding="same")
  strided = kernels.Float32GradDepthwiseConv(3, strides=2, padding="same")
  spec = tf.TensorSpec((1, 17, 19, 8), tf.float32)
  assert "SpaceToBatchND" in _op_types(lambda x: strided(layer(x)), spec)
  with kernels.converted_graph():
    graph = tf.function(lambda x: strided(layer(x))).get_concrete_function(spec).graph
  assert "SpaceToBatchND" in _op_types(layer, spec)  # The context has ended.
  convs = [op for op in graph.get_operations() if op.type == "DepthwiseConv2dNative"]
  assert "SpaceToBatchND" not in [op.type for op in graph.get_operations()]
  atrous, plain = sorted(convs, key=lambda op: op.get_attr("strides"))
  assert atrous.get_attr("dilations") == [1, 2, 3, 1]
  assert atrous.get_attr("padding") == b"EXPLICIT"
  assert atrous.get_attr("explicit_paddings") == [0, 0, 2, 2, 3, 3, 0, 0]
  assert plain.get_attr("strides") == [1, 2, 2, 1]  # Strided: unchanged.


@pytest.mark.parametrize("align_corners", [True, False])
def test_a_converted_graph_holds_the_image_poolings_resize_as_a_broadcast(align_corners):
  """Inside ``converted_graph`` a ``ResizeBilinear`` of a 1x1 map (the image
  pooling's) is traced as ``BroadcastTo``, with the resize's values; larger
  maps, and any call outside the context, keep the resize."""
  resize = layers.ResizeBilinear(align_corners)
  pooled = tf.random.normal((2, 1, 1, 6), seed=1)
  features = tf.zeros((2, 9, 13, 4))
  spec = (tf.TensorSpec((None, 1, 1, 6)), tf.TensorSpec((None, None, None, 4)))
  larger = (tf.TensorSpec((None, 3, 3, 6)), spec[1])
  assert "BroadcastTo" not in _op_types(resize, *spec)
  with kernels.converted_graph():
    converted = tf.function(resize).get_concrete_function(*spec)
    kept = _op_types(resize, *larger)
  ops = [op.type for op in converted.graph.get_operations()]
  assert "BroadcastTo" in ops and "ResizeBilinear" not in ops
  assert "ResizeBilinear" in kept
  np.testing.assert_array_equal(converted(pooled, features).numpy(),
                                resize(pooled, features).numpy())


def test_a_converted_graph_holds_the_softmax_as_the_ops_it_is_made_of():
  """ONNX Runtime's ``Softmax`` over the channels-first axis tf2onnx leaves
  transposes; inside ``converted_graph`` the softmax is reductions and
  elementwise ops, with ``tf.nn.softmax``'s values."""
  logits = tf.random.normal((2, 5, 7, 11), seed=2) * 30.0
  spec = tf.TensorSpec((None, None, None, 11))
  assert "Softmax" in _op_types(kernels.softmax, spec)
  with kernels.converted_graph():
    converted = tf.function(kernels.softmax).get_concrete_function(spec)
  ops = {op.type for op in converted.graph.get_operations()}
  assert "Softmax" not in ops and {"Max", "Exp", "Sum"} <= ops, ops
  np.testing.assert_allclose(converted(logits).numpy(),
                             tf.nn.softmax(logits).numpy(), atol=1e-6)
