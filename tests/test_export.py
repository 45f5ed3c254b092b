"""SavedModel and TFLite export, checked from outside.

Every test runs on two models: a small synthetic model trained here (always,
so a clone without ../shared tests export fully), and Google's released
MobileNetV2 imported by the converter CLI, on real CamVid frames (skipped
when ../shared is absent).
"""

import dataclasses
import json
import pathlib
import subprocess
import sys
from typing import Callable, Dict

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import export
from deeplab import inference
from deeplab import model as model_lib
from deeplab import run_dir
from deeplab import weights
from deeplab.data import augment
from deeplab.data import dataset_table
from deeplab.export import frozen_graph
from deeplab.export import tflite
from tests import harness
from tests.conftest import REPO


@dataclasses.dataclass
class Exported:
  """A run exported by the CLI, and what its checks need."""
  root: pathlib.Path  # w/ (the run), saved/ (SavedModel), model.tflite
  model: object  # the restored Keras model
  config: object  # the run's config
  frames: Callable[[int], list]  # count -> [(png path, uint8 image)]
  class_names: tuple
  tflite_size: int
  min_agreement: Dict[str, float]  # TFLite vs Keras labels, per type
  # Exported forms vs the Keras model: the released model's labels agree
  # exactly; the untrained synthetic model has near-ties that float
  # rounding in the folded, fused graphs may flip.
  exact: bool = True


def assert_agree(exported, got, expected):
  if exported.exact:
    np.testing.assert_array_equal(got, expected)
  else:
    assert got.shape == expected.shape
    assert np.mean(got == expected) >= 0.999, np.mean(got == expected)


def _synthetic(root: pathlib.Path):
  """The synthetic config's model, untrained, with batch norm statistics
  gathered from its images (so features vary from pixel to pixel, which is
  what the checks compare), saved as a run."""
  harness.make_synthetic_records(root / "records", train_size=4, val_size=12,
                                 png_dir=root / "png")
  config = harness.config_with(root / "records")
  keras.utils.set_random_seed(0)
  model = model_lib.build_model(config)
  images = np.stack([np.asarray(Image.open(p).convert("RGB"))
                     for p in sorted((root / "png").glob("*.png"))[:4]])
  for _ in range(30):  # Moving statistics converge to these images'.
    model(augment.normalize(tf.constant(images, tf.float32)), training=True)
  run_dir.save_model(model, config, str(root / "w"))
  # 150x130 crops of the 161x161 val images: sizes the model must pad.
  folder = root / "frames"
  folder.mkdir()
  for path in sorted((root / "png").glob("*.png")):
    Image.open(path).convert("RGB").crop((0, 0, 130, 150)).save(folder / path.name)

  def frames(count):
    paths = sorted(folder.glob("*.png"))[:count]
    return [(p, np.asarray(Image.open(p).convert("RGB"))) for p in paths]

  return frames, dataset_table.get("synthetic").class_names, 129, {
      "float32": 0.999, "float16": 0.99, "int8": 0.85}


def _released(root: pathlib.Path):
  harness.convert_released(root / "w")
  return harness.camvid_frames, dataset_table.get("pascal_voc_seg").class_names, 257, {
      "float32": 0.999, "float16": 0.99, "int8": 0.9}


