"""The command-line tools: one module each under ``deeplab/cli/``, and the
table of them.

Each tool module defines its flags inside its ``main()`` (never at import)
and calls one library function. ``TOOLS`` names every tool once: its
console script (setup.cfg, checked against this table by
tests/test_structure.py), its module, and its runtime job
(``deeplab.runtime.JOBS``), which ``deeplab.runtime.apply`` sets up before
the module, and with it TensorFlow, is imported. Nothing here may import
TensorFlow.

A tool's output starts with what the user asked for: TensorFlow's C++
start-up lines (CUDA stubs, oneDNN notices, CPU feature notes, log lines
written before its logging starts) are left out, by
``TF_CPP_MIN_LOG_LEVEL=2`` and by dropping them from what TensorFlow's
start-up writes to stderr (``quiet_start``). That level holds for the
whole run, not only the start: TensorFlow's C++ info and warning lines are
off throughout. While TensorFlow starts, stderr is held back and written
out after, so a crash during the start (a segfault, an abort) loses what it
wrote: ``--verbose`` is the way to diagnose one. ``--verbose`` (any tool),
or the user's own ``TF_CPP_MIN_LOG_LEVEL`` of 0 or 1 or
``TF_CPP_MAX_VLOG_LEVEL``, keeps TensorFlow's level and stderr as they are
and prints the runtime line for every job.

Ways to run a tool, all through this table:
  deeplab-predict --workdir=W ...            # a console script
  python -m deeplab.cli predict --workdir=W  # a checkout, same tool
  python train.py / eval.py / export.py      # a checkout's top-level entries
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
import sys
import tempfile
from typing import Iterator, List, MutableMapping, Tuple

from deeplab import runtime

SCRIPT_PREFIX = "deeplab-"
VERBOSE_FLAG = "--verbose"
LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
VLOG_LEVEL = "TF_CPP_MAX_VLOG_LEVEL"
# What TensorFlow's start-up writes to stderr at TF_CPP_MIN_LOG_LEVEL=2
# and the user never asked for: the info and warning lines absl writes
# before its logging starts, whatever the level ("I0000 00:00:17.. 123
# port.cc:153] ..."), the note absl writes about them, and the CPU feature
# note's second line. (TensorFlow's own "2026-01-01 12:00:00.000: I ..."
# info and warning lines are not written at that level.) Errors stay,
# except the CUDA libraries' on a machine without a driver and their
# plugins registered twice (TensorFlow 2.19).
STARTUP_NOISE = re.compile(
    r"^([IW]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\] "
    r"|([\d-]+ [\d:.]+: E |E\d{4} [\d:.]+ +\d+ )\S*cuda_\w+\.cc:\d+\] "
    r"(failed call to cuInit|Unable to register cu\w+ factory: Attempting to register)"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow)")


def pop_verbose_flag(argv: List[str], environ: MutableMapping[str, str]) -> bool:
  """Removes ``--verbose`` from ``argv`` (no tool defines it) and returns
  whether TensorFlow's lines are shown: ``--verbose`` was given, or the
  user's own ``TF_CPP_MIN_LOG_LEVEL`` shows info or warning lines (0 or 1;
  TensorFlow reads a value that is not a number as 0), or the user set
  ``TF_CPP_MAX_VLOG_LEVEL``."""
  given = VERBOSE_FLAG in argv[1:]
  argv[1:] = [arg for arg in argv[1:] if arg != VERBOSE_FLAG]
  level = re.match(r"\s*([+-]?\d+)", environ.get(LOG_LEVEL, "2"))
  shows_warnings = not level or int(level.group(1)) < 2
  return given or shows_warnings or VLOG_LEVEL in environ


def startup_noise(line: str) -> bool:
  """Whether ``line`` is one of TensorFlow's start-up lines (``STARTUP_NOISE``)."""
  return bool(STARTUP_NOISE.match(line))


