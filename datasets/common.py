"""What the dataset builders share: how a build runs (``BuildOptions``) and
the writing of every split."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

from deeplab.data import builder
from deeplab.data import dataset_table


@dataclasses.dataclass(frozen=True)
class BuildOptions:
  """How records are written, whatever the dataset.

  Attributes:
    num_shards: shards per split (fewer if a split has fewer images); None:
      one per ~100 images, at least 32, so that a cluster of up to 32
      workers (or TPU hosts) gives each worker files of its own.
    strict: stop at the first problem in the input data
      (``builder.BuildError``) instead of listing all problems.
    workers: encoding processes (None: all cores).
    check_split_sizes: report a split whose image count differs from the
      dataset table's (off to build part of a dataset).
  """

  num_shards: Optional[int] = None
  strict: bool = False
  workers: Optional[int] = None
  check_split_sizes: bool = True


def _checked(output_dir: str, options: Optional[BuildOptions]) -> BuildOptions:
  """``options`` (default ``BuildOptions()``), once ``output_dir`` is given."""
  if not output_dir:
    raise ValueError("output_dir is required (--output_dir)")
  return options or BuildOptions()


def build(splits: Dict[str, Sequence[builder.Sample]], spec: builder.LabelSpec,
          output_dir: str, options: Optional[BuildOptions] = None,
          dataset: Optional[str] = None,
          unlabelled_splits: Sequence[str] = ()) -> List[builder.BuildReport]:
  """Writes every split as segmentation records.

  Args:
    splits: ``{split: samples}``.
    spec: label encoding of the masks.
    output_dir: folder of the ``{split}-NNNNN-of-NNNNN.tfrecord`` shards.
    options: how the records are written (default: ``BuildOptions()``).
    dataset: table name, to check split sizes against the table.
    unlabelled_splits: splits whose images may lack masks.

  Returns:
    One report per split; its ``problems`` list what was left out.

  Raises:
    ValueError: no ``output_dir``.
    builder.BuildError: a problem in the input data, with ``options.strict``.
  """
  options = _checked(output_dir, options)
  expected = (dataset_table.DATASETS[dataset].splits
              if dataset and options.check_split_sizes else {})
  reports = []
  for split, samples in splits.items():
    split_spec = spec
    if split in unlabelled_splits:
      split_spec = builder.LabelSpec(**{**spec.__dict__, "require_mask": False})
    reports.append(builder.build_split(
        samples, split_spec, output_dir, split, options.num_shards,
        expected_count=expected.get(split), strict=options.strict,
        workers=options.workers))
  return reports


def build_classification(splits: Dict[str, Sequence[builder.ClassSample]],
                         output_dir: str, options: Optional[BuildOptions] = None
                         ) -> List[builder.BuildReport]:
  """Writes every split as classification records (the ImageNet layout).

  Args:
    splits: ``{split: samples}``.
    output_dir: folder of the shards.
    options: how the records are written (split sizes are not checked).

  Returns:
    One report per split.

  Raises:
    ValueError: no ``output_dir``.
    builder.BuildError: a problem in the input data, with ``options.strict``.
  """
  options = _checked(output_dir, options)
  return [builder.build_classification_split(
      samples, output_dir, split, options.num_shards, strict=options.strict,
      workers=options.workers)
          for split, samples in splits.items()]
