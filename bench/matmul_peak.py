"""This CPU's float32 matrix-product peak, and how much of it our
Xception-65 training step reaches.

Usage:
  python bench/matmul_peak.py [--backbone=xception_65 --size=513 --batch=4]
      [--matmul_sizes=2048,4096] [--write_readme]

The peak: the best median GFLOP/s of a tf.function multiplying two square
float32 matrices (2 n^3 FLOPs), every core working, for each size in
--matmul_sizes. The training step: DeepLabv3+ (bench/common.py's model,
21 classes, OS 16) at --size pixels, batch --batch, SGD with momentum on
softmax cross-entropy, as bench/compare.py times it; its FLOPs are taken as
3x those of the forward pass (the backward pass computes the gradients of
both the inputs and the weights of every layer, each about the forward
pass's arithmetic), the forward pass counted by TensorFlow's profiler
(multiplies and adds separately, bench/common.py's forward_flops).

The process runs as ``deeplab-train`` would: the runtime is chosen for the
``train`` job before TensorFlow is imported (deeplab/runtime.py, whose line
is printed), so the figures are those of that CPU path.
"""

import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from deeplab import runtime  # noqa: E402

CHOICE = runtime.apply("train")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import common  # noqa: E402

_BACKBONE = flags.DEFINE_string("backbone", "xception_65", "Backbone of the step.")
_SIZE = flags.DEFINE_integer("size", 513, "Input height and width of the step.")
_BATCH = flags.DEFINE_integer("batch", 4, "Batch size of the step.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed training steps (median).")
_MATMUL_SIZES = flags.DEFINE_list("matmul_sizes", ["2048", "4096"],
                                  "Square matrix sizes for the peak.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed products per size (median).")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write into bench/README.md.")


def median_seconds(fn, repeats: int) -> float:
  fn()  # tracing, primitive creation
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_peak(sizes, repeats: int) -> dict:
  """{n: GFLOP/s} of n x n float32 products."""
  rng = np.random.default_rng(0)
  peaks = {}
  for n in sizes:
    a = tf.constant(rng.standard_normal((n, n)).astype(np.float32))
    b = tf.constant(rng.standard_normal((n, n)).astype(np.float32))
    product = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)))
    seconds = median_seconds(lambda p=product, a=a, b=b: p(a, b).numpy(), repeats)
    peaks[n] = 2 * n**3 / seconds / 1e9
  return peaks


def training_step_seconds(model, size: int, batch: int, steps: int) -> float:
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32))
  labels = tf.constant(rng.integers(0, 21, (batch, size, size)).astype(np.int32))
  step = common.training_step(model, images, labels)

  step()  # one more warm-up step than median_seconds gives
  return median_seconds(step, steps)


def main(argv):
  del argv
  peaks = matmul_peak([int(n) for n in _MATMUL_SIZES.value], _REPEATS.value)
  peak = max(peaks.values())
  print("float32 matmul GFLOP/s:", {n: round(v) for n, v in peaks.items()}, flush=True)
  model = common.deeplab_v3_plus(_BACKBONE.value)
  size, batch = _SIZE.value, _BATCH.value
  forward_flops = common.forward_flops(model, size)  # batch 1
  step_flops = 3 * forward_flops * batch
  seconds = training_step_seconds(model, size, batch, _STEPS.value)
  achieved = step_flops / seconds / 1e9
  text = "\n".join([
      f"Run as `{CHOICE.line()}`:", "",
      "| float32 matmul peak (GFLOP/s) | model | px | batch | forward GFLOPs "
      "(batch 1) | training step (s) | step GFLOPs (3x forward) | achieved "
      "GFLOP/s | share of peak |",
      "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
      f"| {peak:.0f} | {_BACKBONE.value} | {size} | {batch} | "
      f"{forward_flops / 1e9:.1f} | {seconds:.2f} | {step_flops / 1e9:.0f} | "
      f"{achieved:.0f} | {100 * achieved / peak:.0f}% |"])
  print(text)
  if _WRITE.value:  # under this CPU's heading; other CPUs' sections stay
    common.write_cpu_section("matmul_peak", text)


if __name__ == "__main__":
  app.run(main)
