"""The original's model zoo (g3doc/model_zoo.md), and downloading its tarballs.

``MODELS`` holds the released segmentation checkpoints: name, download
address, backbone, training output stride, dataset, the config of ours
that describes (and reproduces) the model, and the mIoU the zoo reports.
``download`` fetches a zoo name's or an address's tarball once through
Keras' file cache, checked against a SHA-256 where one is recorded;
``deeplab.weights.read_weights`` reads it (or a tarball downloaded by
hand, or its unpacked checkpoint prefix), and ``deeplab.convert`` turns it
into a run folder.

Example:
  >>> from deeplab import zoo
  >>> zoo.MODELS["xception_coco_voc_trainaug"].config
  'configs.pascal_voc_xception65'
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Dict, Optional

import keras

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
    config: module of ours (``configs.<name>``) whose ``get_config()``
      describes the model (and its training recipe).
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

  def get_config(self):
    """The config describing the model (``configs.<name>.get_config()``)."""
    try:
      module = importlib.import_module(self.config)
    except ImportError as e:
      raise ImportError(
          f"zoo model {self.name!r} is described by {self.config}, which "
          f"cannot be imported ({e}); run from the repository root or give "
          "--config") from None
    return module.get_config()


def _model(name, tarball, backbone, dataset, config, miou):
  return ZooModel(name, DOWNLOAD_ROOT + tarball, backbone, 16, dataset,
                  config, miou)


MODELS: Dict[str, ZooModel] = {m.name: m for m in (
    _model("mobilenetv2_coco_voc_trainaug",
           "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz",
           "mobilenet_v2", "pascal_voc_seg", "configs.pascal_voc_mobilenetv2",
           "75.32% val (OS 16, 1 scale); 77.33% val (OS 8, 0.5:0.25:1.75, "
           "flip)"),
    _model("mobilenetv2_coco_voc_trainval",
           "deeplabv3_mnv2_pascal_trainval_2018_01_29.tar.gz",
           "mobilenet_v2", "pascal_voc_seg", "configs.pascal_voc_mobilenetv2",
           "80.25% test (OS 8, 0.5:0.25:1.75, flip)"),
    _model("xception_coco_voc_trainaug",
           "deeplabv3_pascal_train_aug_2018_01_04.tar.gz",
           "xception_65", "pascal_voc_seg", "configs.pascal_voc_xception65",
           "82.20% val (OS 16, 1 scale); 83.58% val (OS 8, 0.5:0.25:1.75, "
           "flip)"),
    _model("xception_coco_voc_trainval",
           "deeplabv3_pascal_trainval_2018_01_04.tar.gz",
           "xception_65", "pascal_voc_seg", "configs.pascal_voc_xception65",
           "87.80% test (OS 8, 0.5:0.25:1.75, flip)"),
    _model("mobilenetv2_coco_cityscapes_trainfine",
           "deeplabv3_mnv2_cityscapes_train_2018_02_05.tar.gz",
           "mobilenet_v2", "cityscapes", "configs.cityscapes_mobilenetv2",
           "70.71% val (OS 16, 1 scale); 73.57% val (OS 8, 0.75:0.25:1.25, "
           "flip)"),
    _model("xception_cityscapes_trainfine",
           "deeplabv3_cityscapes_train_2018_02_06.tar.gz",
           "xception_65", "cityscapes", "configs.cityscapes_xception65",
           "78.79% val (OS 16, 1 scale); 80.42% val (OS 8, 0.75:0.25:1.25, "
           "flip)"),
    _model("xception_ade20k_train",
           "deeplabv3_xception_ade20k_train_2018_05_29.tar.gz",
           "xception_65", "ade20k", "configs.ade20k_xception65",
           "45.65% val (OS 8, 0.5:0.25:1.75, flip)"),
)}


def is_archive(path: str) -> bool:
  return path.endswith(ARCHIVE_SUFFIXES)


def is_url(source: str) -> bool:
  return source.startswith(("http://", "https://", "file://"))


def download(source: str) -> str:
  """The local tarball of a zoo name or an address, fetched once into Keras'
  file cache (checked against the zoo table's SHA-256 where it has one)."""
  if source in MODELS:
    url, sha256 = MODELS[source].url, MODELS[source].sha256
  else:
    known = [m.sha256 for m in MODELS.values() if m.url == source]
    url, sha256 = source, known[0] if known else None
  if CACHE_DIR:  # Keras falls back to /tmp/.keras for a folder not there.
    os.makedirs(CACHE_DIR, exist_ok=True)
  return keras.utils.get_file(fname=url.rstrip("/").rsplit("/", 1)[-1],
                              origin=url, file_hash=sha256,
                              hash_algorithm="sha256", cache_dir=CACHE_DIR,
                              cache_subdir=CACHE_SUBDIR)
