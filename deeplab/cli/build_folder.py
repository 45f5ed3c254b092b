r"""Builds records from a folder of images and a folder of masks (user data).

Usage:
  deeplab-build-folder --images=DIR --masks=DIR --output_dir=OUT \
      --split=train --num_classes=5 [--ignore_label=255] [--colormap=...]

Images and masks pair by file stem (``a.jpg`` with ``a.png``; use
--mask_suffix for names such as ``a_mask.png``). Masks may be
- grayscale id PNGs (pixel value = class id),
- palette PNGs (palette index = class id, as PASCAL VOC's),
- RGB color masks: give --colormap, either a dataset of the table
  (pascal_voc_seg, cityscapes, camvid, ...) whose colors are the ids, or a
  JSON file {"0": [0, 0, 0], "1": [128, 0, 0], ...} mapping ids to colors;
  --ignore_color names the color of unlabelled pixels.
Run `deeplab-inspect DIR` on the masks first if unsure.

OUT/dataset.json describes the records (classes, --class_names, ignore
label, split sizes, pixel counts per class); training reads it.
"""

from absl import app
from absl import flags

from deeplab.cli import builder_flags
from deeplab_datasets import build_folder


def main():
  """Console-script entry point: flags, then ``build_folder.build``."""
  images = flags.DEFINE_string("images", None, "Folder of images.")
  masks = flags.DEFINE_string("masks", None, "Folder of masks.")
  split = flags.DEFINE_string("split", "train", "Split name of the records.")
  num_classes = flags.DEFINE_integer(
      "num_classes", None, "Number of classes (ids 0..num_classes-1); default: "
      "the --dataset table entry's.")
  ignore_label = flags.DEFINE_integer("ignore_label", None,
                                      "Label of unlabelled pixels (default 255).")
  dataset = flags.DEFINE_string(
      "dataset", None, "Dataset table entry whose classes the masks use.")
  colormap = flags.DEFINE_string(
      "colormap", None, "For RGB masks: a table dataset name or a JSON file "
      "mapping class id to [r, g, b].")
  ignore_color = flags.DEFINE_list(
      "ignore_color", None, "For RGB masks: r,g,b of unlabelled pixels.")
  mask_suffix = flags.DEFINE_string(
      "mask_suffix", "", "Suffix of mask stems, e.g. '_mask' for a_mask.png.")
  class_names = flags.DEFINE_list(
      "class_names", None, "Names of the classes, by id (written to "
      "OUT/dataset.json, which training reads); default: class_0, class_1, ...")

  def build(output_dir, options):
    try:
      spec = build_folder.label_spec(num_classes.value, ignore_label.value,
                                     dataset.value, colormap.value,
                                     ignore_color.value)
    except ValueError as e:
      raise app.UsageError(str(e)) from None
    return build_folder.build(images.value, masks.value, output_dir, spec,
                              split.value, mask_suffix.value, options,
                              class_names=class_names.value or ())

  flags.mark_flags_as_required(["images", "masks"])
  builder_flags.run_builder(build, __doc__)
