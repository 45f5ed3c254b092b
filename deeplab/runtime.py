"""The runtime a tool runs with, chosen per CPU and per job before
TensorFlow starts.

TensorFlow reads its CPU settings once, when it is imported: which kernels
run (oneDNN's or its own Eigen ones, ``TF_ENABLE_ONEDNN_OPTS``), how many
threads run one op and how many ops run at once (``TF_NUM_INTRAOP_THREADS``,
``TF_NUM_INTEROP_THREADS``; TensorFlow 2.21's pip build ignores
``OMP_NUM_THREADS``), and whether oneDNN may keep its own copy of weights
that never change (``TF_ONEDNN_ASSUME_FROZEN_WEIGHTS``). Its own default
turns oneDNN on only on CPUs with AVX512-VNNI, AVX512-BF16 or AMX, which
is right for some jobs and wrong for others: on an AVX2-only CPU oneDNN
makes training faster and batch-1 forward passes slower (the figures are
in bench/README.md, "Runtime choice per CPU and job").

So every tool names its job, and ``apply`` chooses, sets the variables
and prints one line (``runtime: oneDNN on (chosen: AVX2 CPU, train),
...``) for the jobs whose speed the choice sets (``REPORTED_JOBS``; the
others print it with ``--verbose``), before the tool is imported. A
variable the user set wins and the line says "set by you". Where
/proc/cpuinfo is unreadable (macOS, Windows, some containers), nothing is
chosen: TensorFlow's defaults run, and the line says so. Without cgroup
files the cores are the affinity mask's. This module must not import TensorFlow (nor
anything that does): it runs before it.

Jobs: ``train``; ``eval`` (evaluation, batch 1 by default:
``config.data.eval_batch_size``); ``predict`` (batch-1 latency in a process
that never trains); ``export`` (writes files that do not depend on the
choice); ``tool`` (everything else: summaries, conversion, dataset
builders).

The allocator is reported, not chosen: a preloaded one (``LD_PRELOAD``)
must be in place when the process starts, and tcmalloc moved our own
figures by a few percent only (bench/README.md), so the tools keep glibc's
and never re-execute themselves to swap it.

Example:
  >>> cpu = Cpu("AMD EPYC 7B13", frozenset({"avx2", "fma"}), cores=2)
  >>> choice = choose(cpu, "predict", environ={})
  >>> choice.onednn(), choice.env()["TF_NUM_INTRAOP_THREADS"]
  (False, '2')
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from typing import Dict, FrozenSet, Mapping, Optional, Tuple

JOBS = ("train", "eval", "predict", "export", "tool")
# The jobs whose speed the choice sets: they print its line. Export writes
# files that do not depend on it; other tools print it with --verbose.
REPORTED_JOBS = ("train", "eval", "predict")
# Where the CPU and its quota are read (Linux); tests point them elsewhere.
CPUINFO = "/proc/cpuinfo"
CGROUP_ROOT = "/sys/fs/cgroup"

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
INTRA_OP = "TF_NUM_INTRAOP_THREADS"
INTER_OP = "TF_NUM_INTEROP_THREADS"
FROZEN_WEIGHTS = "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"
# The variables this module set in a process, so that a child process
# (which inherits them) tells ours from the user's.
MARKER = "DEEPLAB_RUNTIME_SET"


# ---------------------------------------------------------------- the CPU


@dataclasses.dataclass(frozen=True)
class Cpu:
  """What the choice depends on: the CPU's model name, its ISA flags (as
  /proc/cpuinfo spells them: ``avx2``, ``avx512f``, ``avx512_bf16``,
  ``amx_bf16``...) and the cores this process may use."""

  model: str
  flags: FrozenSet[str]
  cores: int
  # Why the CPU is unknown (``CPUINFO`` could not be read), "" when it is
  # known: nothing is chosen for an unknown CPU.
  unknown: str = ""

  @property
  def avx512(self) -> bool:
    """AVX-512 as oneDNN's AVX512_CORE needs it (F, BW, VL, DQ)."""
    return {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= self.flags

  @property
  def avx2(self) -> bool:
    return {"avx2", "fma"} <= self.flags

  @property
  def native_bf16(self) -> bool:
    """bfloat16 arithmetic in hardware (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & self.flags)

  @property
  def kind(self) -> str:
    """``avx512`` (AVX-512, with or without bf16), ``avx2`` (AVX2, no
    AVX-512) or ``other``: the classes the rules below tell apart."""
    if self.avx512:
      return "avx512"
    return "avx2" if self.avx2 else "other"

  def isa(self) -> str:
    """The ISA in words: ``AVX-512 + AMX``, ``AVX2``..."""
    if self.avx512:
      extras = [name for flag, name in (("avx512_bf16", "BF16"), ("amx_tile", "AMX"))
                if flag in self.flags]
      return " + ".join(["AVX-512"] + extras)
    return "AVX2" if self.avx2 else "no AVX2"


def parse_cpuinfo(text: str) -> Tuple[str, FrozenSet[str]]:
  """(model name, flags) of the first processor in /proc/cpuinfo's text."""
  model, flags = "unknown CPU", frozenset()
  for line in text.splitlines():
    key, _, value = line.partition(":")
    key = key.strip()
    if key == "model name" and model == "unknown CPU":
      model = " ".join(value.split())
    elif key == "flags" and not flags:
      flags = frozenset(value.split())
  return model, flags


def usable_cores(cgroup_root: str = CGROUP_ROOT) -> int:
  """The cores this process may use: its affinity mask, capped by a
  container's CPU quota (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``),
  which TensorFlow's own default (the affinity mask alone) overlooks.
  Without cgroup files, the affinity mask alone."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
      else (os.cpu_count() or 1)
  root = pathlib.Path(cgroup_root)
  quota = period = None
  try:
    if (root / "cpu.max").exists():
      text = (root / "cpu.max").read_text().split()
      if text and text[0] != "max":
        quota, period = int(text[0]), int(text[1])
    elif (root / "cpu" / "cpu.cfs_quota_us").exists():
      quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
      period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
  except (OSError, ValueError, IndexError):
    quota = None
  if quota and period and quota > 0:
    cores = min(cores, max(1, quota // period))
  return max(1, cores)


def cgroup_memory_limit(cgroup_root: str = CGROUP_ROOT) -> Optional[int]:
  """The container's memory limit in bytes (cgroup v2 ``memory.max`` or v1
  ``memory/memory.limit_in_bytes``), None without one."""
  root = pathlib.Path(cgroup_root)
  for name in ("memory.max", "memory/memory.limit_in_bytes"):
    try:
      text = (root / name).read_text().strip()
    except OSError:
      continue
    if text.isdigit() and int(text) < 2**60:  # v1 writes a huge number for none.
      return int(text)
  return None


def this_cpu() -> Cpu:
  """The CPU this process runs on, read from ``CPUINFO`` and ``CGROUP_ROOT``
  (Linux). Where ``CPUINFO`` is unreadable (macOS, Windows, some
  containers) the CPU is ``unknown``, with the file named, and nothing is
  chosen; without ``CGROUP_ROOT`` the cores are the affinity mask's."""
  try:
    model, flags = parse_cpuinfo(pathlib.Path(CPUINFO).read_text())
  except OSError:
    return Cpu("unknown CPU", frozenset(), os.cpu_count() or 1,
               unknown=f"{CPUINFO} is unreadable")
  return Cpu(model, flags, usable_cores(CGROUP_ROOT))


