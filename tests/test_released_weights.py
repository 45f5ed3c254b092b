"""Importing the original DeepLab weights: TF1 checkpoints and TFLite files.

The released TFLite files of ../shared/data/pretrained are reproduced on the
user's path: ``deeplab-convert --source=FILE`` alone, ``deeplab-export
--workdir=W --export_dir=E`` alone, the SavedModel loaded by a fresh Python
process that imports nothing of ours, its labels compared with the file's
own output (run by the TFLite interpreter) on real CamVid frames resized to
the file's input. ``pytest -s`` prints the figures docs/released_weights.md
quotes.
"""

import dataclasses
import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import convert
from deeplab import naming
from deeplab import run_dir
from deeplab import tflite_model
from deeplab import weights
from deeplab_configs import pascal_voc_mobilenetv2
from deeplab_configs import synthetic
from tests import harness
from tests.conftest import shared_path


def _original_arrays(config, offset):
  """A full model's weights under the original names, shifted by ``offset``."""
  from deeplab import model as model_lib  # pylint: disable=g-import-not-at-top
  model = model_lib.build_model(config)
  return {n: np.asarray(v) + offset for n, v in naming.original_names(model).items()}


def test_a_tf1_checkpoint_under_the_original_names_converts_exactly(tmp_path):
  config = synthetic.get_config()
  arrays = _original_arrays(config, 0.25)
  extras = {"global_step": np.array(30000, np.int64),
            "logits/semantic/weights/Momentum": np.zeros((1, 1, 64, 5), np.float32)}
  harness.write_tf1_checkpoint(tmp_path / "model.ckpt", {**arrays, **extras})
  report = convert.convert(str(tmp_path / "model.ckpt"), str(tmp_path / "w"), config)
  assert sorted(report.unused) == sorted(extras)
  assert len(report.loaded) == len(arrays) and not report.missing
  model, step = run_dir.restore_model(config, str(tmp_path / "w"))
  assert step == 0
  for name, value in naming.original_names(model).items():
    np.testing.assert_array_equal(np.asarray(value), arrays[name], err_msg=name)


def test_a_checkpoint_missing_tensors_or_of_another_shape_is_refused(tmp_path):
  config = synthetic.get_config()
  arrays = _original_arrays(config, 0.0)
  del arrays["aspp0/weights"]
  arrays["logits/semantic/biases"] = np.zeros(21, np.float32)
  harness.write_tf1_checkpoint(tmp_path / "model.ckpt", arrays)
  with pytest.raises(ValueError) as error:
    convert.convert(str(tmp_path / "model.ckpt"), str(tmp_path / "w"), config)
  message = str(error.value)
  assert "aspp0/weights" in message
  assert "logits/semantic/biases: (5,) vs (21,)" in message
  assert not (tmp_path / "w").exists()


def test_a_missing_source_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere.tflite"):
    convert.convert("/nowhere.tflite", str(tmp_path), synthetic.get_config())


# --- TFLite files that are not DeepLab models. ---


def _tiny_tflite(path, quantize=False):
  """Another network's TFLite file: a small Keras classifier (int8 weights,
  per output channel, with ``quantize``). Returns its Keras model."""
  keras.utils.set_random_seed(0)
  model = keras.Sequential([
      keras.Input((32, 32, 3), batch_size=1),
      keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
      keras.layers.GlobalAveragePooling2D(),
      keras.layers.Dense(10)])
  converter = tf.lite.TFLiteConverter.from_keras_model(model)
  if quantize:
    images = np.random.default_rng(0).uniform(-1, 1, (8, 1, 32, 32, 3))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([i.astype(np.float32)] for i in images)
  path.write_bytes(converter.convert())
  return model


