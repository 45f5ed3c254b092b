"""The original's model zoo (g3doc/model_zoo.md), and reading its tarballs.

``MODELS`` holds the released segmentation checkpoints: name, download
address, backbone, training output stride, dataset, the config of ours
that describes (and reproduces) the model, and the mIoU the zoo reports.
``checkpoint_arrays`` reads any of the forms a user may have one in: a zoo
name or an address (downloaded once through Keras' file cache, checked
against a SHA-256 where one is recorded), a downloaded ``.tar.gz``, or an
unpacked checkpoint prefix; ``deeplab.convert`` turns them into a run
folder.

Example:
  >>> from deeplab import zoo
  >>> zoo.MODELS["xception_coco_voc_trainaug"].config
  'configs.pascal_voc_xception65'
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import tarfile
import tempfile
from typing import Dict, Optional
import zlib

import keras
import numpy as np

from deeplab import weights as weights_lib

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


def download(url: str, sha256: Optional[str] = None) -> str:
  """The tarball at ``url`` through Keras' file cache (fetched once)."""
  if CACHE_DIR:  # Keras falls back to /tmp/.keras for a folder not there.
    os.makedirs(CACHE_DIR, exist_ok=True)
  return keras.utils.get_file(fname=url.rstrip("/").rsplit("/", 1)[-1],
                              origin=url, file_hash=sha256,
                              hash_algorithm="sha256", cache_dir=CACHE_DIR,
                              cache_subdir=CACHE_SUBDIR)


def _extract(archive: str, destination: str) -> None:
  try:
    with tarfile.open(archive, "r:*") as tar:
      if hasattr(tarfile, "data_filter"):  # No paths outside destination.
        tar.extractall(destination, filter="data")
      else:
        for member in tar.getmembers():
          target = os.path.realpath(os.path.join(destination, member.name))
          if not target.startswith(os.path.realpath(destination) + os.sep):
            raise tarfile.TarError(f"member {member.name!r} leaves the folder")
        tar.extractall(destination)
  except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
    raise ValueError(
        f"{archive!r} is not a readable tar archive ({type(e).__name__}: "
        f"{' '.join(str(e).split())}); a corrupted or partial download? "
        "Delete it and download it again") from None


def find_checkpoint(folder: str, where: str) -> str:
  """The one TF1 checkpoint prefix (``*.index``) under ``folder``.

  Raises:
    ValueError: none, or more than one, naming what the folder holds.
  """
  found, files = [], []
  for root, _, names in os.walk(folder):
    for name in sorted(names):
      files.append(os.path.relpath(os.path.join(root, name), folder))
      if name.endswith(".index"):
        found.append(os.path.join(root, name[:-len(".index")]))
  if len(found) != 1:
    what = "no checkpoint (*.index)" if not found else (
        f"{len(found)} checkpoints")
    raise ValueError(f"{where} holds {what}; its files: {sorted(files)}")
  return found[0]


def archive_arrays(archive: str) -> Dict[str, np.ndarray]:
  """Weights by original name from a zoo tarball (the checkpoint inside)."""
  if not os.path.isfile(archive):
    raise FileNotFoundError(f"--source={archive!r} does not exist")
  with tempfile.TemporaryDirectory(prefix="deeplab_zoo_") as folder:
    _extract(archive, folder)
    return weights_lib.read_tf1_checkpoint(find_checkpoint(folder, archive))


def checkpoint_arrays(source: str) -> Dict[str, np.ndarray]:
  """Weights by original name from a zoo name, an address, a tarball or a
  checkpoint prefix (or a ``.keras`` file of ours).

  Raises:
    FileNotFoundError: a local source that is not there.
    ValueError: an unreadable tarball, or one without exactly one
      checkpoint.
  """
  if source in MODELS:
    return archive_arrays(download(MODELS[source].url, MODELS[source].sha256))
  if is_url(source):
    known = [m for m in MODELS.values() if m.url == source]
    return archive_arrays(download(source, known[0].sha256 if known else None))
  if is_archive(source):
    return archive_arrays(source)
  return weights_lib.read_source(source)
