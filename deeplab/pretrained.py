"""A pretrained DeepLab in one call: ``from_pretrained``.

The source is what ``deeplab-convert`` takes, or a run folder:

- a name of the original's model zoo (``deeplab.zoo.MODELS``): its tarball
  is downloaded once into Keras' file cache (``deeplab.zoo.download``) and
  converted once beside it (``<cache>/converted/<name>``, a run folder), so
  a second call restores that run folder and downloads nothing;
- a released ``.tflite`` file, a zoo ``.tar.gz``, a TF1 checkpoint prefix,
  a download address or a ``.keras`` file: converted
  (``deeplab.convert.convert``) into a temporary run folder and restored
  from it; ``config`` describes the source's model where the source does
  not imply one;
- a run folder of ours (``config.json`` and checkpoints): its config and
  latest checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional

import ml_collections
import tensorflow as tf

from deeplab import convert as convert_lib
from deeplab import model as model_lib
from deeplab import run_dir
from deeplab import zoo

CONVERTED_SUBDIR = "converted"


def converted_folder(name: str) -> str:
  """The run folder ``from_pretrained`` converts zoo model ``name`` into."""
  return os.path.join(zoo.cache_folder(), CONVERTED_SUBDIR, name)


def _converted_zoo_model(name: str) -> str:
  """The run folder of zoo model ``name``, converted on first use.

  The conversion is written beside the final folder and renamed into place,
  so an interrupted conversion leaves no half run folder to restore.
  """
  folder = converted_folder(name)
  if run_dir.latest_checkpoint(folder):
    return folder
  shutil.rmtree(folder, ignore_errors=True)  # A run folder never completed.
  os.makedirs(os.path.dirname(folder), exist_ok=True)
  partial = tempfile.mkdtemp(prefix=f"{name}.partial-",
                             dir=os.path.dirname(folder))
  try:
    convert_lib.convert(name, partial)
    os.replace(partial, folder)
  except OSError:
    if not run_dir.latest_checkpoint(folder):  # Not another process' result.
      raise
  finally:
    shutil.rmtree(partial, ignore_errors=True)
  return folder


def from_pretrained(source: str,
                    config: Optional[ml_collections.ConfigDict] = None
                    ) -> model_lib.DeepLab:
  """A ``DeepLab`` holding pretrained weights, ready for inference.

  Example:
    >>> import deeplab
    >>> model = deeplab.from_pretrained("xception_coco_voc_trainaug")
    >>> logits = model(images)  # images: RGB scaled to [-1, 1]

  Args:
    source: a zoo name, a ``.tflite`` file, a zoo ``.tar.gz``, a
      checkpoint prefix, an address, a ``.keras`` file or a run folder
      (module docstring).
    config: the config of the model to build. None: the config the source
      implies (a zoo name's entry, a run folder's ``config.json``, what
      ``deeplab.convert.convert`` reads from a ``.tflite`` file). Given for
      a zoo name or a run folder, it may change how the model runs (output
      stride, evaluation), not its weights.

  Returns:
    The model, its weights loaded; call it with ``training=False`` (the
    default) for logits, or use ``deeplab.inference.predict_labels``.

  Raises:
    ValueError: no config for a source that implies none; a backbone
      checkpoint of the zoo (no segmentation model: use it as
      ``config.model.backbone_weights``); a config whose weights are not
      the source's (the field named); unreadable or unfitting weights.
    FileNotFoundError: a source that is not there.
  """
  if tf.io.gfile.isdir(source) and run_dir.has_config(source):
    model, _ = run_dir.restore_model(config or run_dir.read_config(source),
                                     source)
    return model
  if source in zoo.MODELS:
    folder = _converted_zoo_model(source)
    model, _ = run_dir.restore_model(config or run_dir.read_config(folder),
                                     folder)
    return model
  with tempfile.TemporaryDirectory(prefix="deeplab_pretrained_") as folder:
    convert_lib.convert(source, folder, config)
    model, _ = run_dir.restore_model(run_dir.read_config(folder), folder)
  return model
