"""Starting a run from other weights: a run folder of ours, a .keras file,
or an original DeepLab TF1 checkpoint, matched by original variable names.

Two sources, both read when a run starts (never when it resumes): the
backbone's pretrained weights (``config.model.backbone_weights``; a
classification run of ours is one) and a whole model to start from
(``config.init.checkpoint``), in that order.
"""

from __future__ import annotations

from typing import Dict

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from deeplab import naming
from deeplab import run_dir
from deeplab import weights as weights_lib


def read_init_source(path: str) -> Dict[str, np.ndarray]:
  """Weights by original name from a .keras file, a TF1 checkpoint (the
  original's), or a training workdir of ours (its latest checkpoint)."""
  if tf.io.gfile.isdir(path):
    model, _ = run_dir.restore_model(run_dir.read_config(path), path)
    return {n: np.asarray(v) for n, v in naming.original_names(model).items()}
  return weights_lib.read_source(path)


def initialize_from_config(model: keras.Model, config):
  """Loads the config's backbone weights, then its init checkpoint (each if
  set) into a new run's model."""
  if config.model.backbone_weights:
    load_backbone_weights(model, config.model.backbone_weights)
  init = config.init
  if init.checkpoint:
    initialize(model, init.checkpoint, init.initialize_last_layer,
               init.last_layers_contain_logits_only)


def load_backbone_weights(model: keras.Model, path: str) -> weights_lib.LoadReport:
  """Loads every backbone weight of ``model`` from ``path``: an original
  DeepLab/slim checkpoint prefix, a .keras file, or a run folder of ours
  (its latest checkpoint; a classification run pretrains a backbone).

  Raises:
    FileNotFoundError: ``path`` is not there, or is a folder without a run.
    ValueError: a backbone weight is missing or has another shape.
  """
  return weights_lib.assign_backbone_weights(model, read_init_source(path), path)


def initialize(model: keras.Model, path: str, initialize_last_layer: bool,
               last_layers_contain_logits_only: bool = False):
  """Loads ``path`` by original names; logs what was and was not restored.

  Args:
    model: the model to initialize.
    path: a .keras file, TF1 checkpoint prefix or run folder of ours.
    initialize_last_layer: False leaves the original's last layers at their
      initial values (``naming.last_layer_scopes``: logits, image pooling,
      ASPP, concat projection, decoder), as its ``initialize_last_layer``.
    last_layers_contain_logits_only: the last layers are ``logits`` alone.
  """
  select = None
  if not initialize_last_layer:
    select = lambda name: not naming.in_last_layers(
        name, last_layers_contain_logits_only)
  report = weights_lib.assign_by_original_names(model, read_init_source(path),
                                                select)
  logging.info("Initialized from %s: %s", path, report.summary())
  if not report.loaded:
    raise ValueError(f"init checkpoint {path!r} shares no weight with the "
                     f"model:\n{report.summary()}")
  return report
