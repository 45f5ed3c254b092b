"""The original's model zoo (g3doc/model_zoo.md), and downloading its tarballs.

``MODELS`` holds the released segmentation checkpoints: name, download
address, backbone, training output stride, dataset, the shipped config of
ours that describes (and reproduces) the model, and the mIoU the zoo
reports. ``BACKBONE_CHECKPOINTS`` holds the ImageNet-pretrained backbone
checkpoints the zoo lists for training one's own models: name, address and
the backbone they fit (``config.model.backbone_weights=<name>``).
``download`` fetches a zoo name's or an address's tarball once through
Keras' file cache, checked against a SHA-256 where one is recorded;
``deeplab.weights.read_weights`` reads it (or a tarball downloaded by
hand, or its unpacked checkpoint prefix), ``deeplab.convert`` turns a
segmentation checkpoint into a run folder and ``deeplab.from_pretrained``
into a model.

Example:
  >>> from deeplab import zoo
  >>> zoo.MODELS["xception_coco_voc_trainaug"].config
  'pascal_voc_xception65'
  >>> zoo.BACKBONE_CHECKPOINTS["resnet_v1_101_beta"].backbone
  'resnet_101'
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional, Union

import keras
import ml_collections

from deeplab import config as config_lib

DOWNLOAD_ROOT = "http://download.tensorflow.org/models/"
# Where Keras' file cache keeps the tarballs: CACHE_DIR/CACHE_SUBDIR, with
# CACHE_DIR None meaning Keras' own (~/.keras, or $KERAS_HOME).
CACHE_DIR: Optional[str] = None
CACHE_SUBDIR = "deeplab_zoo"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclasses.dataclass(frozen=True)
class ZooModel:
  """One released checkpoint of the original's model zoo.

  Attributes:
    name: the zoo's checkpoint name.
    url: its download address.
    backbone: our backbone name.
    output_stride: the output stride it was trained at.
    dataset: our dataset table's name.
    config: name of the shipped config of ours (``configs/<name>.py``,
      installed as ``deeplab_configs``) that describes the model (and its
      training recipe).
    miou: the mIoU the zoo reports, with its evaluation settings.
    sha256: SHA-256 of the tarball, or None where none is recorded.
  """
  name: str
  url: str
  backbone: str
  output_stride: int
  dataset: str
  config: str
  miou: str
  sha256: Optional[str] = None

  def get_config(self) -> ml_collections.ConfigDict:
    """The config describing the model: the shipped config ``self.config``
    (resolved as ``--config=NAME`` is, installed or in a checkout)."""
    return config_lib.shipped_config(self.config)


@dataclasses.dataclass(frozen=True)
class BackboneCheckpoint:
  """An ImageNet-pretrained backbone checkpoint of the original's zoo: the
  weights of one backbone, for ``config.model.backbone_weights``.

  Attributes:
    name: the zoo's name for it.
    url: its download address.
    backbone: our backbone name it fits.
    depth_multiplier: the backbone width it fits.
    sha256: SHA-256 of the tarball, or None where none is recorded.
  """
  name: str
  url: str
  backbone: str
  depth_multiplier: float = 1.0
  sha256: Optional[str] = None


def _model(name, tarball, backbone, dataset, config, miou):
  return ZooModel(name, DOWNLOAD_ROOT + tarball, backbone, 16, dataset,
                  config, miou)


MODELS: Dict[str, ZooModel] = {m.name: m for m in (
    _model("mobilenetv2_coco_voc_trainaug",
           "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz",
           "mobilenet_v2", "pascal_voc_seg", "pascal_voc_mobilenetv2",
           "75.32% val (OS 16, 1 scale); 77.33% val (OS 8, 0.5:0.25:1.75, "
           "flip)"),
    _model("mobilenetv2_coco_voc_trainval",
           "deeplabv3_mnv2_pascal_trainval_2018_01_29.tar.gz",
           "mobilenet_v2", "pascal_voc_seg", "pascal_voc_mobilenetv2",
           "80.25% test (OS 8, 0.5:0.25:1.75, flip)"),
    _model("xception_coco_voc_trainaug",
           "deeplabv3_pascal_train_aug_2018_01_04.tar.gz",
           "xception_65", "pascal_voc_seg", "pascal_voc_xception65",
           "82.20% val (OS 16, 1 scale); 83.58% val (OS 8, 0.5:0.25:1.75, "
           "flip)"),
    _model("xception_coco_voc_trainval",
           "deeplabv3_pascal_trainval_2018_01_04.tar.gz",
           "xception_65", "pascal_voc_seg", "pascal_voc_xception65",
           "87.80% test (OS 8, 0.5:0.25:1.75, flip)"),
    _model("mobilenetv2_coco_cityscapes_trainfine",
           "deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz",
           "mobilenet_v2", "cityscapes", "cityscapes_mobilenetv2",
           "70.71% val (OS 16, 1 scale); 73.57% val (OS 8, 0.75:0.25:1.25, "
           "flip)"),
    _model("xception_cityscapes_trainfine",
           "deeplabv3_cityscapes_train_2018_02_06.tar.gz",
           "xception_65", "cityscapes", "cityscapes_xception65",
           "78.79% val (OS 16, 1 scale); 80.42% val (OS 8, 0.75:0.25:1.25, "
           "flip)"),
    _model("xception_ade20k_train",
           "deeplabv3_xception_ade20k_train_2018_05_29.tar.gz",
           "xception_65", "ade20k", "ade20k_xception65",
           "45.65% val (OS 8, 0.5:0.25:1.75, flip)"),
)}


# The zoo's "Checkpoints pretrained on ImageNet"; for MobileNetV2 the zoo
# refers to slim's MobileNet-V2 release, whose x1.0 224 checkpoint this is.
BACKBONE_CHECKPOINTS: Dict[str, BackboneCheckpoint] = {c.name: c for c in (
    BackboneCheckpoint("xception_41",
                       DOWNLOAD_ROOT + "xception_41_2018_05_09.tar.gz",
                       "xception_41"),
    BackboneCheckpoint("xception_65",
                       DOWNLOAD_ROOT + "deeplabv3_xception_2018_01_04.tar.gz",
                       "xception_65"),
    BackboneCheckpoint("xception_71",
                       DOWNLOAD_ROOT + "xception_71_2018_05_09.tar.gz",
                       "xception_71"),
    BackboneCheckpoint("resnet_v1_50_beta",
                       DOWNLOAD_ROOT + "resnet_v1_50_2018_05_04.tar.gz",
                       "resnet_50"),
    BackboneCheckpoint("resnet_v1_101_beta",
                       DOWNLOAD_ROOT + "resnet_v1_101_2018_05_04.tar.gz",
                       "resnet_101"),
    BackboneCheckpoint("mobilenet_v2_1.0_224",
                       "https://storage.googleapis.com/mobilenet_v2/"
                       "checkpoints/mobilenet_v2_1.0_224.tgz",
                       "mobilenet_v2"),
)}


def entry(name: str) -> Optional[Union[ZooModel, BackboneCheckpoint]]:
  """The zoo's entry named ``name`` (a segmentation model or a backbone
  checkpoint), or None."""
  return MODELS.get(name) or BACKBONE_CHECKPOINTS.get(name)


def is_name(source: str) -> bool:
  return entry(source) is not None


def model_config(source: str) -> ml_collections.ConfigDict:
  """The config of the zoo's segmentation model ``source``.

  Raises:
    ValueError: ``source`` is a backbone checkpoint (no segmentation model)
      or no zoo name; the message says what to give instead.
  """
  if source in BACKBONE_CHECKPOINTS:
    raise ValueError(
        f"{source!r} is an ImageNet backbone checkpoint of the model zoo, not "
        f"a segmentation model: use it as config.model.backbone_weights="
        f"{source} (backbone {BACKBONE_CHECKPOINTS[source].backbone}), or give "
        "a segmentation model's name")
  if source not in MODELS:
    raise ValueError(f"{source!r} is not a model zoo name ({sorted(MODELS)}): "
                     "give its config (--config)")
  return MODELS[source].get_config()


def check_backbone_weights(source: str, backbone: str,
                           depth_multiplier: float) -> None:
  """Refuses a zoo name as backbone weights of a model whose backbone (or
  width) is not the one its checkpoint holds; other sources pass.

  Raises:
    ValueError: naming the entry's backbone, the model's, and the zoo's
      backbone checkpoints that fit the model.
  """
  found = entry(source)
  if found is None:
    return
  held, fits = repr(found.backbone), repr(backbone)
  # A segmentation model's width is its config's: a wrong one shows as
  # shape mismatches when its weights load.
  if isinstance(found, BackboneCheckpoint):
    held += f" (depth multiplier {found.depth_multiplier})"
    fits += f" (depth multiplier {depth_multiplier})"
  if held == fits:
    return
  fitting = [c.name for c in BACKBONE_CHECKPOINTS.values()
             if (c.backbone, c.depth_multiplier) == (backbone, depth_multiplier)]
  raise ValueError(
      f"config.model.backbone_weights={source!r} holds backbone {held}, the "
      f"model's is {fits}; the zoo's checkpoints for it: {fitting or 'none'}")


def cache_folder() -> str:
  """Where ``download`` keeps the tarballs: ``CACHE_DIR``, else Keras'
  home (``$KERAS_HOME``, else ``~/.keras``), then ``CACHE_SUBDIR``."""
  base = CACHE_DIR or os.environ.get("KERAS_HOME") or os.path.join(
      os.path.expanduser("~"), ".keras")
  return os.path.join(base, CACHE_SUBDIR)


def is_archive(path: str) -> bool:
  return path.endswith(ARCHIVE_SUFFIXES)


def is_url(source: str) -> bool:
  return source.startswith(("http://", "https://", "file://"))


def download(source: str) -> str:
  """The local tarball of a zoo name or an address, fetched once into Keras'
  file cache (checked against the zoo table's SHA-256 where it has one)."""
  found = entry(source)
  if found is not None:
    url, sha256 = found.url, found.sha256
  else:
    known = [m.sha256 for m in (*MODELS.values(), *BACKBONE_CHECKPOINTS.values())
             if m.url == source]
    url, sha256 = source, known[0] if known else None
  folder = cache_folder()
  # Keras falls back to /tmp/.keras for a folder not there.
  os.makedirs(folder, exist_ok=True)
  return keras.utils.get_file(fname=url.rstrip("/").rsplit("/", 1)[-1],
                              origin=url, file_hash=sha256,
                              hash_algorithm="sha256",
                              cache_dir=os.path.dirname(folder),
                              cache_subdir=CACHE_SUBDIR)
