"""mixed_bfloat16 against float32 on CPUs without native bf16, emulated.

Usage:
  python bench/bf16_cpu.py [--backbone=mobilenet_v2 --size=257 --batch=2]
      [--cpus=avx512,avx2] [--write_readme]

A CPU without AVX512_BF16 or AMX has no bf16 arithmetic: oneDNN converts
bf16 to float32 and back around float32 kernels, and TensorFlow routes
bf16 to oneDNN only on AVX-512 CPUs (elsewhere to its own kernels). This
script measures what that costs on the machine it runs on, for each CPU
kind named in --cpus, by making this CPU look like it:

- ``avx512`` (AVX-512 without bf16, e.g. Skylake, Cascade Lake): oneDNN on,
  capped with ``ONEDNN_MAX_CPU_ISA=AVX512_CORE`` (no bf16, no AMX).
- ``avx2`` (AVX2 only, e.g. AMD EPYC before Zen 4): TensorFlow's own
  kernels (``TF_ENABLE_ONEDNN_OPTS=0``), where TensorFlow sends bf16 on a
  CPU without AVX-512 even with oneDNN on. They are built for AVX, so they
  run the same instructions as on an AVX2 CPU. (oneDNN capped with
  ``ONEDNN_MAX_CPU_ISA=AVX2`` is no stand-in for an AVX2 CPU's oneDNN:
  bench/README.md, "Runtime choice per CPU and job".)

float32 and bf16 run on the same kernels, so the ratio is bf16's own cost.
Both are emulations on another CPU (its caches, clock and core count),
labelled so wherever the figures go. Each setting runs in a fresh process
(the variables are read when TensorFlow starts); the figure is the ratio
of the medians, bf16 time over float32 time: how many times slower bf16 is.
deeplab/runtime.py quotes these ratios in its warning.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

_BACKBONE = flags.DEFINE_string("backbone", "mobilenet_v2", "Backbone.")
_SIZE = flags.DEFINE_integer("size", 257, "Input height and width.")
_BATCH = flags.DEFINE_integer("batch", 2, "Training batch size.")
_STEPS = flags.DEFINE_integer("steps", 3, "Timed calls of each kind (median).")
_CPUS = flags.DEFINE_list("cpus", ["avx512", "avx2"], "CPU kinds to emulate.")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write into bench/README.md.")
_CHILD = flags.DEFINE_string("child", None, "Internal: the dtype policy to time.")

ONEDNN_AVX512 = {"TF_ENABLE_ONEDNN_OPTS": "1", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
TF_KERNELS = {"TF_ENABLE_ONEDNN_OPTS": "0"}
# Per emulated CPU kind: (kernels, environment), the same for float32 and
# bf16, so that the ratio is bf16's own cost on the kernels TensorFlow
# routes bf16 to on that kind.
EMULATIONS = {"avx512": ("oneDNN (AVX512_CORE)", ONEDNN_AVX512),
              "avx2": ("TensorFlow's", TF_KERNELS)}
LABELS = {"avx512": "AVX-512 without bf16", "avx2": "AVX2 only"}


def child(dtype_policy: str) -> dict:
  """Median seconds of a forward pass (batch 1) and a training step."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from bench import common  # pylint: disable=g-import-not-at-top
  model = common.deeplab_v3_plus(_BACKBONE.value, dtype_policy=dtype_policy)
  rng = np.random.default_rng(0)
  size, batch = _SIZE.value, _BATCH.value
  images = tf.constant(rng.uniform(-1, 1, (batch, size, size, 3)).astype("float32"))
  labels = tf.constant(rng.integers(0, 21, (batch, size, size)).astype("int32"))
  forward = tf.function(lambda x: model(x, training=False))
  step = common.training_step(model, images, labels)

  def seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start

  one = images[:1]
  for _ in range(2):  # tracing, primitive creation
    forward(one).numpy()
    step()
  return {"forward": statistics.median(seconds(lambda: forward(one).numpy())
                                       for _ in range(_STEPS.value)),
          "train": statistics.median(seconds(step)
                                     for _ in range(_STEPS.value))}


def run_child(dtype_policy: str, env_changes: dict) -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")}
  env.update(env_changes)
  command = [sys.executable, __file__, f"--child={dtype_policy}",
             f"--backbone={_BACKBONE.value}", f"--size={_SIZE.value}",
             f"--batch={_BATCH.value}", f"--steps={_STEPS.value}"]
  result = subprocess.run(command, env=env, capture_output=True, text=True)
  if result.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  return json.loads(result.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
  for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
    if line.startswith("model name"):
      return line.split(":", 1)[1].strip()
  return "unknown CPU"


def main(argv):
  del argv
  if _CHILD.value:
    print(json.dumps(child(_CHILD.value)))
    return
  lines = [
      f"{_BACKBONE.value}, {_SIZE.value}x{_SIZE.value}, forward batch 1 and "
      f"training step batch {_BATCH.value}, median of {_STEPS.value} calls, "
      f"emulated on {cpu_model()} ({os.cpu_count()} cores):", "",
      "| emulated CPU | kernels | float32 forward b1 (ms) | bf16 forward b1 (ms) "
      "| float32 train (s) | bf16 train (s) | bf16 slower: forward, train |",
      "|---|---|---:|---:|---:|---:|---|"]
  for cpu in _CPUS.value:
    kernels, env = EMULATIONS[cpu]
    f32 = run_child("float32", env)
    bf16 = run_child("mixed_bfloat16", env)
    lines.append(
        f"| {LABELS[cpu]} | {kernels} | {1e3 * f32['forward']:.0f} "
        f"| {1e3 * bf16['forward']:.0f} | {f32['train']:.2f} | {bf16['train']:.2f} "
        f"| {bf16['forward'] / f32['forward']:.2f}x, {bf16['train'] / f32['train']:.2f}x |")
    print(lines[-1], flush=True)
  from bench import common  # pylint: disable=g-import-not-at-top
  print("\n".join(lines))
  if _WRITE.value:  # under this CPU's heading; other CPUs' sections stay
    common.write_cpu_section("bf16_cpu", "\n".join(lines))


if __name__ == "__main__":
  app.run(main)
