"""Builds records from a tensorflow-datasets dataset: segmentation records
from a mask feature, or classification records from a ClassLabel feature.

``build`` writes the records; the tool is ``deeplab-build-tfds``
(deeplab/cli/build_tfds.py), whose docstring says how to use it.
"""


import io
from typing import List, Optional

import numpy as np
from PIL import Image

try:
  import tensorflow_datasets as tfds
except ImportError as e:  # An extra: pip install 'deeplab-tf2[tfds]'.
  raise ImportError(
      "deeplab-build-tfds needs tensorflow-datasets: pip install "
      "'deeplab-tf2[tfds]'") from e

from deeplab.data import builder

from . import common

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


def build(name: str, output_dir: str, split: str = "train",
          num_classes: Optional[int] = None, data_dir: Optional[str] = None,
          image_feature: str = "image", mask_feature: Optional[str] = None,
          ignore_label: int = 255, label_offset: int = 0,
          class_feature: Optional[str] = None,
          options: Optional[common.BuildOptions] = None
          ) -> List[builder.BuildReport]:
  """Writes a TFDS split as segmentation records, or with ``class_feature``
  (a ClassLabel feature) as classification records.

  Raises:
    ValueError: segmentation records without ``num_classes``, or a feature
      that is not what it should be.
  """
  if class_feature:
    return common.build_classification({split: class_samples(
        name, split, data_dir, image_feature, class_feature)}, output_dir,
                                       options)
  if not num_classes:
    raise ValueError("--num_classes is required")
  found = samples(name, split, data_dir, image_feature, mask_feature,
                  label_offset, ignore_label)
  return common.build({split: found}, builder.LabelSpec(num_classes, ignore_label, mask_format="grey"),
                      output_dir, options)
