r"""Builds PASCAL VOC 2012 segmentation records (21 classes, 255 ignored).

Usage:
  deeplab-build-voc --voc_root=VOCdevkit/VOC2012 --output_dir=OUT \
      [--train_aug_masks=SegmentationClassAug]

Reads ImageSets/Segmentation/{train,val,trainval}.txt, JPEGImages/ and
SegmentationClass/ (palette PNGs whose palette index is the class id and
255 the object border, read as ids without color conversion, as the
original's remove_gt_colormap.py does). With --train_aug_masks (the
SBD-augmented masks as id or palette PNGs, 12031 files in the usual
distribution) it also writes train_aug: every stem with an augmented mask
minus the val stems (10582 images).
"""

if __name__ == "__main__":
  # `python -m`: the runtime is chosen before TensorFlow loads
  # (deeplab/runtime.py), then main() runs from a fresh import of this module.
  from deeplab import runtime

  runtime.launch(__spec__.name)

import os

from absl import flags
import tensorflow as tf

from deeplab import cli
from deeplab.data import builder
from deeplab.data import registry

from . import common

_ROOT = flags.DEFINE_string("voc_root", None, "The VOC2012 folder.")
_AUG = flags.DEFINE_string("train_aug_masks", None,
                           "Folder of SBD-augmented masks for train_aug.")


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


def _main(argv):
  del argv
  info = registry.DATASETS["pascal_voc_seg"]
  common.build(splits(_ROOT.value, _AUG.value),
               builder.LabelSpec(info.num_classes, info.ignore_label),
               dataset="pascal_voc_seg")


def main():
  """Console-script entry point."""
  flags.mark_flags_as_required(["voc_root", "output_dir"])
  cli.run_app(_main, __doc__)