@pytest.fixture(scope="module", params=["synthetic", "released"])
def exported(request, tmp_path_factory):
  if request.param == "released":
    harness.released_tflite()  # Skips with the reason when ../shared is absent.
  root = tmp_path_factory.mktemp(f"export_{request.param}")
  frames, class_names, size, agreement = (
      _synthetic if request.param == "synthetic" else _released)(root)
  result = harness.run_cli(
      "export.py", f"--workdir={root / 'w'}", f"--export_dir={root / 'saved'}",
      "--legacy_names", f"--tflite={root / 'model.tflite'}",
      f"--tflite_size={size},{size}", timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  config = run_dir.read_config(str(root / "w"))
  model, _ = run_dir.restore_model(config, str(root / "w"))
  return Exported(root, model, config, frames, tuple(class_names), size, agreement,
                  exact=request.param == "released")


def keras_labels(model, images, crop_size=None):
  probabilities = inference.predict_probabilities(
      model, augment.normalize(tf.cast(images, tf.float32)), crop_size=crop_size)
  return tf.argmax(probabilities, -1, output_type=tf.int32).numpy()


def served_labels(exported, images):
  """What the exports serve: padded to the run's evaluation crop (VOC's
  513x513 for the released model, as the original's export pads to)."""
  return keras_labels(exported.model, images,
                      config_lib.eval_crop_size(exported.config))


# Runs in a fresh interpreter that imports nothing of ours.
FRESH_PROCESS = r"""
import base64, json, sys
import numpy as np
import tensorflow as tf
root = sys.argv[1]
loaded = tf.saved_model.load(root + "/saved")
frames = np.load(root + "/frames.npy")
out = loaded.signatures["serving_default"](images=tf.constant(frames))
np.save(root + "/fresh_labels.npy", out["labels"].numpy())
assert out["probabilities"].dtype == tf.float32
encoded = [open(p, "rb").read() for p in json.load(open(root + "/pngs.json"))]
out = loaded.signatures["serve_encoded"](encoded=tf.constant(encoded))
np.save(root + "/encoded_labels.npy", out["labels"].numpy())
out = loaded.signatures["legacy"](ImageTensor=tf.constant(frames[:1]))
np.save(root + "/legacy_labels.npy", out["SemanticPredictions"].numpy())
print(json.dumps(json.loads(loaded.metadata.numpy())["class_names"]))
"""


def test_saved_model_in_a_fresh_process_and_saved_model_cli(exported):
  root = exported.root
  frames = exported.frames(2)
  images = np.stack([image for _, image in frames])  # Sizes not aligned.
  np.save(root / "frames.npy", images)
  (root / "pngs.json").write_text(json.dumps([str(p) for p, _ in frames]))
  result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(root)],
                          capture_output=True, text=True, timeout=600, cwd="/")
  assert result.returncode == 0, result.stderr[-3000:]
  assert tuple(json.loads(result.stdout.strip().splitlines()[-1])) == exported.class_names
  expected = served_labels(exported, images)
  assert expected.dtype == np.int32 and len(np.unique(expected)) > 1
  fresh = np.load(root / "fresh_labels.npy")
  assert fresh.dtype == np.int32 and fresh.shape == images.shape[:3]
  assert_agree(exported, fresh, expected)
  np.testing.assert_array_equal(np.load(root / "encoded_labels.npy"), fresh)
  np.testing.assert_array_equal(np.load(root / "legacy_labels.npy"), fresh[:1])

  cli = REPO / ".venv" / "bin" / "saved_model_cli"
  cli = str(cli) if cli.exists() else "saved_model_cli"
  np.save(root / "one.npy", images[:1])
  result = subprocess.run(
      [cli, "run", "--dir", str(root / "saved"), "--tag_set", "serve",
       "--signature_def", "serving_default", "--inputs",
       f"images={root / 'one.npy'}", "--outdir", str(root / "cli"),
       "--overwrite"], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  np.testing.assert_array_equal(np.load(root / "cli" / "labels.npy"), fresh[:1])


def test_the_served_model_converts_or_refuses_bad_images(exported):
  root = exported.root
  serve = tf.saved_model.load(str(root / "saved")).signatures["serving_default"]
  rgb = np.random.RandomState(0).randint(0, 256, (1, 40, 30, 3)).astype(np.uint8)
  reference = serve(images=tf.constant(rgb))["labels"].numpy()
  # Gray is replicated to RGB; RGBA drops alpha.
  gray = serve(images=tf.constant(rgb[..., :1]))["labels"].numpy()
  np.testing.assert_array_equal(
      gray, serve(images=tf.constant(np.repeat(rgb[..., :1], 3, -1)))["labels"])
  rgba = np.concatenate([rgb, np.full_like(rgb[..., :1], 7)], -1)
  np.testing.assert_array_equal(serve(images=tf.constant(rgba))["labels"], reference)
  with pytest.raises(tf.errors.InvalidArgumentError, match="1, 3 or 4 channels"):
    serve(images=tf.constant(np.zeros((1, 8, 8, 2), np.uint8)))
  with pytest.raises(tf.errors.InvalidArgumentError, match="height > 0 and width > 0"):
    serve(images=tf.constant(np.zeros((1, 0, 8, 3), np.uint8)))
  refused = (TypeError, ValueError, tf.errors.InvalidArgumentError)
  with pytest.raises(refused, match="uint8"):
    serve(images=tf.constant(rgb.astype(np.float32)))
  with pytest.raises(refused):
    serve(images=tf.constant(rgb[0]))  # rank 3
  # The model still serves after every refusal.
  np.testing.assert_array_equal(serve(images=tf.constant(rgb))["labels"], reference)


def tflite_labels(path, images):
  interpreter = weights.tflite_interpreter(str(path))
  interpreter.allocate_tensors()
  source = interpreter.get_input_details()[0]
  target = interpreter.get_output_details()[0]
  assert target["dtype"] == np.int32
  assert all(d["dtype"] != np.int64 for d in interpreter.get_output_details())
  labels = []
  for image in images:
    interpreter.set_tensor(source["index"], image[None].astype(np.float32))
    interpreter.invoke()
    labels.append(interpreter.get_tensor(target["index"])[0])
  return np.stack(labels)


def test_tflite_float32_float16_and_int8_agree_with_keras(exported):
  root, model, size = exported.root, exported.model, exported.tflite_size
  frames = [image for _, image in exported.frames(10)]
  images = tf.image.resize(np.stack(frames[:6]), (size, size)).numpy()
  expected = keras_labels(model, images)
  agreement = {"float32": np.mean(tflite_labels(root / "model.tflite", images) == expected)}
  sizes = {"float32": (root / "model.tflite").stat().st_size}
  calibration = tf.image.resize(np.stack(frames[6:]), (size, size)).numpy()
  for quantization in ("float16", "int8"):
    path = root / f"{quantization}.tflite"
    sizes[quantization] = tflite.export_tflite(
        model, str(path), size, size, quantization, list(calibration))
    agreement[quantization] = np.mean(tflite_labels(path, images) == expected)
  print("agreement", agreement, "bytes", sizes)
  for quantization, minimum in exported.min_agreement.items():
    assert agreement[quantization] >= minimum, (quantization, agreement)
  assert sizes["float16"] < 0.6 * sizes["float32"]
  assert sizes["int8"] < 0.4 * sizes["float32"]


def test_predict_cli_writes_masks_and_overlays_and_names_bad_files(exported, tmp_path):
  root = exported.root
  inputs = tmp_path / "in"
  inputs.mkdir()
  frames = exported.frames(2)
  for path, image in frames:
    Image.fromarray(image).save(inputs / path.name)
  (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "deeplab.cli", "predict", f"--saved_model={root / 'saved'}",
       f"--input={inputs}", f"--output_dir={out}"], cwd=REPO,
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 1, result.stderr[-3000:]
  assert "broken.png: unreadable image" in result.stderr
  expected = served_labels(exported, np.stack([image for _, image in frames]))
  for (path, image), labels in zip(frames, expected):
    stem = out / path.stem
    assert_agree(exported, np.asarray(Image.open(f"{stem}_ids.png")), labels)
    assert np.asarray(Image.open(f"{stem}_color.png")).shape == image.shape
    assert np.asarray(Image.open(f"{stem}_overlay.png")).shape == image.shape
  # From the checkpoint instead of the SavedModel: the same ids.
  out2 = tmp_path / "out2"
  result = harness.run_cli("-m", "deeplab.cli", "predict", f"--workdir={root / 'w'}",
                           f"--input={inputs}/0*.png", f"--output_dir={out2}")
  assert result.returncode == 0, result.stderr[-3000:]
  for path, _ in frames:
    assert_agree(exported, np.asarray(Image.open(out2 / f"{path.stem}_ids.png")),
                 np.asarray(Image.open(out / f"{path.stem}_ids.png")))


# The original demo's client: TF1 graph and session, nothing of ours.
FROZEN_CLIENT = r"""
import sys
import numpy as np
import tensorflow as tf
path, frames, out = sys.argv[1:]
graph_def = tf.compat.v1.GraphDef.FromString(open(path, "rb").read())
with tf.Graph().as_default() as graph:
  tf.compat.v1.import_graph_def(graph_def, name="")
assert not any(op.type in ("VarHandleOp", "VariableV2", "ReadVariableOp")
               for op in graph.get_operations()), "weights are not constants"
image = graph.get_tensor_by_name("ImageTensor:0")
assert image.dtype == tf.uint8 and image.shape.as_list() == [1, None, None, 3]
with tf.compat.v1.Session(graph=graph) as session:
  labels = [session.run("SemanticPredictions:0", {"ImageTensor:0": f[None]})
            for f in np.load(frames)]
assert all(l.dtype == np.int32 for l in labels)
np.save(out, np.concatenate(labels))
print("ok")
"""


def test_frozen_graph_serves_the_originals_names_to_a_tf1_client(exported):
  root = exported.root
  export_dir = root / "with_frozen"
  result = harness.run_cli("export.py", f"--workdir={root / 'w'}",
                           f"--export_dir={export_dir}", "--frozen_graph")
  assert result.returncode == 0, result.stderr[-3000:]
  path = export_dir / frozen_graph.FROZEN_GRAPH_NAME
  assert path.name == "frozen_inference_graph.pb"  # The original's name.
  frames = np.stack([image for _, image in exported.frames(2)])
  np.save(root / "frozen_frames.npy", frames)
  result = subprocess.run(
      [sys.executable, "-c", FROZEN_CLIENT, str(path),
       str(root / "frozen_frames.npy"), str(root / "frozen_labels.npy")],
      capture_output=True, text=True, timeout=600, cwd="/")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == "ok"
  labels = np.load(root / "frozen_labels.npy")
  assert labels.shape == frames.shape[:3]
  assert_agree(exported, labels, served_labels(exported, frames))


def test_a_frozen_graph_needs_an_export_dir(exported):
  with pytest.raises(ValueError, match="--export_dir with --frozen_graph"):
    export.export_run(exported.config, str(exported.root / "w"),
                      tflite_path="/tmp/x.tflite", frozen_graph=True)


def test_an_onnx_file_of_a_run_with_tiles_is_refused_before_anything_is_written(tmp_path):
  config = harness.config_with("unused")
  config.eval.tile_size = 65
  with pytest.raises(ValueError, match="config.eval.tile_size=65: the ONNX file predicts whole"):
    export.export_run(config, str(tmp_path / "w"), export_dir=str(tmp_path / "saved"),
                      onnx_path=str(tmp_path / "model.onnx"))
  assert not list(tmp_path.iterdir())


# A fresh interpreter that imports nothing of ours: requests at and just
# above the limit (argv[2] pixels = 40 x 40), raw and encoded.
PIXEL_LIMIT = r"""
import io, json, sys
import numpy as np
from PIL import Image
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
limit = int(sys.argv[2])
print("metadata", json.loads(loaded.metadata.numpy())["max_request_pixels"])
serve, encoded = loaded.signatures["serving_default"], loaded.signatures["serve_encoded"]

def encode(height, width, fmt):
  out = io.BytesIO()
  Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(out, fmt)
  return out.getvalue()

requests = {
    "raw 1x40x40": lambda: serve(images=tf.zeros([1, 40, 40, 3], tf.uint8)),
    "raw 2x20x40": lambda: serve(images=tf.zeros([2, 20, 40, 3], tf.uint8)),
    "raw 1x40x41": lambda: serve(images=tf.zeros([1, 40, 41, 3], tf.uint8)),
    "png 40x40": lambda: encoded(encoded=tf.constant([encode(40, 40, "PNG")])),
    "png 41x40": lambda: encoded(encoded=tf.constant([encode(41, 40, "PNG")])),
    "jpeg 40x40": lambda: encoded(encoded=tf.constant([encode(40, 40, "JPEG")])),
    "jpeg 2x 40x40": lambda: encoded(encoded=tf.constant([encode(40, 40, "JPEG")] * 2)),
}
for name, request in requests.items():
  try:
    print(name, "served", request()["labels"].shape)
  except tf.errors.InvalidArgumentError as e:
    print(name, "refused", f"limit of this model, {limit}" in e.message)
"""


def test_the_served_model_refuses_requests_over_its_pixel_limit(tmp_path):
  records = harness.make_synthetic_records(tmp_path / "records", train_size=4, val_size=4)
  config = harness.config_with(records)
  keras.utils.set_random_seed(0)
  run_dir.save_model(model_lib.build_model(config), config, str(tmp_path / "w"))
  result = harness.run_cli(
      "export.py", f"--workdir={tmp_path / 'w'}", f"--export_dir={tmp_path / 'saved'}",
      "--config.export.max_request_pixels=1600", timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  result = subprocess.run([sys.executable, "-c", PIXEL_LIMIT, str(tmp_path / "saved"), "1600"],
                          capture_output=True, text=True, timeout=600, cwd="/")
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert "metadata 1600" in lines
  for name in ("raw 1x40x40", "raw 2x20x40", "png 40x40", "jpeg 40x40"):
    assert any(l.startswith(f"{name} served") for l in lines), result.stdout
  for name in ("raw 1x40x41", "png 41x40", "jpeg 2x 40x40"):
    assert f"{name} refused True" in lines, result.stdout
