r"""TFLite size and mIoU drop against the Keras model, on validation records.

Usage:
  python bench/export_quality.py --workdir=W \
      [--config.data.train_pattern=... --config.data.eval_pattern=...] \
      [--size=369,481] [--calibration=32] [--limit=0] [--write_readme]

Exports the workdir's model to TFLite at a fixed input size in float32,
float16, int8 and full-integer int8_full (both calibrated on --calibration
training images, so no validation image is seen), then evaluates the Keras model and each TFLite
file on every validation record: the image is resized to the fixed size,
the predicted labels resized back (nearest) to the label's size. The same
protocol for all four isolates the cost of quantization. Also reports the
label agreement of each file with the Keras model.
"""

import os
import pathlib
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import common  # noqa: E402
from deeplab import inference  # noqa: E402
from deeplab import metrics as metrics_lib  # noqa: E402
from deeplab import predict  # noqa: E402
from deeplab import run_dir  # noqa: E402
from deeplab.cli import common as cli  # noqa: E402
from deeplab.data import dataset_table  # noqa: E402
from deeplab.data import pipeline  # noqa: E402
from deeplab.export import tflite  # noqa: E402

_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Trained workdir.")
_SIZE = flags.DEFINE_list("size", ["369", "481"], "TFLite input height,width.")
_CALIBRATION = flags.DEFINE_integer("calibration", 32, "int8 calibration images.")
_LIMIT = flags.DEFINE_integer("limit", 0, "Validation images (0: all).")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write the table into bench/README.md.")


def pixels(batch):
  """Float RGB in [0, 255] from the pipeline's [-1, 1] images."""
  return (batch["image"][0].numpy() + 1.0) * 127.5


def tflite_runner(path):
  """Labels [h, w] of a float RGB image [h, w, 3] of the file's input size,
  as ``deeplab-predict --tflite`` computes them (the input quantized with
  the file's scale and zero point)."""
  predictor = predict.TFLitePredictor(str(path), num_threads=os.cpu_count())
  return lambda image: predictor.labels(image[None])[0]


def main(argv):
  del argv
  config = cli.tool_config(_CONFIG.value, _WORKDIR.value)
  height, width = (int(v) for v in _SIZE.value)
  info = dataset_table.from_config(config)
  model, step = run_dir.restore_model(config, _WORKDIR.value)

  @tf.function
  def keras_labels(image):
    probabilities = inference.predict_probabilities(model, image[None] / 127.5 - 1.0)
    return tf.argmax(probabilities, -1, output_type=tf.int32)[0]

  calibration = [tf.image.resize(pixels(b), (height, width)).numpy()
                 for b in pipeline.eval_dataset(
                     config, pattern=config.data.train_pattern,
                     pattern_field="config.data.train_pattern")
                 .take(_CALIBRATION.value)]
  runners, sizes = {"keras": lambda image: keras_labels(image).numpy()}, {}
  with tempfile.TemporaryDirectory() as tmp:
    for quantization in tflite.QUANTIZATIONS:
      path = os.path.join(tmp, quantization + ".tflite")
      sizes[quantization] = tflite.export_tflite(
          model, path, height, width, quantization, calibration)
      runners[quantization] = tflite_runner(path)
    matrices = {name: np.zeros((info.num_classes,) * 2, np.int64) for name in runners}
    agree = {name: 0 for name in runners}
    total = images = 0
    dataset = pipeline.eval_dataset(config)
    if _LIMIT.value:
      dataset = dataset.take(_LIMIT.value)
    for batch in dataset:
      label = batch["label"][0].numpy()
      image = tf.image.resize(pixels(batch), (height, width)).numpy()
      outputs = {}
      for name, run in runners.items():
        small = run(image)
        outputs[name] = tf.image.resize(small[..., None], label.shape,
                                        method="nearest").numpy()[..., 0]
        matrices[name] += metrics_lib.confusion_matrix(
            label, outputs[name], info.num_classes, info.ignore_label).numpy()
        agree[name] += int(np.sum(outputs[name] == outputs["keras"]))
      total += label.size
      images += 1
  miou = {name: metrics_lib.metrics_from_confusion(m, info.class_names)["miou"]
          for name, m in matrices.items()}
  lines = [f"`{_WORKDIR.value}` (step {step}), {images} validation "
           f"images at {height}x{width}, labels resized back to full size:", "",
           "| model | file size (bytes) | val mIoU | drop vs Keras | label agreement with Keras |",
           "|---|---:|---:|---:|---:|",
           f"| Keras float32 | | {miou['keras']:.4f} | | |"]
  for name in tflite.QUANTIZATIONS:
    lines.append(f"| TFLite {name} | {sizes[name]:,} | {miou[name]:.4f} | "
                 f"{miou['keras'] - miou[name]:+.4f} | {agree[name] / total:.4%} |")
  table = "\n".join(lines)
  common.report("export_quality", table, _WRITE.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
