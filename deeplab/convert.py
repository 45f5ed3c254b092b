"""Imports released DeepLab weights into a checkpoint of ours.

Sources: a name of the original's model zoo (``deeplab.zoo.MODELS``;
downloaded once into Keras' file cache, its config the shipped config the
zoo's table names unless a config is given), a download address, a downloaded
``.tar.gz`` of the zoo, an unpacked TF1 checkpoint prefix (read by variable
name), a released DeepLab TFLite file (float32, float16 or quantized, batch
norm folded: ``deeplab.tflite_model`` reads its architecture and weights
from its graph, and its config unless a config is given), or a ``.keras``
file or run folder of ours: whatever ``deeplab.weights.read_weights``
reads. Every model weight
must be found with its shape: missing tensors and shape mismatches are
errors listing all of them; source tensors nothing used (optimizer slots,
global_step, other heads) are listed. A corrupted tarball is refused with
the reason. The tool is ``deeplab-convert`` (deeplab/cli/convert.py).
"""

from __future__ import annotations

from absl import logging

from deeplab import model as model_lib
from deeplab import run_dir
from deeplab import tflite_model
from deeplab import weights as weights_lib
from deeplab import zoo


def _tflite_config(released: tflite_model.DeepLabFile, config):
  """The config of a DeepLab TFLite file's run: the file's own, or the one
  given, which must agree with the file.

  Raises:
    ValueError: naming each contradicting field and both values.
  """
  if config is None:
    return released.config()
  contradictions = released.contradictions(config)
  if contradictions:
    raise ValueError(f"the config contradicts {released.path}: " + "; ".join(
        f"{key}={given!r} but the file has {found!r}"
        for key, (given, found) in contradictions.items()))
  return config


def implied_config(source: str):
  """The config ``source`` implies: a ``.tflite`` file's own (read from its
  graph), or the shipped config a zoo name's entry names.

  Raises:
    ValueError: a source that implies no config (a backbone checkpoint of
      the zoo, a name outside it), or a ``.tflite`` file that is no DeepLab
      model; the message says what to give instead.
  """
  if source.endswith(".tflite"):
    return tflite_model.read_file(source).config()
  return zoo.model_config(source)


def convert(source: str, workdir: str, config=None) -> weights_lib.LoadReport:
  """Builds the source's model, fills it from ``source``, saves it in workdir.

  Example:
    >>> report = convert("deeplabv3_257_mv_gpu.tflite", "runs/released")
    >>> print(report.summary())  # What was loaded, dequantized, differs.

  Args:
    source: any source ``weights.read_weights`` reads: a zoo name, an
      address, a ``.tar.gz``, a checkpoint prefix, a ``.keras`` or
      ``.tflite`` file, a run folder (module docstring).
    workdir: the run folder to write.
    config: the config describing the source's model; None infers it from
      the source: for a zoo name the shipped config its entry names, for a
      ``.tflite`` file the file's own (architecture, class count, evaluation
      crop = its input size).

  Returns:
    The ``LoadReport`` (for a ``.tflite`` file also what was dequantized
    and where the file differs from what the config expresses).

  Raises:
    FileNotFoundError: ``source`` does not exist.
    ValueError: a model weight is missing from the source or has another
      shape (the config does not describe the source's architecture), an
      unreadable tarball, no config for a source that implies none (a
      backbone checkpoint of the zoo implies no segmentation model), a
      config contradicting a ``.tflite`` file (naming the field and both
      values), or a ``.tflite`` file that is truncated or no DeepLab model.
  """
  run_dir.refuse_existing_checkpoints(workdir)  # Before minutes of work.
  released = None
  if source.endswith(".tflite"):
    released = tflite_model.read_file(source)
    config = _tflite_config(released, config)
  if config is None:
    config = zoo.model_config(source)
  model = model_lib.build_model(config)
  report = weights_lib.assign_by_original_names(
      model, weights_lib.tflite_arrays(released, model) if released
      else weights_lib.read_weights(source, model))
  if report.missing or report.mismatched:
    raise ValueError(f"{source} does not fit the config's model:\n"
                     + report.summary())
  if released:
    report.dequantized = released.dequantized()
    report.notes = list(released.notes)
  logging.info("Wrote %s", run_dir.save_model(model, config, workdir, step=0))
  return report
