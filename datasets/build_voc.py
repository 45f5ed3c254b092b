"""Builds PASCAL VOC 2012 segmentation records.

``build`` writes the records; the tool is ``deeplab-build-voc``
(deeplab/cli/build_voc.py), whose docstring says how to use it.
"""

import os
from typing import List, Optional

import tensorflow as tf

from deeplab.data import builder
from deeplab.data import dataset_table

from . import common


def read_list(root: str, split: str):
  path = os.path.join(root, "ImageSets", "Segmentation", split + ".txt")
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"split list {path!r} does not exist")
  with tf.io.gfile.GFile(path) as f:
    return [line.strip() for line in f if line.strip()]


def samples_for(root: str, stems, mask_dir: str):
  return [builder.Sample(os.path.join(root, "JPEGImages", s + ".jpg"),
                         os.path.join(mask_dir, s + ".png")
                         if tf.io.gfile.exists(os.path.join(mask_dir, s + ".png"))
                         else None)
          for s in stems]


def splits(root: str, aug_dir=None):
  masks = os.path.join(root, "SegmentationClass")
  found = {split: samples_for(root, read_list(root, split), masks)
           for split in ("train", "val", "trainval")}
  if aug_dir:
    if not tf.io.gfile.isdir(aug_dir):
      raise FileNotFoundError(f"--train_aug_masks={aug_dir!r} does not exist")
    val = set(read_list(root, "val"))
    stems = sorted(os.path.splitext(n)[0] for n in tf.io.gfile.listdir(aug_dir)
                   if n.endswith(".png") and os.path.splitext(n)[0] not in val)
    found["train_aug"] = samples_for(root, stems, aug_dir)
  return found


def build(voc_root: str, output_dir: str, train_aug_masks: Optional[str] = None,
          options: Optional[common.BuildOptions] = None
          ) -> List[builder.BuildReport]:
  """Writes train, val and trainval, and train_aug when ``train_aug_masks``
  (a folder of SBD-augmented masks) is given."""
  info = dataset_table.DATASETS["pascal_voc_seg"]
  return common.build(splits(voc_root, train_aug_masks),
                      builder.LabelSpec(info.num_classes, info.ignore_label),
                      output_dir, options, dataset="pascal_voc_seg")

