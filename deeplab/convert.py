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

from absl import logging
import tensorflow as tf

from deeplab import model as model_lib
from deeplab import run_dir
from deeplab import weights as weights_lib


def convert(config, source: str, workdir: str) -> weights_lib.LoadReport:
  """Builds the config's model, fills it from ``source``, saves it in workdir.

  Raises:
    FileNotFoundError: ``source`` does not exist.
    ValueError: a model weight is missing from the source or has another
      shape (the config does not describe the source's architecture).
  """
  model = model_lib.build_model(config)
  if source.endswith(".tflite"):
    if not tf.io.gfile.exists(source):
      raise FileNotFoundError(f"--source={source!r} does not exist")
    arrays = weights_lib.read_tflite(source, model)
  else:
    arrays = weights_lib.read_source(source)
  report = weights_lib.assign_by_original_names(model, arrays)
  if report.missing or report.mismatched:
    raise ValueError(f"{source} does not fit the config's model:\n"
                     + report.summary())
  logging.info("Wrote %s", run_dir.save_model(model, config, workdir, step=0))
  return report


def _cli():
  """``python -m deeplab.convert``: flags, then ``convert``."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  from deeplab import cli  # pylint: disable=g-import-not-at-top

  config_flag = cli.define_config_flag(
      "Config describing the source's architecture (default: the config of "
      "the run in --workdir).")
  source = flags.DEFINE_string("source", None,
                               "A .tflite file or a TF1 checkpoint prefix.")
  workdir = flags.DEFINE_string("workdir", None, "Folder for the checkpoint.")

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = cli.run_config(config_flag.value, workdir.value)
    print(convert(config, source.value, workdir.value).summary())

  flags.mark_flags_as_required(["source", "workdir"])
  app.run(main)


if __name__ == "__main__":
  _cli()
