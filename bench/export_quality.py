r"""What each exported form gives away against the float32 model: file size,
val mIoU and label agreement, on validation records.

Usage:
  python bench/export_quality.py --workdir=W \
      [--config.data.train_pattern=... --config.data.eval_pattern=...] \
      [--size=369,481] [--calibration=32] [--limit=0] [--forms=...] \
      [--write_readme]

Every form predicts each validation image resized to one fixed size (the
TFLite files' input) and rounded to whole pixel values, as a deployed
model receives them; its labels are resized back (nearest) to the label's
size. The same protocol for all isolates what the form changes:

- ``keras``: the run's model in float32 (the reference);
- ``savedmodel_float32``, ``savedmodel_bfloat16``: the SavedModel of
  ``deeplab-export``, the second with
  ``--config.model.dtype_policy=mixed_bfloat16`` (bfloat16 convolutions;
  the ``ours_bf16`` and ``ours_savedmodel_bf16`` rows of bench/compare.py);
- ``tflite_float32``, ``tflite_float16``, ``tflite_int8``,
  ``tflite_int8_full``: the TFLite files of ``--quantization``;
- ``onnx_float32``, ``onnx_int8``: the ONNX files of ``--onnx`` and
  ``--onnx_quantization=int8``, run by ONNX Runtime.

The int8 forms calibrate on --calibration training images, so no
validation image is seen. With --write_readme the table goes into
bench/README.md and each form's agreement and mIoU change into
bench/export_quality.json, from which bench/compare.py counts a
reduced-precision form as ours only close enough to float32
(``compare.MIN_AGREEMENT``, ``compare.MAX_MIOU_CHANGE``).
"""

import json
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
from deeplab import runtime  # noqa: E402
from deeplab.cli import common as cli  # noqa: E402
from deeplab.data import dataset_table  # noqa: E402
from deeplab.data import pipeline  # noqa: E402
from deeplab.export import onnx  # noqa: E402
from deeplab.export import savedmodel  # noqa: E402
from deeplab.export import tflite  # noqa: E402

FORMS = ("savedmodel_float32", "savedmodel_bfloat16") + tuple(
    "tflite_" + q for q in tflite.QUANTIZATIONS) + tuple(
    "onnx_" + q for q in onnx.QUANTIZATIONS)
JSON = pathlib.Path(__file__).resolve().parent / "export_quality.json"

_CONFIG = cli.define_config_flag()
_WORKDIR = flags.DEFINE_string("workdir", None, "Trained workdir.")
_SIZE = flags.DEFINE_list("size", ["369", "481"], "Input height,width of every form.")
_CALIBRATION = flags.DEFINE_integer("calibration", 32, "int8 calibration images.")
_LIMIT = flags.DEFINE_integer("limit", 0, "Validation images (0: all).")
_FORMS = flags.DEFINE_list("forms", list(FORMS), "Forms to measure beside keras.")
_WRITE = flags.DEFINE_bool(
    "write_readme", False, "Write the table into bench/README.md and the "
    "figures into bench/export_quality.json.")


def pixels(batch):
  """Float RGB in [0, 255] from the pipeline's [-1, 1] images."""
  return (batch["image"][0].numpy() + 1.0) * 127.5


def tflite_runner(path):
  """Labels [h, w] of an RGB image [h, w, 3] of the file's input size, as
  ``deeplab-predict --tflite`` computes them (the input quantized with the
  file's scale and zero point)."""
  predictor = predict.TFLitePredictor(str(path), num_threads=os.cpu_count())
  return lambda image: predictor.labels(image[None])[0]


def savedmodel_runner(folder):
  serve = tf.saved_model.load(folder).signatures["serving_default"]
  return lambda image: serve(images=tf.constant(image[None].astype(np.uint8)))[
      "labels"][0].numpy()


def onnx_runner(path):
  predictor = predict.OnnxPredictor(str(path))
  return lambda image: predictor.labels(image[None].astype(np.uint8))[0]


