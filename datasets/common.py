"""Flags and the run loop shared by the dataset builders."""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Sequence

from absl import flags

from deeplab.data import builder
from deeplab.data import registry

OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Folder for {split}-NNNNN-of-NNNNN.tfrecord shards.")
NUM_SHARDS = flags.DEFINE_integer(
    "num_shards", None, "Shards per split (fewer if a split has fewer images). "
    "Default: one per ~100 images, at least 32, so that a cluster of up to 32 "
    "workers (or TPU hosts) gives each worker files of its own; a larger "
    "cluster wants at least one shard per worker.", lower_bound=1)
STRICT = flags.DEFINE_bool(
    "strict", False, "Stop at the first problem in the input data instead of "
    "listing all problems at the end.")
WORKERS = flags.DEFINE_integer(
    "workers", None, "Encoding processes (default: all cores).")
CHECK_SIZES = flags.DEFINE_bool(
    "check_split_sizes", True, "Report a split whose image count differs "
    "from the dataset table's (turn off to build part of a dataset).")


def build(splits: Dict[str, Sequence[builder.Sample]], spec: builder.LabelSpec,
          dataset: Optional[str] = None,
          unlabelled_splits: Sequence[str] = ()) -> List[builder.BuildReport]:
  """Builds every split, prints the reports, exits 1 if there were problems.

  Args:
    splits: ``{split: samples}``.
    spec: label encoding of the masks.
    dataset: table name, to check split sizes against the table.
    unlabelled_splits: splits whose images may lack masks.
  """
  if not OUTPUT_DIR.value:
    raise flags.ValidationError("--output_dir is required")
  expected = (registry.DATASETS[dataset].splits
              if dataset and CHECK_SIZES.value else {})
  reports = []
  try:
    for split, samples in splits.items():
      split_spec = spec
      if split in unlabelled_splits:
        split_spec = builder.LabelSpec(**{**spec.__dict__, "require_mask": False})
      reports.append(builder.build_split(
          samples, split_spec, OUTPUT_DIR.value, split, NUM_SHARDS.value,
          expected_count=expected.get(split), strict=STRICT.value,
          workers=WORKERS.value))
  except builder.BuildError as e:
    print(f"error (--strict): {e}", file=sys.stderr)
    sys.exit(1)
  for report in reports:
    print(report.summary())
  if any(r.problems for r in reports):
    print("Records were written without the files listed above "
          "(or with their bad pixels set to ignore).", file=sys.stderr)
    sys.exit(1)
  return reports


def build_classification(splits: Dict[str, Sequence[builder.ClassSample]]
                         ) -> List[builder.BuildReport]:
  """Builds every split of classification records (the ImageNet layout),
  prints the reports, exits 1 if there were problems."""
  if not OUTPUT_DIR.value:
    raise flags.ValidationError("--output_dir is required")
  try:
    reports = [builder.build_classification_split(
        samples, OUTPUT_DIR.value, split, NUM_SHARDS.value,
        strict=STRICT.value, workers=WORKERS.value)
               for split, samples in splits.items()]
  except builder.BuildError as e:
    print(f"error (--strict): {e}", file=sys.stderr)
    sys.exit(1)
  for report in reports:
    print(report.summary())
  if any(r.problems for r in reports):
    print("Records were written without the files listed above.",
          file=sys.stderr)
    sys.exit(1)
  return reports
