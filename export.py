r"""Exports a trained workdir as a SavedModel for TF Serving, and/or TFLite.

  python export.py --config=configs/<name>.py --workdir=W --export_dir=E \
      [--output_stride=8] [--config.eval.scales='(0.75,1.0,1.25)'] \
      [--config.eval.flip=True] [--legacy_names] \
      [--tflite=model.tflite --tflite_size=513,513 --quantization=int8]

The SavedModel's signatures are described in deeplab/export_lib.py. int8
TFLite calibrates on --representative_count images of
config.data.train_pattern, resized to the TFLite input size.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np
import tensorflow as tf

from deeplab import export_lib
from deeplab.data import pipeline
from deeplab.data import registry
from deeplab.training import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Training run folder.")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "SavedModel folder.")
_OUTPUT_STRIDE = flags.DEFINE_integer(
    "output_stride", None, "Output stride of the exported model (default: "
    "the trained one; ASPP rates scale along).")
_LEGACY = flags.DEFINE_bool(
    "legacy_names", False, "Add the 'legacy' signature (ImageTensor -> "
    "SemanticPredictions) of the original frozen graph.")
_TFLITE = flags.DEFINE_string("tflite", None, "Also write a TFLite file here.")
_TFLITE_SIZE = flags.DEFINE_list(
    "tflite_size", None, "TFLite input height,width (default: the crop size).")
_QUANTIZATION = flags.DEFINE_enum("quantization", "float32",
                                  ["float32", "float16", "int8"],
                                  "TFLite weight/activation type.")
_REPRESENTATIVE = flags.DEFINE_integer(
    "representative_count", 32, "Images calibrating int8 quantization.")


def representative_images(config, height: int, width: int, count: int):
  """Training images (never validation ones) resized to the TFLite input."""
  dataset = pipeline.eval_dataset(
      config, pattern=config.data.train_pattern,
      pattern_field="config.data.train_pattern").take(count)
  for batch in dataset:
    image = (batch["image"][0] + 1.0) * 127.5
    yield tf.image.resize(image, (height, width)).numpy().astype(np.float32)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if not _EXPORT_DIR.value and not _TFLITE.value:
    raise app.UsageError("give --export_dir and/or --tflite")
  model, step = loop.restore_model(config, _WORKDIR.value)
  info = registry.from_config(config)
  if _EXPORT_DIR.value:
    export_lib.export_saved_model(
        model, info, _EXPORT_DIR.value, tuple(config.eval.scales),
        config.eval.flip, _OUTPUT_STRIDE.value, _LEGACY.value)
    logging.info("SavedModel of step %d written to %s", step, _EXPORT_DIR.value)
  if _TFLITE.value:
    height, width = (tuple(int(v) for v in _TFLITE_SIZE.value)
                     if _TFLITE_SIZE.value else tuple(config.data.crop_size))
    images = None
    if _QUANTIZATION.value == "int8":
      images = representative_images(config, height, width, _REPRESENTATIVE.value)
    size = export_lib.export_tflite(
        export_lib.with_output_stride(model, _OUTPUT_STRIDE.value or model.output_stride),
        _TFLITE.value, height, width, _QUANTIZATION.value, images)
    logging.info("TFLite (%s, %dx%d) written to %s: %d bytes",
                 _QUANTIZATION.value, height, width, _TFLITE.value, size)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