def test_another_networks_tflite_file_is_refused_with_the_reason(tmp_path):
  _tiny_tflite(tmp_path / "classifier.tflite")
  with pytest.raises(ValueError, match=r"is not a DeepLab model .*output has "
                     r"shape \[1, 10\], not a segmentation"):
    convert.convert(str(tmp_path / "classifier.tflite"), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_a_truncated_tflite_file_is_refused_with_the_reason(tmp_path):
  _tiny_tflite(tmp_path / "classifier.tflite")
  data = (tmp_path / "classifier.tflite").read_bytes()
  (tmp_path / "partial.tflite").write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match="not a readable TFLite file .*truncated"):
    convert.convert(str(tmp_path / "partial.tflite"), str(tmp_path / "w"))
  (tmp_path / "text.tflite").write_text("not a model")
  with pytest.raises(ValueError, match="not a TFLite file"):
    convert.convert(str(tmp_path / "text.tflite"), str(tmp_path / "w"))


def test_per_channel_int8_weights_are_dequantized(tmp_path):
  """(q - zero_point) * scale along the quantized dimension, per channel."""
  model = _tiny_tflite(tmp_path / "int8.tflite", quantize=True)
  graph = tflite_model._Graph(  # pylint: disable=protected-access
      (tmp_path / "int8.tflite").read_bytes(), "int8.tflite")
  ((_, inputs, _, _),) = [op for op in graph.ops if op[0] == "CONV_2D"]
  kernel, kind = graph.constant(inputs[1])
  assert kind == "int8 per-channel"
  expected = np.transpose(np.asarray(model.layers[0].kernel), (3, 0, 1, 2))
  steps = np.abs(expected).max(axis=(1, 2, 3), keepdims=True) / 127
  assert np.all(np.abs(kernel - expected) <= steps / 2 + 1e-7)


def test_a_files_evaluation_crop_follows_its_resize_mapping():
  """Its input size where evaluation can use it, else the next size of the
  form output_stride * k + 1 (k without aligned corners)."""
  def crop(size, align_corners):
    model = {"output_stride": 16, "align_corners": align_corners}
    return tflite_model.DeepLabFile("f.tflite", model, size, {}, []).crop_size()
  assert crop((513, 257), True) == (513, 257)
  assert crop((512, 500), True) == (513, 513)
  assert crop((512, 256), False) == (512, 256)
  assert crop((513, 500), False) == (528, 512)


# --- The released files of ../shared, on the user's path. ---


@dataclasses.dataclass(frozen=True)
class Released:
  """A released file and what its reproduction must reach."""
  name: str
  threshold: float  # Least label agreement of the served SavedModel.
  loaded: int  # Tensors the conversion assigns.
  dequantized: str  # The report's line, "" for a float32 file.
  why: str  # What the remaining disagreement comes from.
  align_corners: bool = True  # How the file's bilinear resizes map pixels.


RELEASED = [
    Released("deeplabv3_257_mv_gpu.tflite", 0.999, 272, "",
             "float32: the same function"),
    Released("deeplabv3_mnv2_dm05_pascal_trainval_fp16.tflite", 0.995, 272,
             "dequantized: 55 float16 biases, 55 float16 kernels, 10 float16 scales",
             "float16 weights, computed in float32 by both"),
    # Measured 0.9980 on these frames: the file's activations are uint8 and it
    # reads pixels as x / 128 - 1, both named in the import report.
    Released("deeplabv3_mnv2_pascal_quant.tflite", 0.99, 272,
             "dequantized: 55 int32 per-tensor biases, 55 uint8 per-tensor kernels",
             "uint8 activations and input"),
    # Measured 0.9884: its resizes do not align corners, which the
    # converted config reads (config.model.align_corners=False) and which
    # lets evaluation run its 512x512 input unpadded; the rest is uint8
    # activations and input (docs/released_weights.md).
    Released("deeplabv3_mnv2_ade20k_uint8.tflite", 0.98, 297,
             "dequantized: 60 int32 per-tensor biases, 60 uint8 per-tensor kernels",
             "uint8 activations and input", align_corners=False),
]
FRAMES = 4

