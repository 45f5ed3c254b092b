"""Builds CamVid records (the 11-class SegNet split).

``build`` writes the records; the tool is ``deeplab-build-camvid``
(deeplab/cli/build_camvid.py), whose docstring says how to use it.
"""

import collections
import dataclasses
import os
from typing import Dict, List, Optional, Sequence

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


def sequence(sample: builder.Sample) -> str:
  """The recording a CamVid frame comes from: its file name up to the first
  underscore (``0016E5_07959.png`` -> ``0016E5``; ``Seq05VD_f00120.png`` ->
  ``Seq05VD``)."""
  return os.path.basename(sample.image_path).split("_", 1)[0]


def check_sequences(camvid_root: str, val_sequences: Sequence[str]) -> None:
  """Checks ``--val_sequences`` against the frames under ``camvid_root``
  (``split_by_sequence``'s checks) before anything is written.

  Raises:
    ValueError, FileNotFoundError: as ``split_by_sequence`` and ``splits``.
  """
  if val_sequences:
    found, unlabelled = splits(camvid_root)
    split_by_sequence(found, val_sequences, unlabelled)


def split_by_sequence(found: Dict[str, Sequence[builder.Sample]],
                      val_sequences: Sequence[str],
                      unlabelled: Sequence[str] = ()
                      ) -> Dict[str, List[builder.Sample]]:
  """Pools the train and val frames (both labelled) and splits them again
  by recording: the frames of ``val_sequences`` become ``val``, all
  others ``train``; ``test`` stays as found, in neither.

  Raises:
    ValueError: train or val has no annotation folder, a sequence in
      ``val_sequences`` has no train or val frame, or every frame would
      go to val.
  """
  unlabelled_pooled = [split for split in ("train", "val") if split in unlabelled]
  if unlabelled_pooled:
    raise ValueError(
        f"--val_sequences splits labelled frames again, but "
        f"{', '.join(s + '/' for s in unlabelled_pooled)} has no "
        f"{', '.join(s + 'annot/' for s in unlabelled_pooled)} folder beside it")
  pooled = [s for split in ("train", "val") for s in found.get(split, ())]
  counts = collections.Counter(sequence(s) for s in pooled)
  missing = [name for name in val_sequences if name not in counts]
  if missing:
    raise ValueError(
        f"--val_sequences: no train or val frame of {', '.join(missing)}; the "
        f"frames are of {', '.join(f'{k} ({v})' for k, v in sorted(counts.items()))}")
  held_out = set(val_sequences)
  resplit = {"train": [s for s in pooled if sequence(s) not in held_out],
             "val": [s for s in pooled if sequence(s) in held_out]}
  if not resplit["train"]:
    raise ValueError(f"--val_sequences={','.join(val_sequences)} leaves no "
                     "frame to train on")
  if "test" in found:
    resplit["test"] = list(found["test"])
  return resplit


def build(camvid_root: str, output_dir: str,
          options: Optional[common.BuildOptions] = None,
          val_sequences: Sequence[str] = ()) -> List[builder.BuildReport]:
  """Writes each split found under ``camvid_root`` (a split without its
  annotation folder is written unlabelled). With ``val_sequences`` the
  train and val frames are split again by recording
  (``split_by_sequence``), so validation measures streets never trained
  on, and split sizes are not checked against the table."""
  info = dataset_table.DATASETS["camvid"]
  found, unlabelled = splits(camvid_root)
  if val_sequences:
    found = split_by_sequence(found, val_sequences, unlabelled)
    options = dataclasses.replace(options or common.BuildOptions(),
                                  check_split_sizes=False)
  return common.build(found, builder.LabelSpec(info.num_classes, info.ignore_label),
                      output_dir, options, dataset="camvid",
                      unlabelled_splits=unlabelled)

