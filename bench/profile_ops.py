"""Where the time goes, op by op, in the graph TensorFlow really runs.

Usage: python bench/profile_ops.py [--backbone=xception_65] [--batch=1]
    [--mode=forward|train] [--dtype_policy=float32] [--steps=3] [--top=16]

Traces --steps calls of the compiled forward pass (the BN-folded model, as
eval, predict and export run it) or of one SGD training step (the model
with its batch norms) with TensorFlow's profiler, and sums the kernels'
own times per op type, after grappler's fusions and the oneDNN rewrite
(so ``_MklNativeFusedConv2D`` is a convolution with its bias, ReLU and
sometimes the residual add). DeepLabv3+ at OS 16, 21 classes, 513x513.
The kernel times of the two inter-op threads add up, so their sum can
exceed the wall time printed beside it.
"""

import collections
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from bench import common  # noqa: E402
from deeplab import folding  # noqa: E402

_BACKBONE = flags.DEFINE_string("backbone", "xception_65", "Backbone.")
_BATCH = flags.DEFINE_integer("batch", 1, "Batch size.")
_MODE = flags.DEFINE_enum("mode", "forward", ["forward", "train"],
                          "Forward pass or training step.")
_POLICY = flags.DEFINE_string("dtype_policy", "float32", "Keras dtype policy.")
_STEPS = flags.DEFINE_integer("steps", 3, "Traced calls.")
_TOP = flags.DEFINE_integer("top", 16, "Op types listed.")

# Events of the executor and thread pool around the kernels, not kernels.
_NOT_KERNELS = {"Process", "ParallelFor", "StartRegion", "StopRegion",
                "Record", "MemoryAllocation", "MemoryDeallocation"}


def build_call(backbone, batch, mode, policy):
  """A no-argument function running one forward pass or training step."""
  model = common.deeplab_v3_plus(backbone, dtype_policy=policy)
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(-1, 1, (batch, 513, 513, 3)).astype("float32"))
  if mode == "forward":
    folded = folding.fold_batch_norm(
        common.randomize_batch_norm(model, rng))
    forward = tf.function(lambda x: folded(x, training=False))
    return lambda: forward(images).numpy()
  labels = tf.constant(rng.integers(0, 21, (batch, 513, 513)).astype("int32"))
  step = common.training_step(model, images, labels)

  return step


def kernel_times(logdir, steps):
  """{op type: (ms per call, kernels per call)} from the profiler's trace."""
  path = next(pathlib.Path(logdir).rglob("*.xplane.pb"))
  space = xplane_pb2.XSpace()
  space.ParseFromString(path.read_bytes())
  total = collections.defaultdict(float)
  count = collections.Counter()
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):
        continue
      for event in line.events:
        op = names.get(event.metadata_id, "?").split(":")[-1]
        if op in _NOT_KERNELS:
          continue
        total[op] += event.duration_ps / 1e9 / steps
        count[op] += 1
  return {op: (ms, count[op] // steps) for op, ms in total.items()}


def main(argv):
  del argv
  call = build_call(_BACKBONE.value, _BATCH.value, _MODE.value, _POLICY.value)
  for _ in range(2):  # tracing, oneDNN primitive creation
    call()
  walls = []
  for _ in range(_STEPS.value):
    start = time.perf_counter()
    call()
    walls.append(time.perf_counter() - start)
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    for _ in range(_STEPS.value):
      call()
    tf.profiler.experimental.stop()
    per_op = kernel_times(logdir, _STEPS.value)
  kernels = sum(ms for ms, _ in per_op.values())
  print(f"{_BACKBONE.value}, {_MODE.value}, batch {_BATCH.value}, "
        f"{_POLICY.value}: {1e3 * statistics.median(walls):.0f} ms per call "
        f"(wall, untraced), kernels {kernels:.0f} ms")
  print("| op | kernels per call | ms | share |")
  print("|---|---:|---:|---:|")
  for op, (ms, n) in sorted(per_op.items(), key=lambda kv: -kv[1][0])[:_TOP.value]:
    print(f"| {op} | {n} | {ms:.1f} | {100 * ms / kernels:.1f}% |")


if __name__ == "__main__":
  app.run(main)
