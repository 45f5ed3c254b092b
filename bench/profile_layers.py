"""Where the forward time goes: per-layer-kind time, FLOPs and GFLOP/s.

Usage: python bench/profile_layers.py [--backbone=xception_65] [--batch=1]
    [--dtype_policy=float32]

Runs the BN-folded DeepLabv3+ (OS 16, separable ASPP 6,12,18 + decoder,
21 classes, 513x513) eagerly, layer by layer, timing each layer call
(median of --repeats passes), and groups the times by kind: depthwise 3x3
convolutions by stride and rate, 1x1 convolutions, other convolutions,
and the rest (activations, padding, adds, resizes). FLOPs are counted from
the layer shapes (a multiply-add is two). Eager execution runs each layer
alone, without the graph's conv+bias+ReLU fusion, so the kinds' shares are
indicative; the whole-model time in a tf.function is printed beside.
"""

import collections
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
from deeplab import folding  # noqa: E402

_BACKBONE = flags.DEFINE_string("backbone", "xception_65", "Backbone.")
_BATCH = flags.DEFINE_integer("batch", 1, "Batch size.")
_POLICY = flags.DEFINE_string("dtype_policy", "float32", "Keras dtype policy.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed passes.")


def kind_and_flops(layer, inputs, output):
  """('kind', FLOPs) of one layer call."""
  shape = output.shape
  pixels = int(np.prod(shape[:-1]))
  if isinstance(layer, keras.layers.DepthwiseConv2D):
    k = layer.kernel_size[0]
    return (f"depthwise {k}x{k} stride {layer.strides[0]} rate "
            f"{layer.dilation_rate[0]}", 2 * pixels * k * k * shape[-1])
  if isinstance(layer, keras.layers.Conv2D):
    k = layer.kernel_size[0]
    cin = inputs[0].shape[-1]
    kind = "conv 1x1" if k == 1 else f"conv {k}x{k}"
    return kind, 2 * pixels * k * k * cin * shape[-1]
  return type(layer).__name__, 0


def main(argv):
  del argv
  model = folding.fold_batch_norm(
      common.deeplab_v3_plus(_BACKBONE.value, dtype_policy=_POLICY.value))
  x = tf.constant(np.random.default_rng(0).uniform(
      -1, 1, (_BATCH.value, 513, 513, 3)).astype("float32"))

  times = collections.defaultdict(list)
  flops = {}

  def timed(layer):
    def call(*args, **kwargs):
      start = time.perf_counter()
      output = layer(*args, **kwargs)
      np.asarray(tf.reduce_sum(tf.cast(output, tf.float32)))  # synchronize
      times[layer.name].append(time.perf_counter() - start)
      flops[layer.name] = kind_and_flops(layer, args, output)
      return output
    return call

  for _ in range(_REPEATS.value + 1):
    model._run_through_graph(x, operation_fn=timed)  # pylint: disable=protected-access
  per_kind = collections.defaultdict(lambda: [0.0, 0, 0])
  for name, t in times.items():
    kind, count = flops[name]
    entry = per_kind[kind]
    entry[0] += statistics.median(t[1:])
    entry[1] += count
    entry[2] += 1
  total = sum(e[0] for e in per_kind.values())
  forward = tf.function(lambda v: model(v, training=False))
  forward(x)
  graph_times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    forward(x).numpy()
    graph_times.append(time.perf_counter() - start)
  print(f"{_BACKBONE.value}, batch {_BATCH.value}, {_POLICY.value}: "
        f"layer by layer {1e3 * total:.0f} ms (eager), whole model "
        f"{1e3 * statistics.median(graph_times):.0f} ms (tf.function)")
  print("| layer kind | layers | ms | share | GFLOPs | GFLOP/s |")
  print("|---|---:|---:|---:|---:|---:|")
  for kind, (seconds, count, layers) in sorted(per_kind.items(),
                                               key=lambda kv: -kv[1][0]):
    rate = f"{count / seconds / 1e9:.0f}" if count else ""
    print(f"| {kind} | {layers} | {1e3 * seconds:.1f} | "
          f"{100 * seconds / total:.0f}% | {count / 1e9:.2f} | {rate} |")


if __name__ == "__main__":
  app.run(main)
