"""What the dataset builders share: how a build runs (``BuildOptions``) and
the writing of every split, with the description of the records
(``dataset.json``, ``deeplab.data.description``) beside them."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

from deeplab.data import builder
from deeplab.data import dataset_table
from deeplab.data import description as description_lib


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


def segmentation_description(spec: builder.LabelSpec, dataset: Optional[str] = None,
                             class_names: Sequence[str] = ()
                             ) -> description_lib.Description:
  """What segmentation records built with ``spec`` hold (no splits yet):
  the table's names and colormap for a ``dataset`` of the table; else
  ``class_names`` (default ``dataset_table.generic_names``) and the color table of RGB
  masks as the colormap.

  Raises:
    ValueError: as many names as classes are not given, naming both counts.
  """
  if dataset:
    info = dataset_table.DATASETS[dataset]
    names, colormap = info.class_names, description_lib.colors(info.colormap)
  else:
    names = tuple(class_names) or dataset_table.generic_names(spec.num_classes)
    colormap = description_lib.colors(spec.color_table)
    if colormap is not None and len(colormap) != spec.num_classes:
      colormap = None
  if len(names) != spec.num_classes:
    raise ValueError(f"{len(names)} class names {tuple(names)} for "
                     f"num_classes={spec.num_classes}")
  return description_lib.Description(
      "segmentation", dataset or description_lib.DEFAULT_NAME, spec.num_classes,
      tuple(names), spec.ignore_label, colormap)


def build(splits: Dict[str, Sequence[builder.Sample]], spec: builder.LabelSpec,
          output_dir: str, options: Optional[BuildOptions] = None,
          dataset: Optional[str] = None,
          unlabelled_splits: Sequence[str] = (),
          class_names: Sequence[str] = ()) -> List[builder.BuildReport]:
  """Writes every split as segmentation records, and describes them in
  ``output_dir/dataset.json`` (``segmentation_description``, with each
  split's record and pixel counts; other splits described there stay).

  Args:
    splits: ``{split: samples}``.
    spec: label encoding of the masks.
    output_dir: folder of the ``{split}-NNNNN-of-NNNNN.tfrecord`` shards.
    options: how the records are written (default: ``BuildOptions()``).
    dataset: table name, to check split sizes against the table and to
      name the records' classes.
    unlabelled_splits: splits whose images may lack masks.
    class_names: the classes' names where ``dataset`` is not given.

  Returns:
    One report per split; its ``problems`` list what was left out.

  Raises:
    ValueError: no ``output_dir``; names that do not fit the class count;
      ``output_dir`` holds records of other classes (its ``dataset.json``).
    builder.BuildError: a problem in the input data, with ``options.strict``.
  """
  options = _checked(output_dir, options)
  described = segmentation_description(spec, dataset, class_names)
  description_lib.check_folder(output_dir, described)
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
  _describe(output_dir, described, reports)
  return reports


def _describe(output_dir: str, described: description_lib.Description,
              reports: Sequence[builder.BuildReport]) -> None:
  """Writes ``described`` with the splits of ``reports`` (pixel counts of
  those that hold masks)."""
  splits = {r.split: description_lib.split_entry(
      r.written, r.label_counts if r.label_counts.masks else None,
      described.num_classes, described.ignore_label) for r in reports}
  description_lib.write(output_dir, dataclasses.replace(described, splits=splits))


def build_classification(splits: Dict[str, Sequence[builder.ClassSample]],
                         output_dir: str, options: Optional[BuildOptions] = None,
                         dataset: Optional[str] = None
                         ) -> List[builder.BuildReport]:
  """Writes every split as classification records (the ImageNet layout),
  and describes them in ``output_dir/dataset.json``: the classes of the
  table's ``dataset``, else labels 0..(largest label) named by the
  samples' texts.

  Args:
    splits: ``{split: samples}``.
    output_dir: folder of the shards.
    options: how the records are written (split sizes are not checked).
    dataset: table name of the records' classes.

  Returns:
    One report per split.

  Raises:
    ValueError: no ``output_dir``, or ``output_dir`` holds records of
      other classes (its ``dataset.json``).
    builder.BuildError: a problem in the input data, with ``options.strict``.
  """
  options = _checked(output_dir, options)
  if dataset:
    names = dataset_table.DATASETS[dataset].class_names
  else:
    samples = [s for split in splits.values() for s in split]
    names = description_lib.class_names_from(
        samples, max((s.label for s in samples), default=-1) + 1)
  described = description_lib.Description(
      "classification", dataset or description_lib.DEFAULT_NAME, len(names),
      tuple(names), None, None)
  description_lib.check_folder(output_dir, described)
  reports = [builder.build_classification_split(
      samples, output_dir, split, options.num_shards, strict=options.strict,
      workers=options.workers)
             for split, samples in splits.items()]
  _describe(output_dir, described, reports)
  return reports