# ---------------------------------------------------------------- the rules


# oneDNN per job and CPU kind: "1" on, "0" off, None TensorFlow's default.
# The figures behind them are in bench/README.md ("Runtime choice per CPU
# and job"). AVX-512: every speed figure of this project was measured with
# oneDNN on, and the kernel routes (deeplab/kernels.py) were tuned on it
# (an AVX-512 CPU without VNNI, Skylake, would get it off by TensorFlow's
# default). AVX2 (measured on a 2-core AMD EPYC): oneDNN makes training and
# batch 8 faster, but batch 1 slower (MobileNetV2) or level (Xception-65);
# eval (eval_batch_size 1 by default) and predict run batch 1.
ONEDNN_RULES: Dict[str, Dict[str, Optional[str]]] = {
    "avx512": {"train": "1", "eval": "1", "predict": "1", "export": None, "tool": None},
    "avx2": {"train": "1", "eval": "0", "predict": "0", "export": None, "tool": None},
    "other": {job: None for job in JOBS},
}
# Jobs whose process never changes its weights, so that oneDNN may keep
# each convolution's weights in its own layout (bench/README.md,
# ``ours_inference``). Not eval: continuous evaluation loads every new
# checkpoint into the same variables, and the cached copies would go stale.
FROZEN_WEIGHT_JOBS = ("predict",)


