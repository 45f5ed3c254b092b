"""Loading weights by their original DeepLab names.

Every source (an original TF1 checkpoint, a ``.keras`` file of ours, later
the released TFLite files) is read into ``{original_name: array}`` and
assigned through ``deeplab.naming``: one mechanism, one table. Nothing is
skipped silently; the returned report lists what was loaded, what the model
expected but the source lacked, what the source had that nothing used, and
shape mismatches.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Mapping, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from deeplab import backbones
from deeplab import classifier
from deeplab import naming


@dataclasses.dataclass
class LoadReport:
  """What an assignment by original names did.

  Attributes:
    loaded: original names assigned.
    missing: model weights (within the selection) the source lacked.
    unused: source tensors nothing in the model took.
    mismatched: ``name: (model shape, source shape)`` for shape conflicts.
  """
  loaded: List[str] = dataclasses.field(default_factory=list)
  missing: List[str] = dataclasses.field(default_factory=list)
  unused: List[str] = dataclasses.field(default_factory=list)
  mismatched: Dict[str, tuple] = dataclasses.field(default_factory=dict)

  def summary(self) -> str:
    lines = [f"loaded {len(self.loaded)} tensors"]
    for title, items in (("missing from the source", self.missing),
                         ("unused from the source", self.unused)):
      if items:
        lines.append(f"{len(items)} {title}:")
        lines.extend(f"  {n}" for n in items)
    if self.mismatched:
      lines.append(f"{len(self.mismatched)} shape mismatches (model, source):")
      lines.extend(f"  {n}: {m} vs {s}" for n, (m, s) in self.mismatched.items())
    return "\n".join(lines)


def assign_by_original_names(
    model: keras.Model, arrays: Mapping[str, np.ndarray],
    select: Optional[Callable[[str], bool]] = None) -> LoadReport:
  """Assigns ``arrays`` to the model weights with the same original names.

  Args:
    model: the model to fill.
    arrays: ``{original_name: array}`` from a source.
    select: which original names of the model to fill (all by default);
      unselected model weights are neither loaded nor reported missing.

  Returns:
    A ``LoadReport``. Mismatched shapes are reported, never assigned.
  """
  select = select or (lambda name: True)
  report = LoadReport()
  targets = {n: v for n, v in naming.original_names(model).items() if select(n)}
  for name, variable in targets.items():
    if name not in arrays:
      report.missing.append(name)
      continue
    value = np.asarray(arrays[name])
    if tuple(value.shape) != tuple(variable.shape):
      report.mismatched[name] = (tuple(variable.shape), tuple(value.shape))
      continue
    variable.assign(value.astype(variable.dtype))
    report.loaded.append(name)
  report.unused = sorted(n for n in arrays if n not in targets)
  return report


def read_tf1_checkpoint(prefix: str) -> Dict[str, np.ndarray]:
  """Reads every tensor of a (TF1 name-based) checkpoint into a dict."""
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()}


def tflite_interpreter(path: str, **kwargs):
  """A LiteRT interpreter of ``path`` (``ai-edge-litert``, the successor of
  ``tf.lite.Interpreter``, which TensorFlow marks for deletion).

  Raises:
    ImportError: ai-edge-litert is not installed (an extra of ours).
  """
  try:
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("reading or running a .tflite file needs ai-edge-litert: "
                      "pip install 'deeplab-tf2[tflite]'") from e
  with tf.io.gfile.GFile(str(path), "rb") as f:  # gs:// too.
    return litert.Interpreter(model_content=f.read(), **kwargs)


def read_tflite(path: str, model: keras.Model) -> Dict[str, np.ndarray]:
  """Reads a released DeepLab TFLite file into ``{original_name: array}``.

  The TFLite files of the DeepLab examples keep the original variable names
  but fold batch norm into a bias (``<scope>/Conv2D_bias``,
  ``<scope>/depthwise_bias``) and store kernels output-channel first. Each
  folded conv becomes our conv + a batch norm that adds the bias: gamma 1,
  beta = bias, mean 0, variance 1 - epsilon (so the normalizer is exactly 1).
  Tensors the model has no place for are returned under their own names,
  so the assignment reports them as unused.
  """
  interpreter = tflite_interpreter(path)
  tensors = {}
  for detail in interpreter.get_tensor_details():
    name = detail["name"]
    if name.endswith(("weights", "_bias")):
      try:
        tensors[name] = interpreter.get_tensor(detail["index"])
      except ValueError:  # Intermediate tensors hold no data.
        continue
  arrays: Dict[str, np.ndarray] = {}
  used = set()
  layers_by_name = {layer.name: layer for layer in model.layers}
  for name in naming.original_names(model):
    scope, leaf = name.rsplit("/", 1)
    if leaf in ("weights", "depthwise_weights") and name in tensors:
      # TFLite: conv [out, h, w, in], depthwise [1, h, w, channels].
      arrays[name] = np.transpose(tensors[name], (1, 2, 3, 0))
      used.add(name)
    elif leaf == "biases" and f"{scope}/Conv2D_bias" in tensors:
      arrays[name] = tensors[f"{scope}/Conv2D_bias"]
      used.add(f"{scope}/Conv2D_bias")
    elif scope.endswith("/BatchNorm"):
      conv = scope[:-len("/BatchNorm")]
      key = conv + ("/depthwise_bias" if conv.endswith("depthwise")
                    else "/Conv2D_bias")
      if key not in tensors:
        continue
      bias = tensors[key]
      used.add(key)
      epsilon = layers_by_name[naming.keras_name(scope)].epsilon
      arrays[name] = {"gamma": np.ones_like(bias), "beta": bias,
                      "moving_mean": np.zeros_like(bias),
                      "moving_variance": np.full_like(bias, 1.0 - epsilon),
                      }[leaf]
  for name, value in tensors.items():
    if name not in used:
      arrays[name] = value
  return arrays


def read_keras_model(path: str) -> Dict[str, np.ndarray]:
  """Reads a saved ``DeepLab`` (.keras) into ``{original_name: array}``."""
  model = keras.models.load_model(path, compile=False)
  return {n: np.asarray(v) for n, v in naming.original_names(model).items()}


def read_source(path: str) -> Dict[str, np.ndarray]:
  """Reads a weights source by its kind: .keras file or checkpoint prefix."""
  if path.endswith(".keras"):
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
      raise FileNotFoundError(f"weights file {path!r} does not exist")
    return read_keras_model(path)
  if not tf.io.gfile.exists(path + ".index"):
    raise FileNotFoundError(
        f"weights {path!r} is neither a .keras file nor a checkpoint prefix "
        f"(no {path + '.index'!r})")
  return read_tf1_checkpoint(path)


def is_backbone_weight(name: str, backbone: str) -> bool:
  """Whether the original variable ``name`` is a weight of ``backbone``
  itself: under its root scope, and not the classifier's head (its logits,
  MobileNetV2's last conv), which DeepLab does not have."""
  return (name.startswith(backbones.ROOT_SCOPES[backbone] + "/") and
          not name.startswith(classifier.head_scopes(backbone)))


