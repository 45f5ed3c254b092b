r"""Builds classification records from a folder of class folders.

Usage:
  deeplab-build-class-folders --image_dir=DIR --output_dir=OUT \
      [--split=train] [--first_label=0]

DIR holds one folder per class (DIR/<class>/<image>); classes are the
folder names in sorted order, numbered from --first_label (1 leaves 0 free
as a background class, as the ImageNet records of the widely used
ImageNet-to-TFRecord scripts). Records are in that ImageNet layout
(image/encoded, image/class/label, image/class/text, ...), in a seeded
random order; every image is checked and converted as for segmentation
records (gray, palette, alpha, 16-bit). OUT/labels-<split>.txt lists
"<id> <name>" per class. Train a classifier on them with
--config.model.task=classification --config.dataset.num_classes=N (the
class count plus --first_label).
"""

import os

from absl import flags
import tensorflow as tf

from deeplab import cli
from deeplab.data import builder

from . import common

_IMAGE_DIR = flags.DEFINE_string("image_dir", None,
                                 "Folder of class folders (DIR/<class>/<image>).")
_SPLIT = flags.DEFINE_string("split", "train", "Split name of the records.")
_FIRST_LABEL = flags.DEFINE_integer(
    "first_label", 0, "Label of the first class (sorted by folder name).",
    lower_bound=0)


def _main(argv):
  del argv
  samples, classes = builder.list_class_folders(_IMAGE_DIR.value,
                                                _FIRST_LABEL.value)
  common.build_classification({_SPLIT.value: samples})
  path = os.path.join(common.OUTPUT_DIR.value, f"labels-{_SPLIT.value}.txt")
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("".join(f"{i} {name}\n" for i, name in
                    enumerate(classes, start=_FIRST_LABEL.value)))
  print(f"{len(classes)} classes (labels {_FIRST_LABEL.value}.."
        f"{_FIRST_LABEL.value + len(classes) - 1}) listed in {path}")


def main():
  """Console-script entry point."""
  flags.mark_flags_as_required(["image_dir", "output_dir"])
  cli.run_app(_main, __doc__)


if __name__ == "__main__":
  main()
