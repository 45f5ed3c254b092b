"""Builds Cityscapes records, gtFine label ids mapped to the 19 train ids.

``build`` writes the records; the tool is ``deeplab-build-cityscapes``
(deeplab/cli/build_cityscapes.py), whose docstring says how to use it.
"""

import os
from typing import List, Optional

import tensorflow as tf

from deeplab.data import builder
from deeplab.data import dataset_table

from . import common


def splits(root: str):
  found = {}
  for split in ("train", "val"):
    images = sorted(tf.io.gfile.glob(os.path.join(
        root, "leftImg8bit", split, "*", "*_leftImg8bit.png")))
    if not images:
      continue
    samples = []
    for image in images:
      city = os.path.basename(os.path.dirname(image))
      stem = os.path.basename(image)[:-len("_leftImg8bit.png")]
      mask = os.path.join(root, "gtFine", split, city,
                          stem + "_gtFine_labelIds.png")
      samples.append(builder.Sample(image, mask if tf.io.gfile.exists(mask) else None))
    found[split] = samples
  if not found:
    raise FileNotFoundError(f"no leftImg8bit/train or leftImg8bit/val images "
                            f"under --cityscapes_root={root!r}")
  return found


def build(cityscapes_root: str, output_dir: str,
          options: Optional[common.BuildOptions] = None
          ) -> List[builder.BuildReport]:
  """Writes the train and val splits found under ``cityscapes_root``, label
  ids mapped to train ids."""
  info = dataset_table.DATASETS["cityscapes"]
  spec = builder.LabelSpec(
      info.num_classes, info.ignore_label,
      id_map=tuple(sorted(dataset_table.CITYSCAPES_LABEL_TO_TRAIN_ID.items())))
  return common.build(splits(cityscapes_root), spec, output_dir, options,
                      dataset="cityscapes")

