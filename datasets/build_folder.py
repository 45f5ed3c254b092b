"""Builds records from a folder of images and a folder of masks (user data).

``build`` writes the records; the tool is ``deeplab-build-folder``
(deeplab/cli/build_folder.py), whose docstring says how to use it.
"""

import json
from typing import List, Optional, Sequence

import tensorflow as tf

from deeplab.data import builder
from deeplab.data import dataset_table

from . import common


def color_table(value: str):
  """Colors per id from a table dataset name or a JSON file.

  Raises:
    ValueError: ``value`` is neither, or the file's ids are not 0..n-1.
  """
  if value in dataset_table.DATASETS:
    return tuple(tuple(int(c) for c in rgb)
                 for rgb in dataset_table.DATASETS[value].colormap)
  if not tf.io.gfile.exists(value):
    raise ValueError(
        f"--colormap={value!r} is neither a dataset of the table "
        f"({sorted(dataset_table.DATASETS)}) nor a JSON file")
  with tf.io.gfile.GFile(value) as f:
    table = {int(k): v for k, v in json.load(f).items()}
  if sorted(table) != list(range(len(table))):
    raise ValueError(
        f"--colormap {value}: ids must be 0..n-1, got {sorted(table)}")
  return tuple(tuple(int(c) for c in table[i]) for i in range(len(table)))


def label_spec(num_classes: Optional[int] = None,
               ignore_label: Optional[int] = None,
               dataset: Optional[str] = None, colormap: Optional[str] = None,
               ignore_color: Optional[Sequence[int]] = None) -> builder.LabelSpec:
  """The masks' label encoding.

  Args:
    num_classes: ids 0..num_classes-1 (default: the ``dataset``'s).
    ignore_label: label of unlabelled pixels (default: the ``dataset``'s,
      or 255).
    dataset: a dataset table entry whose classes the masks use.
    colormap: for RGB masks, a table dataset name or a JSON file mapping
      class id to [r, g, b] (``color_table``).
    ignore_color: for RGB masks, the color of unlabelled pixels.

  Raises:
    ValueError: neither ``num_classes`` nor ``dataset``, or a bad colormap.
  """
  if dataset:
    info = dataset_table.get(dataset, num_classes, ignore_label)
    num_classes, ignore = info.num_classes, info.ignore_label
  elif num_classes:
    ignore = 255 if ignore_label is None else ignore_label
  else:
    raise ValueError("give --num_classes or --dataset")
  table = color_table(colormap) if colormap else None
  if table is not None:
    table = table[:num_classes]
  ignore_color = tuple(int(c) for c in ignore_color) if ignore_color else None
  return builder.LabelSpec(num_classes, ignore, color_table=table,
                           ignore_color=ignore_color)


def build(images: str, masks: str, output_dir: str, spec: builder.LabelSpec,
          split: str = "train", mask_suffix: str = "",
          options: Optional[common.BuildOptions] = None,
          class_names: Sequence[str] = ()) -> List[builder.BuildReport]:
  """Writes the pairs of ``images`` and ``masks`` (by file stem, mask stems
  ending in ``mask_suffix``) as the records of ``split``, their classes
  named ``class_names`` in ``dataset.json`` (default ``class_<id>``)."""
  samples = builder.pair_by_stem(images, masks, mask_suffix)
  return common.build({split: samples}, spec, output_dir, options,
                      class_names=class_names)
