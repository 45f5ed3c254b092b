r"""Builds records from a folder of images and a folder of masks (user data).

Usage:
  deeplab-build-folder --images=DIR --masks=DIR --output_dir=OUT \
      --split=train --num_classes=5 [--ignore_label=255] [--colormap=...] \
      [--mask_format=auto|palette|grey|rgb|binary|id16]

Images and masks pair by file stem (``a.jpg`` with ``a.png``; use
--mask_suffix for names such as ``a_mask.png``); both are turned upright by
their EXIF orientation first. Masks may be
- palette PNGs (palette index = class id, as PASCAL VOC's),
- grey id PNGs (pixel value = class id),
- RGB color masks: give --colormap, either a dataset of the table
  (pascal, cityscapes, camvid, ...) whose colors are the ids, a JSON file
  ([[0, 0, 0], [128, 0, 0], ...] or {"0": [0, 0, 0], ...}), a text file
  with one color per class (``r g b``, ``r,g,b`` or ``#rrggbb`` per line),
  or a palette PNG whose palette is the table; --ignore_color names the
  color of unlabelled pixels,
- 0/255 binary masks with --num_classes=2 (255 -> class 1; with ignore
  label 255 they are ambiguous: pass --mask_format=binary, or =grey when
  255 marks unlabelled pixels),
- 16-bit id PNGs (values = class ids).
--mask_format=auto recognises each file's form; "Mask formats" in
docs/datasets.md gives the rule. JPEG masks are refused (lossy). Run
`deeplab-inspect DIR` on the masks first if unsure.
"""

from absl import app
from absl import flags

from deeplab.cli import builder_flags
from deeplab.data import masks as mask_forms
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
      "colormap", None, "For RGB masks: the color of each class id: a table "
      "dataset name (pascal, cityscapes, camvid, ...), a JSON file, a text file "
      "with one color per line, or a palette PNG whose palette is the table.")
  ignore_color = flags.DEFINE_list(
      "ignore_color", None, "For RGB masks: r,g,b of unlabelled pixels.")
  mask_format = flags.DEFINE_enum(
      "mask_format", "auto", mask_forms.MASK_FORMATS, "The masks' form: auto "
      "recognises each file's (palette: palette index = id; grey: value = id; "
      "rgb: colors through --colormap; binary: 0/255 -> 0/1; id16: 16-bit ids).")
  mask_suffix = flags.DEFINE_string(
      "mask_suffix", "", "Suffix of mask stems, e.g. '_mask' for a_mask.png.")

  def build(output_dir, options):
    try:
      spec = build_folder.label_spec(num_classes.value, ignore_label.value,
                                     dataset.value, colormap.value,
                                     ignore_color.value, mask_format.value)
    except ValueError as e:
      raise app.UsageError(str(e)) from None
    return build_folder.build(images.value, masks.value, output_dir, spec,
                              split.value, mask_suffix.value, options)

  flags.mark_flags_as_required(["images", "masks"])
  builder_flags.run_builder(build, __doc__)
