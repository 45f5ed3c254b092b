"""The command-line tools: one module each under ``deeplab/cli/``, and the
table of them.

Each tool module defines its flags inside its ``main()`` (never at import)
and calls one library function. ``TOOLS`` names every tool once: its
console script (setup.cfg, checked against this table by
tests/test_structure.py), its module, and its runtime job
(``deeplab.runtime.JOBS``), which ``deeplab.runtime.launch`` sets up before
the module, and with it TensorFlow, is imported. Nothing here may import
TensorFlow.

Ways to run a tool, all through this table:
  deeplab-predict --workdir=W ...            # a console script
  python -m deeplab.cli predict --workdir=W  # a checkout, same tool
  python train.py / eval.py / export.py      # a checkout's top-level entries
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

from deeplab import runtime

SCRIPT_PREFIX = "deeplab-"


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
    """Chooses the job's runtime, then imports the module and runs it."""
    runtime.launch(self.module_name, self.job)


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
