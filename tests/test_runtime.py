"""The runtime chosen per CPU and job (deeplab/runtime.py): the rules from
given CPU descriptions, the user's variables winning, TensorFlow's defaults
where the CPU cannot be read, the bf16 warning, the tools choosing before
TensorFlow is imported, and their quiet start (deeplab/cli/__init__.py)."""

import os
import re
import subprocess
import sys

import pytest

from deeplab import cli
from deeplab import runtime
from tests import harness
from tests.conftest import REPO

# /proc/cpuinfo excerpts of the three CPU kinds the rules tell apart.
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
"""
SKYLAKE_AVX512 = """processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz
flags\t\t: fpu sse2 fma avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl
"""
SAPPHIRE_AMX = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu sse2 fma avx avx2 avx512f avx512dq avx512cd avx512bw avx512vl \
avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""


def cpu(text, cores=2):
  model, flags = runtime.parse_cpuinfo(text)
  return runtime.Cpu(model, flags, cores)


def test_cpu_descriptions_are_read_from_cpuinfo():
  epyc, skylake, sapphire = cpu(EPYC_AVX2), cpu(SKYLAKE_AVX512), cpu(SAPPHIRE_AMX)
  assert epyc.model == "AMD EPYC 7B12"
  assert (epyc.kind, epyc.isa(), epyc.native_bf16) == ("avx2", "AVX2", False)
  assert (skylake.kind, skylake.isa(), skylake.native_bf16) == ("avx512", "AVX-512", False)
  assert (sapphire.kind, sapphire.isa(), sapphire.native_bf16) == (
      "avx512", "AVX-512 + BF16 + AMX", True)
  assert runtime.Cpu("old", frozenset({"sse2", "avx"}), 4).kind == "other"


# oneDNN ("1", "0", None: TensorFlow decides) and frozen weights per job.
EXPECTED = {
    "avx2": {"train": ("1", None), "eval": ("0", None), "predict": ("0", None),
             "export": (None, None), "tool": (None, None)},
    "avx512": {"train": ("1", None), "eval": ("1", None), "predict": ("1", "1"),
               "export": (None, None), "tool": (None, None)},
}


@pytest.mark.parametrize("text", [EPYC_AVX2, SKYLAKE_AVX512, SAPPHIRE_AMX],
                         ids=["avx2", "avx512", "avx512_amx"])
@pytest.mark.parametrize("job", runtime.JOBS)
def test_the_choice_per_cpu_and_job(text, job):
  described = cpu(text, cores=3)
  choice = runtime.choose(described, job, environ={})
  onednn, frozen = EXPECTED[described.kind][job]
  assert choice.setting(runtime.ONEDNN).value == onednn
  assert choice.setting(runtime.FROZEN_WEIGHTS).value == frozen
  assert choice.env()[runtime.INTRA_OP] == choice.env()[runtime.INTER_OP] == "3"
  line = choice.line()
  assert line.startswith("runtime: oneDNN ") and "\n" not in line
  state = {"1": "on", "0": "off", None: "as TensorFlow decides"}[onednn]
  assert f"oneDNN {state} (" in line and f"{job})" in line
  assert line.endswith(described.model)
  assert ("bf16 native" in line) == described.native_bf16


def test_the_users_variables_win_and_are_named():
  environ = {"TF_ENABLE_ONEDNN_OPTS": "1", "TF_NUM_INTRAOP_THREADS": "1",
             "LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"}
  choice = runtime.choose(cpu(EPYC_AVX2), "predict", environ)
  assert choice.onednn() is True
  assert "oneDNN on (set by you: TF_ENABLE_ONEDNN_OPTS=1)" in choice.line()
  assert "intra-op 1 (set by you: TF_NUM_INTRAOP_THREADS=1)" in choice.line()
  assert "allocator tcmalloc (set by you: LD_PRELOAD)" in choice.line()
  assert choice.env() == {"TF_NUM_INTEROP_THREADS": "2"}


def test_a_child_process_tells_its_parents_choice_from_the_users():
  parent = {}
  runtime.set_env(runtime.choose(cpu(EPYC_AVX2), "train", parent), parent)
  assert parent["TF_ENABLE_ONEDNN_OPTS"] == "1"
  child = runtime.choose(cpu(EPYC_AVX2), "predict", dict(parent))
  assert child.setting(runtime.ONEDNN).value == "0"
  assert "set by you" not in child.line()


def test_usable_cores_follow_a_containers_cpu_quota(tmp_path):
  (tmp_path / "cpu.max").write_text("150000 100000\n")
  assert runtime.usable_cores(str(tmp_path)) == 1
  (tmp_path / "cpu.max").write_text("max 100000\n")
  assert runtime.usable_cores(str(tmp_path)) >= 1


def test_a_missing_cpuinfo_leaves_tensorflows_defaults(monkeypatch, tmp_path):
  """As on macOS, Windows and containers without /proc/cpuinfo."""
  monkeypatch.setattr(runtime, "CPUINFO", str(tmp_path / "cpuinfo"))
  unread = runtime.this_cpu()
  assert unread.unknown == f"{tmp_path / 'cpuinfo'} is unreadable"
  for job in runtime.JOBS:
    choice = runtime.choose(unread, job, environ={})
    assert choice.env() == {} and choice.onednn() is None
    line = choice.line()
    assert "\n" not in line and line.startswith(
        f"runtime: TensorFlow's defaults (not chosen: {unread.unknown}, as on macOS")
  choice = runtime.choose(unread, "train", environ={"TF_NUM_INTRAOP_THREADS": "3"})
  assert choice.env() == {}
  assert "set by you: TF_NUM_INTRAOP_THREADS=3" in choice.line()
  assert runtime.bf16_warning(unread, "mixed_bfloat16", "train") is None


def test_a_missing_cgroup_keeps_the_choice_with_the_affinity_masks_cores(monkeypatch, tmp_path):
  """As in a container without /sys/fs/cgroup: the CPU is known."""
  (tmp_path / "cpuinfo").write_text(EPYC_AVX2)
  monkeypatch.setattr(runtime, "CPUINFO", str(tmp_path / "cpuinfo"))
  monkeypatch.setattr(runtime, "CGROUP_ROOT", str(tmp_path / "cgroup"))
  no_cgroup = runtime.this_cpu()
  assert (no_cgroup.model, no_cgroup.unknown) == ("AMD EPYC 7B12", "")
  assert no_cgroup.cores == len(os.sched_getaffinity(0))
  choice = runtime.choose(no_cgroup, "train", environ={})
  assert choice.onednn() is True
  assert choice.env()["TF_NUM_INTRAOP_THREADS"] == str(no_cgroup.cores)
  assert choice.line().startswith("runtime: oneDNN on (chosen: AVX2 CPU, train)")


def test_bf16_without_native_bf16_is_warned_with_the_measured_factor():
  for text in (EPYC_AVX2, SKYLAKE_AVX512):
    described = cpu(text)
    for job in ("train", "predict"):
      message = runtime.bf16_warning(described, "mixed_bfloat16", job)
      factor = runtime.BF16_SLOWDOWN[described.kind]["train" if job == "train"
                                                     else "forward"]
      assert f"{factor:.2f}x slower than in float32" in message
      assert "bench/bf16_cpu.py" in message and "dtype_policy=float32" in message
      assert described.model in message
    assert runtime.bf16_warning(described, "float32", "train") is None
  assert runtime.bf16_warning(cpu(SAPPHIRE_AMX), "mixed_bfloat16", "train") is None


def test_the_quoted_bf16_factors_are_bench_readmes():
  block = (REPO / "bench" / "README.md").read_text().split(
      "<!-- bf16_cpu:begin -->")[1].split("<!-- bf16_cpu:end -->")[0]
  for kind, factors in runtime.BF16_SLOWDOWN.items():
    label = {"avx512": "AVX-512 without bf16", "avx2": "AVX2 only"}[kind]
    ratios = f"| {factors['forward']:.2f}x, {factors['train']:.2f}x |"
    rows = [line for line in block.splitlines() if line.startswith(f"| {label} |")]
    assert any(row.endswith(ratios) for row in rows), (ratios, rows)


def test_what_runs_before_the_choice_imports_no_tensorflow():
  result = harness.run_cli("-c", (
      "import sys, deeplab, deeplab.runtime, deeplab.cli\n"
      "print(sorted(m for m in sys.modules if m.split('.')[0] in "
      "('tensorflow', 'keras', 'numpy')))"), timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == "[]"


# A tool launched as on a 5-core AVX2 CPU: predict turns oneDNN off, which
# TensorFlow, imported after, obeys (its own default on this project's CPUs
# with AVX512-BF16/AMX is on; on an AVX2 CPU it is off either way), and
# TensorFlow's inter-op pool (threads named tf_Compute) has 5 threads.
LAUNCH_AS_AVX2 = """
import os, sys
os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
from deeplab import cli
from deeplab import runtime
assert "tensorflow" not in sys.modules
runtime.this_cpu = lambda: runtime.Cpu("Fake EPYC", frozenset({"avx2", "fma"}), 5)
sys.argv = ["deeplab-predict", "--help"]
try:
  cli.tool("predict")()
