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

if __name__ == "__main__":
  # `python -m`: the runtime is chosen before TensorFlow loads
  # (deeplab/runtime.py), then main() runs from a fresh import of this module.
  from deeplab import runtime

  runtime.launch(__spec__.name)

import io

from absl import flags
import numpy as np
from PIL import Image

try:
  import tensorflow_datasets as tfds
except ImportError as e:  # An extra: pip install 'deeplab-tf2[tfds]'.
  raise ImportError(
      "deeplab-build-tfds needs tensorflow-datasets: pip install "
      "'deeplab-tf2[tfds]'") from e

from deeplab import cli
from deeplab.data import builder

from . import common

_NAME = flags.DEFINE_string("tfds_name", None, "TFDS dataset name.")
_SPLIT = flags.DEFINE_string("split", "train", "TFDS split (also the records' split name).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data folder.")
_IMAGE = flags.DEFINE_string("image_feature", "image", "Image feature name.")
_MASK = flags.DEFINE_string("mask_feature", None, "Mask feature name.")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Number of classes.")
_IGNORE = flags.DEFINE_integer("ignore_label", 255, "Ignore label.")
_OFFSET = flags.DEFINE_integer("label_offset", 0, "Added to mask values.")
_CLASS = flags.DEFINE_string(
    "class_feature", None, "A ClassLabel feature: write classification "
    "records (image and class) instead of segmentation records.")

_MASK_HINTS = ("segmentation", "mask", "label")


def find_mask_feature(features) -> str:
  """The first single-channel Image feature named like a mask."""
  for name, feature in features.items():
    if (isinstance(feature, tfds.features.Image) and feature.shape[-1] == 1
        and any(h in name for h in _MASK_HINTS)):
      return name
  raise ValueError(
      "no single-channel Image feature named like "
      f"{'/'.join(_MASK_HINTS)} in {sorted(features)}; pass --mask_feature")


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def samples(name: str, split: str, data_dir=None, image_feature="image",
            mask_feature=None, offset=0, ignore_label=255):
  """Reads a TFDS split into in-memory samples (mask values offset)."""
  dataset, info = tfds.load(name, split=split, data_dir=data_dir,
                            with_info=True)
  mask_feature = mask_feature or find_mask_feature(info.features)
  found = []
  for i, example in enumerate(tfds.as_numpy(dataset)):
    mask = example[mask_feature][..., 0].astype(np.int64)
    if offset:
      mask = np.where(mask == ignore_label, mask, mask + offset)
    label = f"tfds:{name}/{split}/{i}"
    if mask.min() < 0 or mask.max() > 255:
      raise ValueError(
          f"{label}: mask values {mask.min()}..{mask.max()} after "
          f"--label_offset={offset} do not fit 0..255")
    found.append(builder.Sample(
        label, label + " (mask)", image_data=_png(example[image_feature]),
        mask_data=_png(mask.astype(np.uint8))))
  return found


def class_samples(name: str, split: str, data_dir=None, image_feature="image",
                  class_feature="label"):
  """Reads a TFDS split of an image classification dataset into in-memory
  classification samples (the tfds class id and its name)."""
  dataset, info = tfds.load(name, split=split, data_dir=data_dir,
                            with_info=True)
  feature = info.features[class_feature]
  if not isinstance(feature, tfds.features.ClassLabel):
    raise ValueError(f"--class_feature={class_feature!r} of {name} is a "
                     f"{type(feature).__name__}, not a ClassLabel")
  found = []
  for i, example in enumerate(tfds.as_numpy(dataset)):
    label = int(example[class_feature])
    found.append(builder.ClassSample(
        f"tfds:{name}/{split}/{i}", label, feature.int2str(label),
        _png(example[image_feature])))
  return found


def _main(argv):
  del argv
  if _CLASS.value:
    common.build_classification({_SPLIT.value: class_samples(
        _NAME.value, _SPLIT.value, _DATA_DIR.value, _IMAGE.value,
        _CLASS.value)})
    return
  if not _NUM_CLASSES.value:
    raise flags.ValidationError("--num_classes is required")
  found = samples(_NAME.value, _SPLIT.value, _DATA_DIR.value, _IMAGE.value,
                  _MASK.value, _OFFSET.value, _IGNORE.value)
  common.build({_SPLIT.value: found},
               builder.LabelSpec(_NUM_CLASSES.value, _IGNORE.value))


def main():
  """Console-script entry point."""
  flags.mark_flags_as_required(["tfds_name", "output_dir"])
  cli.run_app(_main, __doc__)