@dataclasses.dataclass(frozen=True)
class Setting:
  """One variable: its value (None: TensorFlow's default, left unset),
  why, and whether the user set it."""

  name: str
  value: Optional[str]
  reason: str
  by_user: bool = False


@dataclasses.dataclass(frozen=True)
class Choice:
  """The runtime of one job on one CPU."""

  job: str
  cpu: Cpu
  settings: Tuple[Setting, ...]
  allocator: str

  def setting(self, name: str) -> Setting:
    (found,) = [s for s in self.settings if s.name == name]
    return found

  def env(self) -> Dict[str, str]:
    """The variables to set: those chosen here, not the user's."""
    return {s.name: s.value for s in self.settings
            if s.value is not None and not s.by_user}

  def onednn(self) -> Optional[bool]:
    """Whether oneDNN will run (None: TensorFlow decides)."""
    value = self.setting(ONEDNN).value
    if value is None:
      return None
    return value.strip().lower() in ("1", "true", "on", "yes")

  def line(self) -> str:
    """The one line the tools print, e.g. ``runtime: oneDNN on (chosen:
    AVX2 CPU, train), intra-op 2, inter-op 2 (chosen: 2 usable cores),
    ...``; on an unknown CPU ``runtime: TensorFlow's defaults (not chosen:
    /proc/cpuinfo is unreadable...), ...``."""
    def why(setting: Setting) -> str:
      if setting.by_user:
        return f"set by you: {setting.name}={setting.value}"
      return setting.reason

    if self.cpu.unknown:
      parts = [f"TensorFlow's defaults (not chosen: {self.cpu.unknown}, as on "
               "macOS, Windows and some containers)"]
      parts += [why(s) for s in self.settings if s.by_user]
      parts.append(f"allocator {self.allocator}")
      return f"runtime: {', '.join(parts)}; {self.cpu.model}"
    onednn = self.setting(ONEDNN)
    state = {True: "on", False: "off", None: "as TensorFlow decides"}[self.onednn()]
    parts = [f"oneDNN {state} ({why(onednn)})"]
    frozen = self.setting(FROZEN_WEIGHTS)
    if frozen.value is not None:
      parts.append(f"frozen weights {frozen.value} ({why(frozen)})")
    intra, inter = self.setting(INTRA_OP), self.setting(INTER_OP)
    if intra.by_user or inter.by_user:
      parts.append(f"intra-op {intra.value} ({why(intra)}), "
                   f"inter-op {inter.value} ({why(inter)})")
    else:
      parts.append(f"intra-op {intra.value}, inter-op {inter.value} ({intra.reason})")
    parts.append(f"allocator {self.allocator}")
    parts.append("bf16 native" if self.cpu.native_bf16 else
                 "bf16 not native (mixed_bfloat16 is slower here)")
    return f"runtime: {', '.join(parts)}; {self.cpu.model}"


def _allocator(environ: Mapping[str, str]) -> str:
  preload = environ.get("LD_PRELOAD", "")
  for name in ("tcmalloc", "jemalloc", "mimalloc"):
    if name in preload:
      return f"{name} (set by you: LD_PRELOAD)"
  if any(key.startswith("MALLOC_") and key.endswith("_") for key in environ):
    return "glibc malloc, tuned (set by you: MALLOC_*)"
  return "glibc malloc (kept)"


def _ours(environ: Mapping[str, str]) -> FrozenSet[str]:
  """The variables a parent process's ``apply`` set (not the user's)."""
  return frozenset(filter(None, environ.get(MARKER, "").split(",")))


