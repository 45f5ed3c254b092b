"""Reading weights from any source and loading them by original DeepLab names.

``read_weights`` reads every source (an original TF1 checkpoint, a zoo
name, address or tarball, a released TFLite file, a ``.keras`` file or a
run folder of ours) into ``{original_name: array}``; warm starts, backbone
weights and ``deeplab.convert`` all read through it, and assign through
``deeplab.naming``: one mechanism, one table. Nothing is skipped silently;
the returned report lists what was loaded, what the model expected but the
source lacked, what the source had that nothing used, and shape mismatches.
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
import tempfile
from typing import Callable, Dict, List, Mapping, Optional
import zlib

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from deeplab import backbones
from deeplab import naming
from deeplab import run_dir
from deeplab import tflite_model
from deeplab import zoo


@dataclasses.dataclass
class LoadReport:
  """What an assignment by original names did.

  Attributes:
    loaded: original names assigned.
    missing: model weights (within the selection) the source lacked.
    unused: source tensors nothing in the model took.
    mismatched: ``name: (model shape, source shape)`` for shape conflicts.
    dequantized: ``{'<storage> <role>': count}`` of the source's constants
      read in a form other than float32 (a TFLite file's
      ``'uint8 per-tensor kernels'``, ``'float16 biases'``).
    notes: where the source computes something the converted model does
      not (a TFLite file's input normalisation, quantized activations).
  """
  loaded: List[str] = dataclasses.field(default_factory=list)
  missing: List[str] = dataclasses.field(default_factory=list)
  unused: List[str] = dataclasses.field(default_factory=list)
  mismatched: Dict[str, tuple] = dataclasses.field(default_factory=dict)
  dequantized: Dict[str, int] = dataclasses.field(default_factory=dict)
  notes: List[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    lines = [f"loaded {len(self.loaded)} tensors"]
    if self.dequantized:
      lines.append("dequantized: " + ", ".join(
          f"{count} {kind}" for kind, count in self.dequantized.items()))
    for title, items in (("missing from the source", self.missing),
                         ("unused from the source", self.unused)):
      if items:
        lines.append(f"{len(items)} {title}:")
        lines.extend(f"  {n}" for n in items)
    if self.mismatched:
      lines.append(f"{len(self.mismatched)} shape mismatches (model, source):")
      lines.extend(f"  {n}: {m} vs {s}" for n, (m, s) in self.mismatched.items())
    if self.notes:
      lines.append(f"{len(self.notes)} differences from the source:")
      lines.extend(f"  {note}" for note in self.notes)
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


def tflite_interpreter(path: str, **kwargs):
  """A LiteRT interpreter of ``path`` (``ai-edge-litert``, the successor of
  ``tf.lite.Interpreter``, which TensorFlow marks for deletion).

  Raises:
    ImportError: ai-edge-litert is not installed (an extra of ours).
  """
  try:
    from ai_edge_litert import interpreter as litert  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("running a .tflite file needs ai-edge-litert: "
                      "pip install 'deeplab-tf2[tflite]'") from e
  with tf.io.gfile.GFile(str(path), "rb") as f:  # gs:// too.
    return litert.Interpreter(model_content=f.read(), **kwargs)


def tflite_arrays(released: tflite_model.DeepLabFile, model: keras.Model
                  ) -> Dict[str, np.ndarray]:
  """A DeepLab TFLite file's weights as ``{original_name: array}`` for ``model``.

  The file's convolutions (``released.convs``, named by their place in the
  graph) have batch norm folded into a bias, and some a per-channel scale
  (an unfolded batch norm's MUL). Kernels go over in our layout (TFLite
  stores conv kernels [out, h, w, in], depthwise ones [1, h, w, channels]).
  Where our layer has a bias (the logits) it takes the file's bias; where it
  has a batch norm, the batch norm becomes exactly that affine map: gamma =
  the scale (1 without one), beta = the bias, moving mean 0 and moving
  variance 1 - epsilon, so the normalizer sqrt(variance + epsilon) is 1 in
  float32. The model so filled computes the file's function and trains
  (fine-tuning starts from those statistics). Convolutions the model has no
  place for are returned under ``<scope>/weights``, so the assignment
  reports them as unused.
  """
  arrays: Dict[str, np.ndarray] = {}
  used = set()
  layers_by_name = {layer.name: layer for layer in model.layers}
  for name in naming.original_names(model):
    scope, leaf = name.rsplit("/", 1)
    conv_scope = scope[:-len("/BatchNorm")] if scope.endswith("/BatchNorm") else scope
    conv = released.convs.get(conv_scope)
    if conv is None:
      continue
    used.add(conv_scope)
    if leaf in ("weights", "depthwise_weights"):
      arrays[name] = np.transpose(conv.kernel, (1, 2, 3, 0))
    elif leaf in ("biases", "depthwise_biases"):
      arrays[name] = conv.bias
    elif scope.endswith("/BatchNorm"):
      epsilon = layers_by_name[naming.keras_name(scope)].epsilon
      ones = np.ones_like(conv.bias)
      arrays[name] = {
          "gamma": ones if conv.scale is None else conv.scale,
          "beta": conv.bias, "moving_mean": np.zeros_like(conv.bias),
          "moving_variance": ones - np.float32(epsilon)}[leaf]
  for scope, conv in released.convs.items():
    if scope not in used:
      arrays[f"{scope}/weights"] = conv.kernel
  return arrays


def _read_checkpoint(prefix: str) -> Dict[str, np.ndarray]:
  """Every tensor of a (TF1 name-based) checkpoint."""
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()}


def _model_arrays(model: keras.Model) -> Dict[str, np.ndarray]:
  return {n: np.asarray(v) for n, v in naming.original_names(model).items()}


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


def _find_checkpoint(folder: str, where: str) -> str:
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


def _read_archive(archive: str) -> Dict[str, np.ndarray]:
  """The checkpoint inside a tarball in the zoo's layout."""
  with tempfile.TemporaryDirectory(prefix="deeplab_zoo_") as folder:
    _extract(archive, folder)
    return _read_checkpoint(_find_checkpoint(folder, archive))


