r"""Imports released DeepLab weights into a checkpoint of ours.

  python -m deeplab.convert --source=xception_coco_voc_trainaug --workdir=W
  deeplab-convert --config=pascal_voc_mobilenetv2_dm05 \
      --source=deeplabv3_257_mv_gpu.tflite --workdir=W
  deeplab-convert --config=pascal_voc_xception65 \
      --source=deeplabv3_pascal_train_aug_2018_01_04.tar.gz --workdir=W

Sources (``--source``): a name of the original's model zoo
(``deeplab.zoo.MODELS``; downloaded once into Keras' file cache, its config
taken from the zoo's table unless ``--config`` is given), a download
address, a downloaded ``.tar.gz`` of the zoo, an unpacked TF1 checkpoint
prefix (read by variable name), or a TFLite file as the TFLite segmentation
examples distribute (batch norm folded into biases). Every model weight
must be found with its shape: missing tensors and shape mismatches are
errors listing all of them; source tensors nothing used (optimizer slots,
global_step, other heads) are listed. A corrupted tarball is refused with
the reason. W then holds checkpoints/ckpt-0 and config.json, and eval.py,
export.py and deeplab.predict use it like a trained run; train.py
fine-tunes from it (``--config.init.checkpoint=W``, with
``--config.init.initialize_last_layer=False`` for another class count).
"""

from __future__ import annotations

if __name__ == "__main__":
  # `python -m`: the runtime is chosen before TensorFlow loads
  # (deeplab/runtime.py), then main() runs from a fresh import of this module.
  from deeplab import runtime

  runtime.launch(__spec__.name)

from absl import logging
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import model as model_lib
from deeplab import run_dir
from deeplab import weights as weights_lib
from deeplab import zoo


def convert(config, source: str, workdir: str) -> weights_lib.LoadReport:
  """Builds the config's model, fills it from ``source``, saves it in workdir.

  Args:
    config: the config describing the source's model; None takes the
      zoo table's for a zoo name.
    source: a zoo name, an address, a ``.tar.gz``, a checkpoint prefix, a
      ``.keras`` file or a ``.tflite`` file (module docstring).
    workdir: the run folder to write.

  Raises:
    FileNotFoundError: ``source`` does not exist.
    ValueError: a model weight is missing from the source or has another
      shape (the config does not describe the source's architecture), an
      unreadable tarball, or no config for a source outside the zoo.
  """
  run_dir.refuse_existing_checkpoints(workdir)  # Before minutes of work.
  if config is None:
    if source not in zoo.MODELS:
      raise ValueError(f"--source={source!r} is not a model zoo name "
                       f"({sorted(zoo.MODELS)}): give --config")
    config = zoo.MODELS[source].get_config()
  model = model_lib.build_model(config)
  if source.endswith(".tflite"):
    if not tf.io.gfile.exists(source):
      raise FileNotFoundError(f"--source={source!r} does not exist")
    arrays = weights_lib.read_tflite(source, model)
  else:
    arrays = zoo.checkpoint_arrays(source)
  report = weights_lib.assign_by_original_names(model, arrays)
  if report.missing or report.mismatched:
    raise ValueError(f"{source} does not fit the config's model:\n"
                     + report.summary())
  logging.info("Wrote %s", run_dir.save_model(model, config, workdir, step=0))
  return report


def main():
  """``python -m deeplab.convert``: flags, then ``convert``."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  from deeplab import cli  # pylint: disable=g-import-not-at-top

  config_flag = cli.define_config_flag(
      "Config describing the source's architecture (default: the config of "
      "the run in --workdir).")
  source = flags.DEFINE_string(
      "source", None, "A model zoo name (deeplab.zoo.MODELS), a download "
      "address, a .tar.gz of the zoo, a TF1 checkpoint prefix or a .tflite "
      "file.")
  workdir = flags.DEFINE_string("workdir", None, "Folder for the checkpoint.")

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if (source.value in zoo.MODELS and not cli.config_file_given() and
        not run_dir.has_config(workdir.value)):
      # A zoo name alone: the zoo table's config, with --config.x changes.
      config = zoo.MODELS[source.value].get_config()
      for path, value in cli.given_changes(config_flag.value).items():
        config_lib.set_field(config, path, value)
    else:
      config = cli.run_config(config_flag.value, workdir.value)
    print(convert(config, source.value, workdir.value).summary())

  flags.mark_flags_as_required(["source", "workdir"])
  cli.run_app(_main, __doc__)

