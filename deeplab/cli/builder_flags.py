"""What the dataset builders' tools share: the flags of every build
(``datasets.common.BuildOptions``) and how a build reports."""

from __future__ import annotations

import sys
from typing import Callable, List, Sequence, Tuple, TypeVar

from absl import app
from absl import flags

from deeplab.cli import common as cli_common
from deeplab.data import builder
from deeplab_datasets import common

T = TypeVar("T")


def define_build_flags() -> Callable[[], Tuple[str, common.BuildOptions]]:
  """Defines the flags every dataset builder has: ``--output_dir``
  (required), ``--num_shards``, ``--strict``, ``--workers``,
  ``--check_split_sizes``.

  Returns:
    A function giving, once flags are parsed, ``(output_dir, options)``.
  """
  output_dir = flags.DEFINE_string(
      "output_dir", None, "Folder for {split}-NNNNN-of-NNNNN.tfrecord shards.")
  num_shards = flags.DEFINE_integer(
      "num_shards", None, "Shards per split (fewer if a split has fewer images). "
      "Default: one per ~100 images, at least 32, so that a cluster of up to 32 "
      "workers (or TPU hosts) gives each worker files of its own; a larger "
      "cluster wants at least one shard per worker.", lower_bound=1)
  strict = flags.DEFINE_bool(
      "strict", False, "Stop at the first problem in the input data instead of "
      "listing all problems at the end.")
  workers = flags.DEFINE_integer(
      "workers", None, "Encoding processes (default: all cores).")
  check_sizes = flags.DEFINE_bool(
      "check_split_sizes", True, "Report a split whose image count differs "
      "from the dataset table's (turn off to build part of a dataset).")
  flags.mark_flag_as_required("output_dir")

  def values() -> Tuple[str, common.BuildOptions]:
    return output_dir.value, common.BuildOptions(
        num_shards=num_shards.value, strict=strict.value, workers=workers.value,
        check_split_sizes=check_sizes.value)

  return values


def stop_at_strict_error(build: Callable[[], T]) -> T:
  """``build()``; under ``--strict``, its first problem ends the tool
  (exit code 1)."""
  try:
    return build()
  except builder.BuildError as e:
    print(f"error (--strict): {e}", file=sys.stderr)
    sys.exit(1)


def print_reports(reports: Sequence[builder.BuildReport],
                  classification: bool = False) -> None:
  """Prints the reports, and exits 1 if any lists a problem."""
  for report in reports:
    print(report.summary())
  if any(r.problems for r in reports):
    print("Records were written without the files listed above." if classification
          else "Records were written without the files listed above (or with "
          "their bad pixels set to ignore).", file=sys.stderr)
    sys.exit(1)


def run_builder(build: Callable[[str, common.BuildOptions], List[builder.BuildReport]],
                doc: str) -> None:
  """Runs a segmentation builder's tool: defines the flags of every build,
  then, once they are parsed, calls ``build(output_dir, options)`` and
  prints its reports (``stop_at_strict_error``, ``print_reports``).

  Args:
    build: writes the records (the tool's own flags are read in it).
    doc: the tool's usage text (``common.run_app``).
  """
  build_options = define_build_flags()

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    output_dir, options = build_options()
    print_reports(stop_at_strict_error(lambda: build(output_dir, options)))

  cli_common.run_app(_main, doc)