def build_runners(config, model, forms, folder, height, width, calibration):
  """{form: labels-of-image function} and {form: bytes on disk}."""
  info = dataset_table.from_config(config)
  runners, sizes = {}, {}
  for form in forms:
    kind, precision = form.split("_", 1)
    path = os.path.join(folder, form)
    if kind == "savedmodel":
      source = model
      if precision == "bfloat16":
        bf16 = run_dir.config_with_changes(
            _WORKDIR.value, {"model.dtype_policy": "mixed_bfloat16"})
        source, _ = run_dir.restore_model(bf16, _WORKDIR.value)
      savedmodel.export_saved_model(source, info, path)
      runners[form] = savedmodel_runner(path)
      sizes[form] = sum(f.stat().st_size for f in pathlib.Path(path).rglob("*")
                        if f.is_file())
    elif kind == "tflite":
      sizes[form] = tflite.export_tflite(model, path, height, width, precision,
                                         calibration)
      runners[form] = tflite_runner(path)
    elif kind == "onnx":
      sizes[form] = onnx.export_onnx(
          model, path, info, quantization=precision,
          calibration=[c.astype(np.uint8) for c in calibration])
      runners[form] = onnx_runner(path)
  return runners, sizes


def main(argv):
  del argv
  unknown = [form for form in _FORMS.value if form not in FORMS]
  if unknown:
    raise app.UsageError(f"--forms: {', '.join(unknown)} not among {', '.join(FORMS)}")
  config = cli.tool_config(_CONFIG.value, _WORKDIR.value)
  height, width = (int(v) for v in _SIZE.value)
  info = dataset_table.from_config(config)
  model, step = run_dir.restore_model(config, _WORKDIR.value)

  @tf.function
  def keras_labels(image):
    probabilities = inference.predict_probabilities(model, image[None] / 127.5 - 1.0)
    return tf.argmax(probabilities, -1, output_type=tf.int32)[0]

  def fixed_size(image):
    return np.round(tf.image.resize(image, (height, width)).numpy())

  calibration = [fixed_size(pixels(b)) for b in pipeline.eval_dataset(
      config, pattern=config.data.train_pattern,
      pattern_field="config.data.train_pattern").take(_CALIBRATION.value)]
  with tempfile.TemporaryDirectory() as tmp:
    runners, sizes = build_runners(config, model, _FORMS.value, tmp, height,
                                   width, calibration)
    runners = {"keras": lambda image: keras_labels(image).numpy(), **runners}
    matrices = {name: np.zeros((info.num_classes,) * 2, np.int64) for name in runners}
    agree = {name: 0 for name in runners}
    total = images = 0
    dataset = pipeline.eval_dataset(config)
    if _LIMIT.value:
      dataset = dataset.take(_LIMIT.value)
    for batch in dataset:
      label = batch["label"][0].numpy()
      image = fixed_size(pixels(batch))
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
  if not images:
    raise app.UsageError(f"config.data.eval_pattern={config.data.eval_pattern!r} "
                         "holds no validation image")
  miou = {name: metrics_lib.metrics_from_confusion(m, info.class_names)["miou"]
          for name, m in matrices.items()}
  cpu = runtime.this_cpu()
  lines = [f"`{_WORKDIR.value}` (step {step}), {images} validation images at "
           f"{height}x{width}, labels resized back to full size; {cpu.model} "
           f"({cpu.isa()}):", "",
           "| form | size (bytes) | val mIoU | change vs Keras | label agreement with Keras |",
           "|---|---:|---:|---:|---:|",
           f"| Keras float32 | | {miou['keras']:.4f} | | |"]
  figures = {}
  for name in _FORMS.value:
    change = miou[name] - miou["keras"]
    figures[name] = {"agreement": agree[name] / total, "miou": miou[name],
                     "miou_change": change}
    lines.append(f"| {name} | {sizes[name]:,} | {miou[name]:.4f} | {change:+.4f} | "
                 f"{agree[name] / total:.4%} |")
  common.report("export_quality", "\n".join(lines), _WRITE.value)
  if _WRITE.value:
    JSON.write_text(json.dumps({
        "workdir": _WORKDIR.value, "step": step, "images": images,
        "size": [height, width], "cpu": f"{cpu.model} ({cpu.isa()})",
        "keras_miou": miou["keras"], "forms": figures}, indent=1) + "\n")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
