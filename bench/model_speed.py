"""Forward speed and FLOPs of DeepLabv3+ with every backbone.

Usage:
  python bench/model_speed.py [--backbones=mobilenet_v2,xception_65]
      [--size=513] [--write_readme]

For each backbone: DeepLabv3+ at output stride 16, 21 classes, separable
ASPP (6, 12, 18) and decoder (MobileNetV2: image pooling + 1x1 only, as its
released checkpoints), float32. Measures forward latency at batch 1 (median
of --repeats runs after warm-up), throughput at batch 8, and FLOPs of one
513x513 forward pass from the TensorFlow profiler. With --write_readme the
table replaces the one between the markers in bench/README.md.
"""

import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import common  # noqa: E402
from deeplab import model as model_lib  # noqa: E402

_BACKBONES = flags.DEFINE_list(
    "backbones", ["mobilenet_v2", "resnet_50", "resnet_101", "xception_41",
                  "xception_65", "xception_71"], "Backbones to measure.")
_SIZE = flags.DEFINE_integer("size", 513, "Input height and width (pixels).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per measurement.")
_WRITE = flags.DEFINE_bool("write_readme", False,
                           "Write the table into bench/README.md.")


def build(backbone: str) -> model_lib.DeepLab:
  if backbone == "mobilenet_v2":
    return common.deeplab_v3_plus(backbone, atrous_rates=(), use_decoder=False)
  return common.deeplab_v3_plus(backbone)


def flops(model, size: int) -> float:
  """FLOPs of one forward pass at batch 1 (multiply and add counted apart)."""
  return common.forward_flops(model, size)


def timed(fn, x, repeats: int) -> float:
  fn(x)  # Warm-up: tracing and oneDNN primitive creation.
  fn(x)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(x).numpy()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure(backbone: str, size: int, repeats: int) -> dict:
  model = build(backbone)
  forward = tf.function(lambda x: model(x, training=False))
  rng = np.random.default_rng(0)
  one = tf.constant(rng.uniform(-1, 1, (1, size, size, 3)).astype("float32"))
  eight = tf.constant(rng.uniform(-1, 1, (8, size, size, 3)).astype("float32"))
  latency = timed(forward, one, repeats)
  batch8 = timed(forward, eight, max(2, repeats // 2))
  total_flops = flops(model, size)
  return dict(backbone=backbone, params=model.count_params(),
              gflops=total_flops / 1e9, latency_ms=latency * 1e3,
              throughput=8 / batch8,
              achieved=total_flops * 8 / batch8 / 1e9)


def table(rows, size: int) -> str:
  lines = [
      f"| backbone | params | GFLOPs ({size}px) | forward batch 1 (ms) | "
      "batch 8 (images/s) | achieved GFLOP/s |",
      "|---|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['backbone']} | {r['params']:,} | {r['gflops']:.1f} | "
                 f"{r['latency_ms']:.0f} | {r['throughput']:.2f} | "
                 f"{r['achieved']:.0f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  rows = []
  for backbone in _BACKBONES.value:
    rows.append(measure(backbone, _SIZE.value, _REPEATS.value))
    print(rows[-1], flush=True)
  text = table(rows, _SIZE.value)
  common.report("model_speed", text, _WRITE.value)


if __name__ == "__main__":
  app.run(main)