# Runs in a fresh interpreter that imports nothing of ours: the SavedModel,
# and the frozen graph where one was exported.
FRESH_PROCESS = r"""
import os, sys
import numpy as np
import tensorflow as tf
root = sys.argv[1]
frames = np.load(root + "/frames.npy")
loaded = tf.saved_model.load(root + "/saved")
labels = [loaded.signatures["serving_default"](images=tf.constant(f[None]))["labels"]
          for f in frames]
np.save(root + "/served.npy", np.concatenate(labels))
if os.path.exists(root + "/saved/frozen_inference_graph.pb"):
  graph_def = tf.compat.v1.GraphDef.FromString(
      open(root + "/saved/frozen_inference_graph.pb", "rb").read())
  with tf.Graph().as_default() as graph:
    tf.compat.v1.import_graph_def(graph_def, name="")
  with tf.compat.v1.Session(graph=graph) as session:
    frozen = [session.run("SemanticPredictions:0", {"ImageTensor:0": f[None]})
              for f in frames]
  np.save(root + "/frozen.npy", np.concatenate(frozen))
"""


def file_labels(path, frames):
  """The released file's own labels for uint8 frames [n, h, w, 3]."""
  interpreter = weights.tflite_interpreter(str(path))
  interpreter.allocate_tensors()
  source = interpreter.get_input_details()[0]
  target = interpreter.get_output_details()[0]
  labels = []
  for frame in frames:
    if source["dtype"] == np.float32:  # The original's preprocessing.
      frame = frame.astype(np.float32) / 127.5 - 1.0
    interpreter.set_tensor(source["index"], frame[None].astype(source["dtype"]))
    interpreter.invoke()
    output = interpreter.get_tensor(target["index"])[0]
    labels.append(output if output.ndim == 2 else output.argmax(-1))
  return np.stack(labels)


def agreement(name, form, ours, theirs):
  assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
  value = float(np.mean(ours == theirs))
  print(f"{name} {form}: label agreement {value:.4f} on {ours.size} pixels "
        f"({len(ours)} CamVid frames)")
  return value


@pytest.fixture(scope="module", params=RELEASED, ids=[r.name for r in RELEASED])
def served(request, tmp_path_factory):
  """One file converted and exported as a user does, served by a fresh
  process: (Released, file path, root, frames, the file's labels, report)."""
  released = request.param
  path = shared_path("pretrained", released.name)
  shared_path("camvid", "val")
  root = tmp_path_factory.mktemp(released.name.split(".")[0])
  converted = harness.run_cli("-m", "deeplab.cli", "convert", f"--source={path}",
                              f"--workdir={root / 'w'}")
  assert converted.returncode == 0, converted.stderr[-3000:]
  extra = ([f"--tflite={root / 'model.tflite'}", "--frozen_graph"]
           if released.threshold >= 0.999 else [])
  exported = harness.run_cli("-m", "deeplab.cli", "export", f"--workdir={root / 'w'}",
                             f"--export_dir={root / 'saved'}", *extra, timeout=900)
  assert exported.returncode == 0, exported.stderr[-3000:]
  size = tflite_model.read_file(str(path)).input_size
  frames = tf.cast(tf.round(tf.image.resize(
      np.stack([image for _, image in harness.camvid_frames(FRAMES)]), size)),
      tf.uint8).numpy()
  np.save(root / "frames.npy", frames)
  fresh = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(root)],
                         cwd=root, capture_output=True, text=True, timeout=600)
  assert fresh.returncode == 0, fresh.stderr[-3000:]
  return released, path, root, frames, file_labels(path, frames), converted.stdout


def test_a_released_file_converts_alone_with_its_report(served):
  released, path, root, _, _, report = served
  assert f"loaded {released.loaded} tensors" in report
  if released.dequantized:
    assert released.dequantized in report
  else:
    assert "dequantized" not in report
  config = json.loads((root / "w" / "config.json").read_text())
  size = list(tflite_model.read_file(str(path)).input_size)
  # The file's resize mapping, and its input as the evaluation crop (512
  # unpadded where corners are not aligned): nothing left to report.
  assert config["model"]["align_corners"] is released.align_corners
  assert config["eval"]["crop_size"] == size
  assert config["data"]["crop_size"] == size
  assert "resize:" not in report and "padding:" not in report
  if "uint8" in released.dequantized:
    assert "input normalisation: the file reads uint8 pixels as (x - 128)" in report
    assert "output: the file ends in ArgMax" in report


