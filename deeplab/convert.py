r"""Imports released DeepLab weights into a checkpoint of ours.

  python -m deeplab.convert --config=configs/pascal_voc_mobilenetv2_dm05.py \
      --source=deeplabv3_257_mv_gpu.tflite --workdir=W
  python -m deeplab.convert --config=configs/pascal_voc_xception65.py \
      --source=deeplabv3_pascal_train_aug/model.ckpt --workdir=W

Sources: the original model zoo's TF1 checkpoints (read by variable name)
and the TFLite files the TFLite segmentation examples distribute (batch
norm folded into biases). Every model weight must be found with its shape:
missing tensors and shape mismatches are errors listing all of them; source
tensors nothing used (optimizer slots, global_step, other heads) are listed.
W then holds checkpoints/ckpt-0 and config.json, and eval.py, export.py and
deeplab.predict use it like a trained run; train.py fine-tunes from it
(``--config.train.init_checkpoint=W``, with
``--config.train.initialize_last_layer=False`` for another class count).
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import tensorflow as tf

from deeplab import model as model_lib
from deeplab import weights as weights_lib
from deeplab.training import loop


def convert(config, source: str, workdir: str) -> weights_lib.LoadReport:
  """Builds the config's model, fills it from ``source``, saves it in workdir.

  Raises:
    FileNotFoundError: ``source`` does not exist.
    ValueError: a model weight is missing from the source or has another
      shape (the config does not describe the source's architecture).
  """
  model = model_lib.build_model(config)
  if source.endswith(".tflite"):
    if not os.path.isfile(source):
      raise FileNotFoundError(f"--source={source!r} does not exist")
    arrays = weights_lib.read_tflite(source, model)
  else:
    arrays = weights_lib.read_source(source)
  report = weights_lib.assign_by_original_names(model, arrays)
  if report.missing or report.mismatched:
    raise ValueError(f"{source} does not fit the config's model:\n"
                     + report.summary())
  loop.prepare_workdir(workdir)
  loop.write_config(config, workdir)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model),
      os.path.join(workdir, loop.CHECKPOINT_DIR), max_to_keep=1)
  path = manager.save(checkpoint_number=0)
  logging.info("Wrote %s", path)
  return report


_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config describing the source's architecture.",
    lock_config=True)
_SOURCE = flags.DEFINE_string("source", None,
                              "A .tflite file or a TF1 checkpoint prefix.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the checkpoint.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  report = convert(_CONFIG.value, _SOURCE.value, _WORKDIR.value)
  print(report.summary())


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "source", "workdir"])
  app.run(main)
