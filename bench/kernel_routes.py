"""The three layers that route around slow oneDNN kernels, timed against the plain form.

Usage: python bench/kernel_routes.py [--rounds=3] [--write_readme]

For each route, at the shapes of Xception-65 and MobileNetV2 training
(batch 4, 513x513 crops, output stride 16), the median time of a forward
and backward pass (gradients of a sum with respect to the input and the
weights) in float32 and bfloat16 compute, plain against routed:
- 1x1 convolution: ``keras.layers.Conv2D`` vs ``deeplab.kernels.MatMulPointwiseConv``.
- batch norm in training mode: the fused kernel on the raw channels vs
  ``deeplab.kernels.fused_batch_norm`` (bfloat16 channels padded to 16).
- strided depthwise convolution: ``keras.layers.DepthwiseConv2D`` vs
  ``deeplab.kernels.Float32GradDepthwiseConv`` (bfloat16 gradients in float32).
"""

import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import common  # noqa: E402
from deeplab import kernels  # noqa: E402

_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds of 5 calls.")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write into bench/README.md.")

BATCH = 4
POLICIES = ("float32", "mixed_bfloat16")


def _layer_pass(make_layer, shape, policy):
  """A tf.function: forward and backward through a fresh layer."""
  layer = make_layer(policy)
  x = tf.random.stateless_normal((BATCH,) + shape, seed=(0, 1))
  layer.build(x.shape)

  @tf.function
  def run():
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.cast(layer(x, training=True), tf.float32))
    return tape.gradient(loss, [x] + layer.trainable_variables)

  return run


def _batch_norm_pass(routed, shape, policy):
  """Forward and backward through batch norm in training mode."""
  channels = shape[-1]
  dtype = tf.bfloat16 if policy == "mixed_bfloat16" else tf.float32
  x = tf.cast(tf.random.stateless_normal((BATCH,) + shape, seed=(0, 2)), dtype)
  scale, offset = tf.ones([channels]), tf.zeros([channels])
  empty = tf.constant([], tf.float32)

  def plain(v, s, o):
    return tf.raw_ops.FusedBatchNormV3(x=v, scale=s, offset=o, mean=empty,
                                       variance=empty, epsilon=1e-3,
                                       is_training=True)[0]

  def padded(v, s, o):
    return kernels.fused_batch_norm(v, s, o, empty, empty, 1e-3, True)[0]

  norm = padded if routed else plain

  @tf.function
  def run():
    with tf.GradientTape() as tape:
      tape.watch([x, scale, offset])
      loss = tf.reduce_sum(tf.cast(tf.nn.relu(norm(x, scale, offset)), tf.float32))
    return tape.gradient(loss, [x, scale, offset])

  return run


def cases():
  """(route, shape label, {form: builder(policy) -> run})."""
  for h, cin, cout in ((33, 728, 728), (33, 1536, 2048), (65, 256, 256),
                       (129, 128, 128)):
    yield "1x1 convolution", f"{h}x{h}x{cin} -> {cout}", {
        form: (lambda p, cls=cls, h=h, cin=cin, cout=cout: _layer_pass(
            lambda q: cls(cout, 1, use_bias=False, dtype=q), (h, h, cin), p))
        for form, cls in (("plain", keras.layers.Conv2D),
                          ("routed", kernels.MatMulPointwiseConv))}
  for h, c in ((33, 728), (65, 728), (129, 24), (33, 736)):
    yield "batch norm + ReLU", f"{h}x{h}x{c}", {
        form: (lambda p, routed=routed, h=h, c=c: _batch_norm_pass(
            routed, (h, h, c), p))
        for form, routed in (("plain", False), ("routed", True))}
  for h, c, padding in ((259, 128, "valid"), (131, 256, "valid"),
                        (67, 728, "valid"), (257, 96, "same")):
    yield "3x3 depthwise, stride 2", f"{h}x{h}x{c} {padding}", {
        form: (lambda p, cls=cls, h=h, c=c, padding=padding: _layer_pass(
            lambda q: cls(3, strides=2, padding=padding, use_bias=False,
                          dtype=q), (h, h, c), p))
        for form, cls in (("plain", keras.layers.DepthwiseConv2D),
                          ("routed", kernels.Float32GradDepthwiseConv))}


def main(argv):
  del argv
  lines = [f"Forward + backward, batch {BATCH}, median ms of "
           f"{5 * _ROUNDS.value} calls:", "",
           "| route | input | float32 plain | float32 routed | bf16 plain | "
           "bf16 routed | bf16 routed vs plain |",
           "|---|---|---:|---:|---:|---:|---:|"]
  for route, label, forms in cases():
    runs = {(form, policy): build(policy) for form, build in forms.items()
            for policy in POLICIES}
    times = {key: [] for key in runs}
    for run in runs.values():
      run()  # trace and warm up
    for _ in range(_ROUNDS.value):
      for key, run in runs.items():
        for _ in range(5):
          start = time.perf_counter()
          tf.nest.map_structure(np.asarray, run())
          times[key].append(time.perf_counter() - start)
    ms = {key: 1e3 * statistics.median(t) for key, t in times.items()}
    b_plain, b_routed = ms["plain", "mixed_bfloat16"], ms["routed", "mixed_bfloat16"]
    lines.append(
        f"| {route} | {label} | {ms['plain', 'float32']:.1f} | "
        f"{ms['routed', 'float32']:.1f} | {b_plain:.1f} | {b_routed:.1f} | "
        f"{b_plain / b_routed:.2f}x |")
    print(lines[-1], flush=True)
  common.report("kernel_routes", "\n".join(lines), _WRITE.value)


if __name__ == "__main__":
  app.run(main)