def _require(path: str) -> None:
  if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
    raise FileNotFoundError(f"weights source {path!r} does not exist")


def read_weights(source: str, model: Optional[keras.Model] = None
                 ) -> Dict[str, np.ndarray]:
  """Reads any weights source into ``{original_name: array}``.

  Sources, by their form:

  - a folder: a run folder of ours (its latest checkpoint);
  - a name of the original's model zoo (``deeplab.zoo.MODELS`` or
    ``BACKBONE_CHECKPOINTS``) or a download address: the zoo's tarball,
    downloaded once into Keras' file cache (``deeplab.zoo.download``), then
    read as below;
  - a ``.tar.gz``, ``.tgz`` or ``.tar`` in the zoo's layout: the one TF1
    checkpoint inside;
  - a DeepLab ``.tflite`` file, float32, float16 or quantized, batch norm
    folded (``deeplab.tflite_model`` reads it by its graph; needs ``model``);
  - a ``.keras`` file of ours;
  - anything else: a TF1 checkpoint prefix (``.../model.ckpt``), as the
    original and slim wrote them.

  Paths may be on any file system TensorFlow reads (``gs://``), except a
  tarball's, which is read from the local disk.

  Example:
    >>> arrays = read_weights("xception_coco_voc_trainaug")
    >>> arrays["xception_65/entry_flow/conv1_1/weights"].shape
    (3, 3, 3, 32)

  Args:
    source: the source, as above.
    model: the model the weights are for. A ``.tflite`` source needs it
      (its batch norm epsilons turn the folded biases back into batch
      norms); the other sources ignore it.

  Returns:
    ``{original_name: array}`` of every tensor the source holds (optimizer
    slots and ``global_step`` included, where a checkpoint has them).

  Raises:
    FileNotFoundError: a local source that is not there, or a folder that
      is not a run folder or holds no checkpoint.
    ValueError: an unreadable tarball, or one without exactly one
      checkpoint; a damaged run checkpoint; a ``.tflite`` source without
      ``model``, or one that is no DeepLab model or is truncated
      (``tflite_model.NotDeepLabError``, with the reason).
  """
  if tf.io.gfile.isdir(source):
    run, _ = run_dir.restore_model(run_dir.read_config(source), source)
    return _model_arrays(run)
  if zoo.is_name(source) or zoo.is_url(source):
    return _read_archive(zoo.download(source))
  if zoo.is_archive(source):
    if not os.path.isfile(source):  # tarfile reads the local disk only.
      raise FileNotFoundError(f"weights source {source!r} is not a local file")
    return _read_archive(source)
  if source.endswith(".tflite"):
    _require(source)
    if model is None:
      raise ValueError(f"weights source {source!r}: reading a .tflite file "
                       "needs the model it is for")
    return tflite_arrays(tflite_model.read_file(source), model)
  if source.endswith(".keras"):
    _require(source)
    return _model_arrays(keras.models.load_model(source, compile=False))
  if not tf.io.gfile.exists(source + ".index"):
    raise FileNotFoundError(
        f"weights source {source!r} is neither a run folder, a zoo name, an "
        "address, a tarball, a .tflite or .keras file nor a checkpoint prefix "
        f"(no {source + '.index'!r})")
  return _read_checkpoint(source)


def load_backbone_weights(model: keras.Model, source: str) -> LoadReport:
  """Loads every backbone weight of ``model`` from ``source``.

  Args:
    model: a ``DeepLab`` or a ``Classifier``.
    source: any source ``read_weights`` reads: an original DeepLab/slim
      (ImageNet) checkpoint prefix, a zoo name (an ImageNet backbone
      checkpoint, ``deeplab.zoo.BACKBONE_CHECKPOINTS``), a ``.keras`` file,
      or a run folder of ours with the same backbone (a classification run
      pretrains one).

  Returns:
    The ``LoadReport``; the source's other tensors (a classifier's logits,
    a segmentation head, optimizer slots) are listed as unused.

  Raises:
    FileNotFoundError: ``source`` is not there.
    ValueError: a backbone weight is missing or has another shape (weights
      of another backbone or width), or a zoo name of another backbone.
  """
  backbone = backbones.get(model.args.backbone)
  zoo.check_backbone_weights(source, backbone.name, model.args.depth_multiplier)
  report = assign_by_original_names(model, read_weights(source, model),
                                    select=backbone.is_backbone_weight)
  if report.missing or report.mismatched or not report.loaded:
    raise ValueError(
        f"backbone weights {source!r} do not fit backbone {backbone.name!r}:\n"
        + report.summary())
  logging.info("Backbone weights from %s: all %d weights of backbone %s "
               "loaded (%s)", source, len(report.loaded), backbone.name,
               report.summary())
  return report
