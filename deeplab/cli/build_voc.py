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

from absl import flags

from deeplab.cli import builder_flags
from deeplab_datasets import build_voc


def main():
  """Console-script entry point: flags, then ``build_voc.build``."""
  root = flags.DEFINE_string("voc_root", None, "The VOC2012 folder.")
  train_aug_masks = flags.DEFINE_string(
      "train_aug_masks", None, "Folder of SBD-augmented masks for train_aug.")
  flags.mark_flags_as_required(["voc_root"])
  builder_flags.run_builder(
      lambda output_dir, options: build_voc.build(root.value, output_dir, train_aug_masks.value, options),
      __doc__)
