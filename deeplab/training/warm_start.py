"""Starting a run from other weights, matched by original variable names.

Two sources, both read when a run starts (never when it resumes) through
``deeplab.weights.read_weights`` (so any source it reads: a run folder of
ours, a .keras file, an original DeepLab TF1 checkpoint, a zoo name...):
the backbone's pretrained weights (``config.model.backbone_weights``; a
classification run of ours is one) and a whole model to start from
(``config.train.init_checkpoint``), in that order. What is training's own
is which layers a warm start leaves out (``initialize_last_layer``).
"""

from __future__ import annotations

from absl import logging
import keras

from deeplab import naming
from deeplab import weights as weights_lib


def initialize_from_config(model: keras.Model, config):
  """Loads the config's backbone weights, then its init checkpoint (each if
  set) into a new run's model."""
  if config.model.backbone_weights:
    weights_lib.load_backbone_weights(model, config.model.backbone_weights)
  train = config.train
  if train.init_checkpoint:
    initialize(model, train.init_checkpoint, train.initialize_last_layer,
               train.last_layers_contain_logits_only)


def initialize(model: keras.Model, path: str, initialize_last_layer: bool,
               last_layers_contain_logits_only: bool = False):
  """Loads ``path`` by original names; logs what was and was not restored.

  Args:
    model: the model to initialize.
    path: any source ``weights.read_weights`` reads (a .keras file, TF1
      checkpoint prefix, run folder of ours, zoo name...).
    initialize_last_layer: False leaves the original's last layers at their
      initial values (``naming.last_layer_scopes``: logits, image pooling,
      ASPP, concat projection, decoder), as its ``initialize_last_layer``.
    last_layers_contain_logits_only: the last layers are ``logits`` alone.
  """
  select = None
  if not initialize_last_layer:
    select = lambda name: not naming.in_last_layers(
        name, last_layers_contain_logits_only)
  report = weights_lib.assign_by_original_names(
      model, weights_lib.read_weights(path, model), select)
  logging.info("Initialized from %s: %s", path, report.summary())
  if not report.loaded:
    raise ValueError(f"init checkpoint {path!r} shares no weight with the "
                     f"model:\n{report.summary()}")
  return report
