"""Where the time goes, op by op, in the graph a runtime really runs.

Usage: python bench/profile_ops.py [--backbone=xception_65] [--batch=1]
    [--mode=forward|train|savedmodel|onnx] [--dtype_policy=float32]
    [--onnx_file=F] [--steps=3] [--top=16]

--mode=forward traces --steps calls of the compiled forward pass (the
BN-folded model, as eval and predict run it), --mode=train one SGD
training step (the model with its batch norms), --mode=savedmodel the
``serving_default`` of the SavedModel ``deeplab-export`` writes (uint8
images in, padding, resize, softmax and argmax included), each with
TensorFlow's profiler, and sums the kernels' own times per op type, after
grappler's fusions and the oneDNN rewrite (so ``_MklNativeFusedConv2D`` is
a convolution with its bias, ReLU and sometimes the residual add).
--mode=onnx runs our ONNX file (``deeplab-export --onnx``), or --onnx_file
(any ONNX file of one float32 or uint8 NHWC/NCHW image input, such as the
file bench/compare.py exports of smp's model), in ONNX Runtime with its
profiler and sums its nodes' times per op type after ONNX Runtime's graph
optimizations. DeepLabv3+ at OS 16, 21 classes, 513x513. The kernel times
of parallel threads add up, so their sum can exceed the wall time printed
beside it.
"""

import collections
import json
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
from deeplab.data import dataset_table  # noqa: E402
from deeplab.export import onnx  # noqa: E402
from deeplab.export import savedmodel  # noqa: E402

_BACKBONE = flags.DEFINE_string("backbone", "xception_65", "Backbone.")
_BATCH = flags.DEFINE_integer("batch", 1, "Batch size.")
_MODE = flags.DEFINE_enum("mode", "forward", ["forward", "train", "savedmodel", "onnx"],
                          "Forward pass, training step, SavedModel or ONNX file.")
_ONNX_FILE = flags.DEFINE_string(
    "onnx_file", None, "With --mode=onnx: this file instead of ours.")
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
  if mode == "savedmodel":
    folder = tempfile.mkdtemp(prefix="profile_savedmodel_")
    savedmodel.export_saved_model(common.randomize_batch_norm(model, rng),
                                  dataset_table.get("pascal_voc_seg"), folder)
    serve = tf.saved_model.load(folder).signatures["serving_default"]
    pixels = tf.constant(rng.integers(0, 256, (batch, 513, 513, 3)).astype(np.uint8))
    return lambda: serve(images=pixels)["labels"].numpy()
  labels = tf.constant(rng.integers(0, 21, (batch, 513, 513)).astype("int32"))
  step = common.training_step(model, images, labels)

  return step


def onnx_session(backbone, batch, path=None):
  """ONNX Runtime session of ``path`` (default: our ONNX file of
  ``backbone``) with its profiler on, and a no-argument call of it."""
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  if path is None:
    model = common.randomize_batch_norm(common.deeplab_v3_plus(backbone), rng)
    path = os.path.join(tempfile.mkdtemp(prefix="profile_onnx_"), "model.onnx")
    onnx.export_onnx(model, path)
  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  options.intra_op_num_threads = os.cpu_count()
  options.enable_profiling = True
  options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
  session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
  source = session.get_inputs()[0]
  shape = [batch] + [d if isinstance(d, int) else 513 for d in source.shape[1:]]
  if source.type == "tensor(uint8)":
    data = rng.integers(0, 256, shape).astype(np.uint8)
  else:
    data = rng.uniform(-1, 1, shape).astype(np.float32)
  return session, lambda: session.run(None, {source.name: data})


def onnx_node_times(profile_path, calls):
  """{op type: (ms per call, nodes per call)} from ONNX Runtime's profile
  (its JSON trace: one ``Node`` event per node run)."""
  total = collections.defaultdict(float)
  count = collections.Counter()
  for event in json.loads(pathlib.Path(profile_path).read_text()):
    if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
      op = event["args"]["op_name"]
      total[op] += event["dur"] / 1e3 / calls
      count[op] += 1
  return {op: (ms, count[op] // calls) for op, ms in total.items()}


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


def timed(call, steps):
  """Median wall seconds of ``steps`` calls, after two warm-up calls
  (tracing, primitive creation)."""
  for _ in range(2):
    call()
  walls = []
  for _ in range(steps):
    start = time.perf_counter()
    call()
    walls.append(time.perf_counter() - start)
  return statistics.median(walls)


def main(argv):
  del argv
  if _ONNX_FILE.value and _MODE.value != "onnx":
    raise app.UsageError("--onnx_file is profiled with --mode=onnx")
  if _MODE.value == "onnx":
    session, call = onnx_session(_BACKBONE.value, _BATCH.value, _ONNX_FILE.value)
    wall = timed(call, _STEPS.value)  # With the profiler on: ONNX Runtime's is per session.
    # The profile holds the warm-up and timed calls too: count them all.
    per_op = onnx_node_times(session.end_profiling(), 2 + _STEPS.value)
  else:
    call = build_call(_BACKBONE.value, _BATCH.value, _MODE.value, _POLICY.value)
    wall = timed(call, _STEPS.value)
    with tempfile.TemporaryDirectory() as logdir:
      tf.profiler.experimental.start(logdir)
      for _ in range(_STEPS.value):
        call()
      tf.profiler.experimental.stop()
      per_op = kernel_times(logdir, _STEPS.value)
  kernels = sum(ms for ms, _ in per_op.values())
  what = _ONNX_FILE.value or _BACKBONE.value
  traced = "profiled" if _MODE.value == "onnx" else "untraced"
  print(f"{what}, {_MODE.value}, batch {_BATCH.value}, "
        f"{_POLICY.value}: {1e3 * wall:.0f} ms per call "
        f"(wall, {traced}), kernels {kernels:.0f} ms")
  print("| op | kernels per call | ms | share |")
  print("|---|---:|---:|---:|")
  for op, (ms, n) in sorted(per_op.items(), key=lambda kv: -kv[1][0])[:_TOP.value]:
    print(f"| {op} | {n} | {ms:.1f} | {100 * ms / kernels:.1f}% |")


if __name__ == "__main__":
  app.run(main)
