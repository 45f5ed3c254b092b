"""Imports released DeepLab weights into a checkpoint of ours.

Sources: a name of the original's model zoo (``deeplab.zoo.MODELS``;
downloaded once into Keras' file cache, its config the shipped config the
zoo's table names unless a config is given), a download address, a downloaded
``.tar.gz`` of the zoo, an unpacked TF1 checkpoint prefix (read by variable
name), a TFLite file as the TFLite segmentation examples distribute
(batch norm folded into biases), or a ``.keras`` file or run folder of
ours: whatever ``deeplab.weights.read_weights`` reads. Every model weight
must be found with its shape: missing tensors and shape mismatches are
errors listing all of them; source tensors nothing used (optimizer slots,
global_step, other heads) are listed. A corrupted tarball is refused with
the reason. The tool is ``deeplab-convert`` (deeplab/cli/convert.py).
"""

from __future__ import annotations

from absl import logging

from deeplab import model as model_lib
from deeplab import run_dir
from deeplab import weights as weights_lib
from deeplab import zoo


def convert(source: str, workdir: str, config=None) -> weights_lib.LoadReport:
  """Builds the config's model, fills it from ``source``, saves it in workdir.

  Example:
    >>> report = convert("xception_coco_voc_trainaug", "runs/voc_zoo")

  Args:
    source: any source ``weights.read_weights`` reads: a zoo name, an
      address, a ``.tar.gz``, a checkpoint prefix, a ``.keras`` or
      ``.tflite`` file, a run folder (module docstring).
    workdir: the run folder to write.
    config: the config describing the source's model; None: the config the
      source implies (a zoo name's: the shipped config its entry names).

  Raises:
    FileNotFoundError: ``source`` does not exist.
    ValueError: a model weight is missing from the source or has another
      shape (the config does not describe the source's architecture), an
      unreadable tarball, or no config for a source that implies none (a
      backbone checkpoint of the zoo implies no segmentation model).
  """
  run_dir.refuse_existing_checkpoints(workdir)  # Before minutes of work.
  if config is None:
    config = zoo.model_config(source)
  model = model_lib.build_model(config)
  report = weights_lib.assign_by_original_names(
      model, weights_lib.read_weights(source, model))
  if report.missing or report.mismatched:
    raise ValueError(f"{source} does not fit the config's model:\n"
                     + report.summary())
  logging.info("Wrote %s", run_dir.save_model(model, config, workdir, step=0))
  return report
