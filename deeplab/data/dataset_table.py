"""The dataset table: every fact about a dataset lives here and only here.

Builders, the input pipeline, evaluation and visualization all read
``get(name)``. User datasets are declared in a config (``config.dataset``)
and get a generated colormap.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import numpy as np


def pascal_colormap(size: int = 256) -> np.ndarray:
  """The PASCAL VOC colormap: class id bits spread over R, G and B.

  Bit k of the id (in groups of three: R, G, B) sets bit ``7 - k // 3`` of
  the channel. It also serves any dataset without a colormap of its own.
  """
  colormap = np.zeros((size, 3), dtype=np.uint8)
  ids = np.arange(size)
  for shift in range(7, -1, -1):
    for channel in range(3):
      colormap[:, channel] |= (((ids >> channel) & 1) << shift).astype(np.uint8)
    ids = ids >> 3
  return colormap


def generic_names(num_classes: int) -> Tuple[str, ...]:
  """Names of classes nobody named: ``class_0``, ``class_1``, ..."""
  return tuple(f"class_{i}" for i in range(num_classes))


def are_generic(names: Sequence[str]) -> bool:
  """Whether ``names`` are ``generic_names``' placeholders, not real names."""
  return tuple(names) == generic_names(len(names))


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Facts about one segmentation dataset.

  Attributes:
    name: key of the table.
    num_classes: channels of the logits (classes trained, including any
      class that is the ignore label, as ADE20K's 0).
    ignore_label: label value excluded from loss and metrics.
    class_names: one name per class id, ``num_classes`` of them.
    colormap: ``[num_classes, 3]`` uint8 RGB color per class id.
    splits: ``{split: number of images}`` of the official splits.
    eval_crop_size: (height, width) the original evaluates at: every image
      is padded to it with the mean pixel (its ``eval_crop_size`` flag as
      its recipes set it for the dataset), or None for datasets the original
      has no recipe for (images are then padded to the next
      ``output_stride * k + 1`` only).
  """
  name: str
  num_classes: int
  ignore_label: int
  class_names: Tuple[str, ...]
  colormap: np.ndarray
  splits: Dict[str, int]
  eval_crop_size: Optional[Tuple[int, int]] = None

  def __post_init__(self):
    if len(self.class_names) != self.num_classes:
      raise ValueError(
          f"dataset {self.name!r}: {len(self.class_names)} class names for "
          f"num_classes={self.num_classes}")
    if self.colormap.shape != (self.num_classes, 3):
      raise ValueError(f"dataset {self.name!r}: colormap shape "
                       f"{self.colormap.shape} != ({self.num_classes}, 3)")

  @property
  def evaluated_classes(self) -> Tuple[int, ...]:
    """Class ids that count in metrics (all but an in-range ignore label)."""
    return tuple(i for i in range(self.num_classes) if i != self.ignore_label)


PASCAL_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus",
    "car", "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike",
    "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")

# Cityscapes train ids 0..18 with their official colors.
CITYSCAPES_CLASSES = (
    ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)), ("wall", (102, 102, 156)),
    ("fence", (190, 153, 153)), ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)), ("traffic sign", (220, 220, 0)),
    ("vegetation", (107, 142, 35)), ("terrain", (152, 251, 152)),
    ("sky", (70, 130, 180)), ("person", (220, 20, 60)),
    ("rider", (255, 0, 0)), ("car", (0, 0, 142)), ("truck", (0, 0, 70)),
    ("bus", (0, 60, 100)), ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)), ("bicycle", (119, 11, 32)))
# gtFine labelIds -> train ids; every other labelId becomes the ignore label.
CITYSCAPES_LABEL_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

# CamVid 11-class benchmark (SegNet's split) with SegNet's colors; id 11 is
# void, the ignore label.
CAMVID_CLASSES = (
    ("sky", (128, 128, 128)), ("building", (128, 0, 0)),
    ("pole", (192, 192, 128)), ("road", (128, 64, 128)),
    ("sidewalk", (60, 40, 222)), ("tree", (128, 128, 0)),
    ("sign/symbol", (192, 128, 128)), ("fence", (64, 64, 128)),
    ("car", (64, 0, 128)), ("pedestrian", (64, 64, 0)),
    ("bicyclist", (0, 128, 192)))

# ADE20K SceneParsing: id 0 is "other" (ignored), 1..150 the classes.
ADE20K_CLASSES = (
    "other", "wall", "building", "sky", "floor", "tree", "ceiling", "road",
    "bed", "windowpane", "grass", "cabinet", "sidewalk", "person", "earth",
    "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp",
    "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace",
    "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill",
    "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight",
    "booth", "television receiver", "airplane", "dirt track", "apparel",
    "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet",
    "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food",
    "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle",
    "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce",
    "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag")

# The built-in synthetic shapes (datasets/make_synthetic.py).
SYNTHETIC_CLASSES = (
    ("background", (0, 0, 0)), ("disc", (230, 25, 75)),
    ("square", (60, 180, 75)), ("triangle", (255, 225, 25)),
    ("ring", (0, 130, 200)))


# The synthetic classification set (datasets/make_synthetic_classes.py):
# one shape per image, the synthetic segmentation set's shapes and hues.
SYNTHETIC_SHAPE_CLASSES = SYNTHETIC_CLASSES[1:]

# ILSVRC-2012 as the widely used ImageNet-to-TFRecord scripts write it and
# the original's ImageNet checkpoints classify it: 1001 ids, 0 a background
# class no image has, 1..1000 the synsets in sorted order (names are not
# shipped; records carry them as image/class/text).
IMAGENET_CLASSES = ("background",) + tuple(f"synset_{i}" for i in range(1, 1001))


def _colors(pairs) -> np.ndarray:
  return np.array([c for _, c in pairs], dtype=np.uint8)


def _names(pairs) -> Tuple[str, ...]:
  return tuple(n for n, _ in pairs)


DATASETS: Dict[str, DatasetInfo] = {
    info.name: info for info in (
        DatasetInfo("pascal_voc_seg", 21, 255, PASCAL_CLASSES,
                    pascal_colormap(21),
                    {"train": 1464, "train_aug": 10582, "trainval": 2913,
                     "val": 1449}, eval_crop_size=(513, 513)),
        DatasetInfo("cityscapes", 19, 255, _names(CITYSCAPES_CLASSES),
                    _colors(CITYSCAPES_CLASSES),
                    {"train": 2975, "val": 500},
                    eval_crop_size=(1025, 2049)),
        DatasetInfo("ade20k", 151, 0, ADE20K_CLASSES, pascal_colormap(151),
                    {"train": 20210, "val": 2000},
                    eval_crop_size=(513, 513)),
        DatasetInfo("camvid", 11, 11, _names(CAMVID_CLASSES),
                    _colors(CAMVID_CLASSES),
                    {"train": 367, "val": 101, "test": 233}),
        DatasetInfo("synthetic", 5, 255, _names(SYNTHETIC_CLASSES),
                    _colors(SYNTHETIC_CLASSES), {}),
        # Classification datasets (config.model.task='classification'):
        # the ignore label and colormap serve no purpose there.
        DatasetInfo("synthetic_shapes", 4, 255, _names(SYNTHETIC_SHAPE_CLASSES),
                    _colors(SYNTHETIC_SHAPE_CLASSES), {}),
        DatasetInfo("imagenet", 1001, 255, IMAGENET_CLASSES,
                    pascal_colormap(1001),
                    {"train": 1281167, "validation": 50000}),
    )
}


def get(name: str, num_classes: Optional[int] = None,
        ignore_label: Optional[int] = None,
        class_names: Sequence[str] = (),
        colormap: Sequence[Sequence[int]] = ()) -> DatasetInfo:
  """Returns the table entry ``name``, or declares a user dataset.

  Args:
    name: a table key, or any other name for a user dataset.
    num_classes: required for a user dataset; for a table entry it must
      agree with the table.
    ignore_label: the user dataset's ignore label (default 255); for a table
      entry it must agree.
    class_names: optional names of a user dataset's classes.
    colormap: optional RGB colors of a user dataset's classes (default:
      ``pascal_colormap``).

  Raises:
    ValueError: a user dataset without ``num_classes``, or a disagreement
      with the table, naming both values.
  """
  if name in DATASETS:
    info = DATASETS[name]
    if num_classes is not None and num_classes != info.num_classes:
      raise ValueError(
          f"config.dataset.num_classes={num_classes} does not match dataset "
          f"{name!r}, which has {info.num_classes} classes")
    if ignore_label is not None and ignore_label != info.ignore_label:
      raise ValueError(
          f"config.dataset.ignore_label={ignore_label} does not match dataset "
          f"{name!r}, whose ignore label is {info.ignore_label}")
    return info
  if num_classes is None or num_classes < 1:
    raise ValueError(f"dataset {name!r} is not in the table "
                     f"({sorted(DATASETS)}): declare it with "
                     f"config.dataset.num_classes >= 1, got {num_classes!r}")
  names = tuple(class_names) or generic_names(num_classes)
  colors = (np.array(colormap, np.uint8).reshape(-1, 3) if len(colormap)
            else pascal_colormap(num_classes))
  return DatasetInfo(name, num_classes,
                     255 if ignore_label is None else ignore_label, names,
                     colors, {})


def from_config(config) -> DatasetInfo:
  """The dataset a config's ``config.dataset`` section names or declares."""
  d = config.dataset
  return get(d.name, d.num_classes, d.ignore_label, tuple(d.class_names),
             tuple(d.colormap))
