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

from absl import app
from absl import flags

from deeplab.cli import builder_flags
from deeplab.cli import common
from deeplab_datasets import build_class_folders


def main():
  """Console-script entry point: flags, then ``build_class_folders.build``."""
  image_dir = flags.DEFINE_string("image_dir", None,
                                  "Folder of class folders (DIR/<class>/<image>).")
  split = flags.DEFINE_string("split", "train", "Split name of the records.")
  first_label = flags.DEFINE_integer(
      "first_label", 0, "Label of the first class (sorted by folder name).",
      lower_bound=0)
  build_options = builder_flags.define_build_flags()

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    output_dir, options = build_options()
    reports, classes, path = builder_flags.stop_at_strict_error(
        lambda: build_class_folders.build(image_dir.value, output_dir,
                                          split.value, first_label.value, options))
    builder_flags.print_reports(reports, classification=True)
    first = first_label.value
    print(f"{len(classes)} classes (labels {first}..{first + len(classes) - 1}) "
          f"listed in {path}")

  flags.mark_flags_as_required(["image_dir"])
  common.run_app(_main, __doc__)