def test_the_served_savedmodel_reproduces_the_released_file(served):
  released, _, root, _, theirs, _ = served
  ours = np.load(root / "served.npy")
  assert agreement(released.name, "SavedModel", ours, theirs) >= released.threshold, \
      released.why


def test_the_converted_model_gives_a_float_files_logits(served):
  """Same logits (1e-3) as the file, in the Keras model of the run folder."""
  released, path, root, frames, _, _ = served
  if "uint8" in released.dequantized:
    pytest.skip("a uint8 file outputs ArgMax labels, no logits")
  config = run_dir.read_config(str(root / "w"))
  model, _ = run_dir.restore_model(config, str(root / "w"))
  interpreter = weights.tflite_interpreter(str(path))
  interpreter.allocate_tensors()
  source = interpreter.get_input_details()[0]
  target = interpreter.get_output_details()[0]
  worst = 0.0
  for frame in frames.astype(np.float32) / 127.5 - 1.0:
    interpreter.set_tensor(source["index"], frame[None])
    interpreter.invoke()
    theirs = interpreter.get_tensor(target["index"])[0]
    ours = model(frame[None], training=False).numpy()[0]
    worst = max(worst, float(np.abs(ours - theirs).max()))
  print(f"{released.name}: max |logit difference| {worst:.2e}")
  assert worst <= 1e-3


def test_the_frozen_graph_and_tflite_export_reproduce_the_float32_file(served):
  released, _, root, frames, theirs, _ = served
  if released.threshold < 0.999:
    pytest.skip("exported in every form for the float32 file only")
  frozen = np.load(root / "frozen.npy")
  assert agreement(released.name, "frozen graph", frozen, theirs) >= 0.999
  interpreter = weights.tflite_interpreter(str(root / "model.tflite"))
  interpreter.allocate_tensors()
  source = interpreter.get_input_details()[0]
  target = interpreter.get_output_details()[0]
  labels = []
  for frame in frames:
    interpreter.set_tensor(source["index"], frame[None].astype(np.float32))
    interpreter.invoke()
    labels.append(interpreter.get_tensor(target["index"])[0])
  assert agreement(released.name, "TFLite export", np.stack(labels), theirs) >= 0.999


def test_a_config_contradicting_the_file_is_refused_by_field(tmp_path):
  path = shared_path("pretrained", "deeplabv3_257_mv_gpu.tflite")
  with pytest.raises(ValueError) as error:
    convert.convert(str(path), str(tmp_path / "w"), pascal_voc_mobilenetv2.get_config())
  message = str(error.value)
  assert "config.model.depth_multiplier=1.0 but the file has 0.5" in message
  assert "config.model.output_stride=16 but the file has 8" in message
  assert not (tmp_path / "w").exists()
  result = harness.run_cli("-m", "deeplab.cli", "convert", f"--source={path}",
                           f"--workdir={tmp_path / 'cli'}",
                           "--config.dataset.num_classes=19")
  assert result.returncode != 0
  assert "config.dataset.num_classes=19 but the file has 21" in result.stderr


def test_the_converted_run_holds_the_files_weights_for_a_warm_start(tmp_path):
  """config.init.checkpoint=W reads the weights the file holds."""
  path = shared_path("pretrained", "deeplabv3_257_mv_gpu.tflite")
  convert.convert(str(path), str(tmp_path / "w"))
  config = run_dir.read_config(str(tmp_path / "w"))
  arrays = weights.read_weights(str(tmp_path / "w"))
  direct = weights.read_weights(str(path), run_dir.restore_model(
      config, str(tmp_path / "w"))[0])
  for name, value in arrays.items():
    np.testing.assert_allclose(value, direct[name], rtol=0, atol=0, err_msg=name)
  assert pathlib.Path(tmp_path / "w" / "checkpoints").is_dir()
