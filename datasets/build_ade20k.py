"""Builds ADE20K (SceneParsing) records.

``build`` writes the records; the tool is ``deeplab-build-ade20k``
(deeplab/cli/build_ade20k.py), whose docstring says how to use it.
"""

import os
from typing import List, Optional

import tensorflow as tf

from deeplab.data import builder
from deeplab.data import dataset_table

from . import common

SPLITS = {"train": "training", "val": "validation"}


def splits(root: str):
  return {split: builder.pair_by_stem(os.path.join(root, "images", folder),
                                      os.path.join(root, "annotations", folder))
          for split, folder in SPLITS.items()
          if tf.io.gfile.isdir(os.path.join(root, "images", folder))}


def build(ade20k_root: str, output_dir: str,
          options: Optional[common.BuildOptions] = None
          ) -> List[builder.BuildReport]:
  """Writes the train and val splits found under ``ade20k_root``.

  Raises:
    FileNotFoundError: neither split is there.
  """
  info = dataset_table.DATASETS["ade20k"]
  found = splits(ade20k_root)
  if not found:
    raise FileNotFoundError(f"no images/training or images/validation under "
                            f"--ade20k_root={ade20k_root!r}")
  return common.build(found, builder.LabelSpec(info.num_classes, info.ignore_label),
                      output_dir, options, dataset="ade20k")

