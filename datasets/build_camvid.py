"""Builds CamVid records (the 11-class SegNet split).

``build`` writes the records; the tool is ``deeplab-build-camvid``
(deeplab/cli/build_camvid.py), whose docstring says how to use it.
"""

import os
from typing import List, Optional

import tensorflow as tf

from deeplab.data import builder
from deeplab.data import dataset_table

from . import common


def splits(root: str):
  """``({split: samples}, [splits without an annotation folder])``."""
  found, unlabelled = {}, []
  for split in ("train", "val", "test"):
    image_dir = os.path.join(root, split)
    if tf.io.gfile.isdir(image_dir):
      mask_dir = os.path.join(root, split + "annot")
      if not tf.io.gfile.isdir(mask_dir):
        mask_dir = None
        unlabelled.append(split)
      found[split] = builder.pair_by_stem(image_dir, mask_dir)
  if not found:
    raise FileNotFoundError(
        f"no train/, val/ or test/ folder in --camvid_root={root!r}")
  return found, unlabelled


def build(camvid_root: str, output_dir: str,
          options: Optional[common.BuildOptions] = None
          ) -> List[builder.BuildReport]:
  """Writes each split found under ``camvid_root`` (a split without its
  annotation folder is written unlabelled)."""
  info = dataset_table.DATASETS["camvid"]
  found, unlabelled = splits(camvid_root)
  return common.build(found, builder.LabelSpec(info.num_classes, info.ignore_label),
                      output_dir, options, dataset="camvid",
                      unlabelled_splits=unlabelled)