@contextlib.contextmanager
def quiet_start(environ: MutableMapping[str, str]) -> Iterator[None]:
  """TensorFlow's start-up, inside the block, without its start-up lines:
  ``TF_CPP_MIN_LOG_LEVEL=2`` unless the user set it, and the block's stderr
  (file descriptor 2, which TensorFlow's C++ writes to) held back and
  written out after it without the lines of ``STARTUP_NOISE``."""
  environ.setdefault(LOG_LEVEL, "2")
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      lines = held.read().decode(errors="replace").splitlines(keepends=True)
      sys.stderr.write("".join(l for l in lines if not startup_noise(l)))
      sys.stderr.flush()


def _start_tensorflow() -> None:
  """Lets an imported TensorFlow look for GPUs now, inside ``quiet_start``
  (a machine without a CUDA driver logs it then); this fixes no setting
  (devices can still be configured)."""
  if "tensorflow" in sys.modules:
    sys.modules["tensorflow"].config.list_physical_devices("GPU")


@dataclasses.dataclass(frozen=True)
class Tool:
  """One command-line tool.

  Attributes:
    script: its console script, e.g. ``deeplab-train``.
    module: its module under ``deeplab.cli``, e.g. ``train``; the module's
      docstring is the tool's usage text and its ``main()`` runs it.
    job: the runtime job it runs as (``deeplab.runtime.JOBS``).
  """

  script: str
  module: str
  job: str

  @property
  def name(self) -> str:
    """The script without ``deeplab-``: ``python -m deeplab.cli NAME``."""
    return self.script[len(SCRIPT_PREFIX):]

  @property
  def module_name(self) -> str:
    """The full module name, e.g. ``deeplab.cli.train``."""
    return f"{__name__}.{self.module}"

  @property
  def entry_point(self) -> str:
    """The name setup.cfg's console script calls in this package."""
    return self.script.replace("-", "_")

  def __call__(self) -> None:
    """Chooses the job's runtime, then imports the module (quietly unless
    ``pop_verbose_flag``) and runs its ``main()``."""
    verbose = pop_verbose_flag(sys.argv, os.environ)
    runtime.apply(self.job, verbose=verbose)
    with contextlib.nullcontext() if verbose else quiet_start(os.environ):
      module = importlib.import_module(self.module_name)
      _start_tensorflow()
    module.main()


TOOLS: Tuple[Tool, ...] = (
    Tool("deeplab-train", "train", "train"),
    Tool("deeplab-eval", "eval", "eval"),
    Tool("deeplab-export", "export", "export"),
    Tool("deeplab-predict", "predict", "predict"),
    Tool("deeplab-convert", "convert", "tool"),
    Tool("deeplab-summary", "summary", "tool"),
    Tool("deeplab-plot-training", "plot_training", "tool"),
    Tool("deeplab-make-synthetic", "make_synthetic", "tool"),
    Tool("deeplab-build-voc", "build_voc", "tool"),
    Tool("deeplab-build-cityscapes", "build_cityscapes", "tool"),
    Tool("deeplab-build-ade20k", "build_ade20k", "tool"),
    Tool("deeplab-build-camvid", "build_camvid", "tool"),
    Tool("deeplab-build-folder", "build_folder", "tool"),
    Tool("deeplab-build-class-folders", "build_class_folders", "tool"),
    Tool("deeplab-build-tfds", "build_tfds", "tool"),
    Tool("deeplab-inspect", "inspect_labels", "tool"),
)


def tool(name: str) -> Tool:
  """The tool called ``name`` (its script, with or without ``deeplab-``).

  Raises:
    KeyError: no such tool; the message lists them.
  """
  for candidate in TOOLS:
    if name in (candidate.script, candidate.name):
      return candidate
  raise KeyError(f"no tool {name!r}; tools: {', '.join(t.name for t in TOOLS)}")


def __getattr__(name: str) -> Tool:
  """The console scripts' entry points: setup.cfg's
  ``deeplab-train = deeplab.cli:deeplab_train`` calls the tool whose
  script is ``deeplab-train``."""
  for candidate in TOOLS:
    if candidate.entry_point == name:
      return candidate
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