def assign_backbone_weights(model: keras.Model, arrays: Mapping[str, np.ndarray],
                            source: str) -> LoadReport:
  """Assigns every backbone weight of ``model`` from ``arrays``.

  Args:
    model: a ``DeepLab`` or a ``Classifier``.
    arrays: ``{original_name: array}`` (``read_source``, or a run's).
    source: where ``arrays`` came from, for messages.

  Returns:
    The ``LoadReport``; the source's other tensors (a classifier's logits,
    a segmentation head, optimizer slots) are listed as unused.

  Raises:
    ValueError: a backbone weight is missing or has another shape (weights
      of another backbone or width).
  """
  backbone = model.args.backbone
  report = assign_by_original_names(
      model, arrays, select=lambda name: is_backbone_weight(name, backbone))
  if report.missing or report.mismatched or not report.loaded:
    raise ValueError(
        f"backbone weights {source!r} do not fit backbone {backbone!r}:\n"
        + report.summary())
  logging.info("Backbone weights from %s: all %d weights of backbone %s "
               "loaded (%s)", source, len(report.loaded), backbone,
               report.summary())
  return report


def load_backbone_weights(model: keras.Model, path: str) -> LoadReport:
  """Loads pretrained backbone weights (e.g. an ImageNet checkpoint).

  Args:
    model: a ``DeepLab`` or a ``Classifier``.
    path: an original DeepLab/slim checkpoint prefix (``.../model.ckpt``)
      or a ``.keras`` file of ours with the same backbone (a run folder of
      ours: ``deeplab.training.warm_start.load_backbone_weights``).

  Returns:
    The ``LoadReport`` (``assign_backbone_weights``).

  Raises:
    FileNotFoundError: ``path`` is not there.
    ValueError: a backbone weight is missing or has another shape (a
      checkpoint of another backbone or width).
  """
  return assign_backbone_weights(model, read_source(path), path)
