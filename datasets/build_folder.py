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
"""

if __name__ == "__main__":
  # `python -m`: the runtime is chosen before TensorFlow loads
  # (deeplab/runtime.py), then main() runs from a fresh import of this module.
  from deeplab import runtime

  runtime.launch(__spec__.name)

import json

from absl import flags
import tensorflow as tf

from deeplab import cli
from deeplab.data import builder
from deeplab.data import registry

from . import common

_IMAGES = flags.DEFINE_string("images", None, "Folder of images.")
_MASKS = flags.DEFINE_string("masks", None, "Folder of masks.")
_SPLIT = flags.DEFINE_string("split", "train", "Split name of the records.")
_NUM_CLASSES = flags.DEFINE_integer(
    "num_classes", None, "Number of classes (ids 0..num_classes-1); default: "
    "the --dataset table entry's.")
_IGNORE = flags.DEFINE_integer("ignore_label", None,
                               "Label of unlabelled pixels (default 255).")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Dataset table entry whose classes the masks use.")
_COLORMAP = flags.DEFINE_string(
    "colormap", None, "For RGB masks: a table dataset name or a JSON file "
    "mapping class id to [r, g, b].")
_IGNORE_COLOR = flags.DEFINE_list(
    "ignore_color", None, "For RGB masks: r,g,b of unlabelled pixels.")
_MASK_SUFFIX = flags.DEFINE_string(
    "mask_suffix", "", "Suffix of mask stems, e.g. '_mask' for a_mask.png.")


def color_table(value: str):
  """Colors per id from a table dataset name or a JSON file."""
  if value in registry.DATASETS:
    return tuple(tuple(int(c) for c in rgb)
                 for rgb in registry.DATASETS[value].colormap)
  if not tf.io.gfile.exists(value):
    raise flags.ValidationError(
        f"--colormap={value!r} is neither a dataset of the table "
        f"({sorted(registry.DATASETS)}) nor a JSON file")
  with tf.io.gfile.GFile(value) as f:
    table = {int(k): v for k, v in json.load(f).items()}
  if sorted(table) != list(range(len(table))):
    raise flags.ValidationError(
        f"--colormap {value}: ids must be 0..n-1, got {sorted(table)}")
  return tuple(tuple(int(c) for c in table[i]) for i in range(len(table)))


def label_spec() -> builder.LabelSpec:
  if _DATASET.value:
    info = registry.get(_DATASET.value, _NUM_CLASSES.value, _IGNORE.value)
    num_classes, ignore = info.num_classes, info.ignore_label
  elif _NUM_CLASSES.value:
    num_classes = _NUM_CLASSES.value
    ignore = 255 if _IGNORE.value is None else _IGNORE.value
  else:
    raise flags.ValidationError("give --num_classes or --dataset")
  table = color_table(_COLORMAP.value) if _COLORMAP.value else None
  if table is not None:
    table = table[:num_classes]
  ignore_color = (tuple(int(c) for c in _IGNORE_COLOR.value)
                  if _IGNORE_COLOR.value else None)
  return builder.LabelSpec(num_classes, ignore, color_table=table,
                           ignore_color=ignore_color)


def _main(argv):
  del argv
  samples = builder.pair_by_stem(_IMAGES.value, _MASKS.value, _MASK_SUFFIX.value)
  common.build({_SPLIT.value: samples}, label_spec())


def main():
  """Console-script entry point."""
  flags.mark_flags_as_required(["images", "masks", "output_dir"])
  cli.run_app(_main, __doc__)

