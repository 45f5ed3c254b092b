r"""Imports released DeepLab weights into a checkpoint of ours.

  deeplab-convert --source=xception_coco_voc_trainaug --workdir=W
  deeplab-convert --source=deeplabv3_257_mv_gpu.tflite --workdir=W
  deeplab-convert --config=pascal_voc_xception65 \
      --source=deeplabv3_pascal_train_aug_2018_01_04.tar.gz --workdir=W

--source is a name of the original's model zoo (``deeplab.zoo.MODELS``,
its config taken from the zoo's table unless --config is given), a download
address, a ``.tar.gz`` of the zoo, a TF1 checkpoint prefix or a DeepLab
TFLite file (float32, float16 or quantized; its config read from its graph
unless --config is given, which must then agree with the file;
deeplab/convert.py says how each is read and checked). W then holds
checkpoints/ckpt-0 and config.json, and deeplab-eval, deeplab-export and
deeplab-predict use it like a trained run; deeplab-train fine-tunes from it
(``--config.init.checkpoint=W``, with
``--config.init.initialize_last_layer=False`` for another class count).
"""

from absl import app
from absl import flags

from deeplab import config as config_lib
from deeplab import convert as convert_lib
from deeplab import run_dir
from deeplab import zoo
from deeplab.cli import common


def main():
  """Console-script entry point: flags, then ``deeplab.convert.convert``."""
  config_flag = common.define_config_flag(
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
    implied = zoo.is_name(source.value) or source.value.endswith(".tflite")
    if (implied and not common.config_file_given() and
        not run_dir.has_config(workdir.value)):
      # The source's own config (the zoo table's, or read from the .tflite
      # file's graph) with the --config.x changes; convert refuses a change
      # that contradicts a .tflite file.
      try:
        config = convert_lib.implied_config(source.value)
      except ValueError as error:
        raise app.UsageError(str(error)) from error
      for path, value in common.given_changes(config_flag.value).items():
        config_lib.set_field(config, path, value)
    else:
      config = common.run_config(config_flag.value, workdir.value)
    print(convert_lib.convert(source.value, workdir.value, config).summary())

  flags.mark_flags_as_required(["source", "workdir"])
  common.run_app(_main, __doc__)