def choose(cpu: Cpu, job: str, environ: Mapping[str, str]) -> Choice:
  """The runtime of ``job`` on ``cpu``; a variable already in ``environ``
  (set by the user, not by a parent's ``apply``) is kept and marked.

  Raises:
    ValueError: an unknown job.
  """
  if job not in JOBS:
    raise ValueError(f"job must be one of {JOBS}, got {job!r}")
  ours = _ours(environ)
  where = f"{cpu.isa()} CPU, {job}"
  onednn = ONEDNN_RULES[cpu.kind][job]
  frozen = "1" if onednn == "1" and job in FROZEN_WEIGHT_JOBS else None
  threads = None if cpu.unknown else str(cpu.cores)
  chosen = [
      (ONEDNN, onednn, f"chosen: {where}" if onednn is not None
       else f"not chosen: {where}"),
      (FROZEN_WEIGHTS, frozen, "chosen: weights never change in this job"),
      (INTRA_OP, threads, f"chosen: {cpu.cores} usable cores"),
      (INTER_OP, threads, f"chosen: {cpu.cores} usable cores"),
  ]
  settings = []
  for name, value, reason in chosen:
    if name in environ and name not in ours:
      settings.append(Setting(name, environ[name], reason, by_user=True))
    else:
      settings.append(Setting(name, value, reason))
  return Choice(job, cpu, tuple(settings), _allocator(environ))


# ---------------------------------------------------------------- bf16


# How many times slower mixed_bfloat16 ran than float32 on a CPU without
# native bf16, per CPU kind, for a training step and a forward pass.
# Measured with bench/bf16_cpu.py (bench/README.md, "bf16 without native
# bf16"); keep the two in step (tests/test_runtime.py checks it).
BF16_SLOWDOWN = {
    "avx512": {"train": 3.58, "forward": 2.55},
    "avx2": {"train": 1.73, "forward": 1.92},
}
BF16_SOURCE = ("bench/bf16_cpu.py, bench/README.md: MobileNetV2 at 257 px, "
               "emulated on an AVX-512 Xeon")


def bf16_warning(cpu: Cpu, dtype_policy: str, job: str) -> Optional[str]:
  """The warning for ``mixed_bfloat16`` on a CPU without native bf16, or
  None (also for an unknown CPU, whose flags are not known: Apple M2 or
  Graviton3 do have bfloat16 arithmetic). Warned, not refused: a run may
  still want bf16 on purpose (to check a TPU config on a laptop); float32
  is the advice."""
  if dtype_policy != "mixed_bfloat16" or cpu.native_bf16 or cpu.unknown:
    return None
  factors = BF16_SLOWDOWN.get(cpu.kind)
  what = "training step" if job == "train" else "forward pass"
  measured = (f"a {what} ran {factors['train' if job == 'train' else 'forward']:.2f}x "
              f"slower than in float32 ({BF16_SOURCE})" if factors else
              "not measured here, expect it to be slower than float32")
  return (f"mixed_bfloat16 on {cpu.model} ({cpu.isa()}, no AVX512-BF16 or AMX): "
          f"this CPU has no bfloat16 arithmetic; {measured}. Use "
          "--config.model.dtype_policy=float32 on this CPU.")


# ---------------------------------------------------------------- applying


_applied: Optional[Choice] = None


def current() -> Optional[Choice]:
  """The choice ``apply`` made in this process (None before)."""
  return _applied


def set_env(choice: Choice, environ: Dict[str, str]) -> None:
  """Writes ``choice``'s variables into ``environ``, drops the ones a
  parent process chose and this job leaves to TensorFlow, and records in
  MARKER which are ours (for child processes, which inherit them)."""
  ours = set(_ours(environ))
  for name, value in choice.env().items():
    environ[name] = value
    ours.add(name)
  for setting in choice.settings:
    if setting.value is None and setting.name in ours:
      environ.pop(setting.name, None)
      ours.discard(setting.name)
  environ[MARKER] = ",".join(sorted(ours))


def apply(job: str, cpu: Optional[Cpu] = None,
          environ: Optional[Dict[str, str]] = None, stream=None,
          verbose: bool = False) -> Choice:
  """Chooses the runtime of ``job``, sets its variables in ``environ``
  (``os.environ``) and prints the line to ``stream`` (stderr) for a job of
  ``REPORTED_JOBS``, or any job when ``verbose``. Call it before
  TensorFlow is imported; after, the line says the choice came too late
  and nothing is set."""
  global _applied
  cpu = cpu or this_cpu()
  environ = os.environ if environ is None else environ
  stream = stream or sys.stderr
  choice = choose(cpu, job, environ)
  if "tensorflow" in sys.modules:
    print("runtime: not chosen (TensorFlow was imported before the tool "
          f"started; its settings stay as they were); {cpu.model}", file=stream)
    return choice
  set_env(choice, environ)
  if verbose or job in REPORTED_JOBS:
    print(choice.line(), file=stream, flush=True)
  _applied = choice
  return choice
