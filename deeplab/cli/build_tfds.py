r"""Builds records from any tensorflow-datasets dataset with a mask feature,
or (--class_feature) from any tfds image classification dataset.

Usage:
  deeplab-build-tfds --tfds_name=oxford_iiit_pet --split=train \
      --output_dir=OUT --num_classes=3 --label_offset=-1
  deeplab-build-tfds --tfds_name=imagenette --split=train \
      --output_dir=OUT --class_feature=label

The image feature (--image_feature, default 'image') and the segmentation
mask (--mask_feature; default: the first single-channel Image feature whose
name contains 'segmentation', 'mask' or 'label') are taken from each example.
--label_offset is added to mask values (oxford_iiit_pet stores 1..3, so -1
gives ids 0..2). Values then outside 0..num_classes-1 and not the ignore
label are reported like any bad mask.

With --class_feature (a ClassLabel feature, usually 'label') the records
are classification records in the ImageNet layout (image/encoded,
image/class/label with the tfds class id, image/class/text with its name),
for --config.model.task=classification with config.dataset.num_classes
the feature's class count; --label_offset is not applied (use
config.data.label_offset).
"""

from absl import app
from absl import flags

from deeplab.cli import builder_flags
from deeplab.cli import common


def main():
  """Console-script entry point: flags, then ``build_tfds.build``."""
  name = flags.DEFINE_string("tfds_name", None, "TFDS dataset name.")
  split = flags.DEFINE_string("split", "train", "TFDS split (also the records' split name).")
  data_dir = flags.DEFINE_string("data_dir", None, "TFDS data folder.")
  image = flags.DEFINE_string("image_feature", "image", "Image feature name.")
  mask = flags.DEFINE_string("mask_feature", None, "Mask feature name.")
  num_classes = flags.DEFINE_integer("num_classes", None, "Number of classes.")
  ignore = flags.DEFINE_integer("ignore_label", 255, "Ignore label.")
  offset = flags.DEFINE_integer("label_offset", 0, "Added to mask values.")
  class_feature = flags.DEFINE_string(
      "class_feature", None, "A ClassLabel feature: write classification "
      "records (image and class) instead of segmentation records.")
  build_options = builder_flags.define_build_flags()

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not class_feature.value and not num_classes.value:
      raise app.UsageError("--num_classes is required")
    # An extra (pip install 'deeplab-tf2[tfds]'): imported after the flags,
    # so that --help works without it.
    from deeplab_datasets import build_tfds  # pylint: disable=g-import-not-at-top
    output_dir, options = build_options()
    reports = builder_flags.stop_at_strict_error(lambda: build_tfds.build(
        name.value, output_dir, split.value, num_classes.value, data_dir.value,
        image.value, mask.value, ignore.value, offset.value, class_feature.value,
        options))
    builder_flags.print_reports(reports, classification=bool(class_feature.value))

  flags.mark_flags_as_required(["tfds_name"])
  common.run_app(_main, __doc__)