except SystemExit:
  pass
import tensorflow as tf
tf.linalg.matmul(tf.ones([64, 64]), tf.ones([64, 64])).numpy()
names = [open(f"/proc/self/task/{t}/comm").read().strip()
         for t in os.listdir("/proc/self/task")]
from tests import harness
print("onednn", harness.onednn_enabled(), os.environ["TF_ENABLE_ONEDNN_OPTS"],
      os.environ["TF_NUM_INTRAOP_THREADS"], names.count("tf_Compute"))
"""


def test_a_tool_chooses_before_tensorflow_is_imported():
  result = harness.run_cli("-c", LAUNCH_AS_AVX2, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "runtime: oneDNN off (chosen: AVX2 CPU, predict)" in result.stderr
  assert result.stdout.strip().splitlines()[-1] == "onednn False 0 5 5"


@pytest.mark.parametrize("command", [["train.py", "--help"],
                                     ["-m", "deeplab.cli", "summary", "--help", "--verbose"]])
def test_the_entry_points_print_the_choice(command):
  result = harness.run_cli(*command, timeout=300,
                           env_overrides={"TF_NUM_INTEROP_THREADS": "1"})
  lines = [l for l in result.stderr.splitlines() if l.startswith("runtime: ")]
  assert len(lines) == 1, result.stderr[-3000:]
  assert re.search(r"intra-op \d+ \(chosen: \d+ usable cores\), "
                   r"inter-op 1 \(set by you: TF_NUM_INTEROP_THREADS=1\)", lines[0])
  assert "Try --helpfull" in result.stdout  # the tool itself ran


def test_the_tools_warn_about_bf16_on_a_cpu_without_it(monkeypatch):
  from absl import logging  # pylint: disable=g-import-not-at-top

  from deeplab import config as config_lib  # pylint: disable=g-import-not-at-top
  from deeplab.cli import common  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config()
  config.model.dtype_policy = "mixed_bfloat16"
  warnings = []
  monkeypatch.setattr(logging, "warning", warnings.append)
  monkeypatch.setattr(runtime, "_applied", runtime.choose(
      cpu(EPYC_AVX2), "train", environ={}))
  common.warn_about_bf16(config)
  assert len(warnings) == 1 and "AMD EPYC 7B12" in warnings[0]
  config.distribution.strategy = "tpu"  # bf16 runs on the TPU, not on this CPU
  common.warn_about_bf16(config)
  monkeypatch.setattr(runtime, "_applied", runtime.choose(
      cpu(SAPPHIRE_AMX), "train", environ={}))
  config.distribution.strategy = "default"
  common.warn_about_bf16(config)
  assert len(warnings) == 1


def test_tensorflows_start_up_lines_are_told_from_the_tools_own():
  noise = [
      "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
      "I0000 00:00:1796535252.949335   27101 port.cc:153] oneDNN custom operations are on.",
      "I0000 00:00:1796535252.949674   27101 cudart_stub.cc:31] Could not find cuda drivers",
      "E0000 00:00:1796535267.255899   27101 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
      "2026-12-06 05:36:55.728073: E external/local_xla/xla/stream_executor/cuda/"
      "cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error",
      "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
      "with the appropriate compiler flags.",
      "2026-12-06 06:09:37.265970: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:467] "
      "Unable to register cuFFT factory: Attempting to register factory for plugin cuFFT when one "
      "has already been registered",
      "E0000 00:00:1796537377.320099   14135 cuda_dnn.cc:8579] Unable to register cuDNN factory: "
      "Attempting to register factory for plugin cuDNN when one has already been registered",
  ]
  kept = ["E0000 00:00:1796535267.255899   27101 op_kernel.cc:52] INVALID_ARGUMENT",
          "Traceback (most recent call last):", "I1206 12:00:00.000000 140 train.py:10] step 1"]
  assert all(cli.startup_noise(line) for line in noise)
  assert not any(cli.startup_noise(line) for line in kept)
  argv = ["deeplab-summary", "--verbose", "--config=synthetic"]
  assert cli.pop_verbose_flag(argv, {}) and argv == ["deeplab-summary", "--config=synthetic"]
  assert not cli.pop_verbose_flag(argv, {})
  for level in ("2", "3"):
    assert not cli.pop_verbose_flag(argv, {"TF_CPP_MIN_LOG_LEVEL": level})
  for level in ("0", "1", "", "no"):  # TensorFlow reads a word as 0.
    assert cli.pop_verbose_flag(argv, {"TF_CPP_MIN_LOG_LEVEL": level})
  assert cli.pop_verbose_flag(argv, {"TF_CPP_MAX_VLOG_LEVEL": "1"})


def test_a_tools_output_starts_with_what_the_user_asked_for(tmp_path):
  """No TensorFlow start-up lines and, for a job whose speed the runtime
  does not set, no runtime line: the first line is the tool's own."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
  result = subprocess.run(
      [sys.executable, "-m", "deeplab.cli", "make-synthetic", f"--output_dir={tmp_path}",
       "--train_size=2", "--val_size=1", "--image_size=65", "--num_shards=1"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stderr.splitlines()
  assert lines and lines[0].startswith("train "), result.stderr[-3000:]
  assert not any(cli.startup_noise(l) or l.startswith("runtime: ") for l in lines), lines
  assert result.stdout.splitlines()[0] == "split 'train': 2 records in 1 shards"
