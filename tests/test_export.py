"""SavedModel and TFLite export of the released model, checked from outside.

The model is Google's released MobileNetV2 (imported by the converter CLI),
so agreement is measured on real weights and real CamVid frames.
"""

import json
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from configs import pascal_voc_mobilenetv2_dm05
from deeplab import config as config_lib
from deeplab import evaluation
from deeplab import export_lib
from deeplab import run_dir
from deeplab.data import augment
from tests import harness
from tests.conftest import REPO


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(workdir, export_dir, tflite path) from the CLIs, and the Keras model."""
  root = tmp_path_factory.mktemp("export")
  harness.convert_released(root / "w")
  result = subprocess.run(
      [sys.executable, "export.py", f"--workdir={root / 'w'}", f"--export_dir={root / 'saved'}",
       "--legacy_names", f"--tflite={root / 'model.tflite'}",
       "--tflite_size=257,257"], cwd=REPO, capture_output=True, text=True,
      timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  model, _ = run_dir.restore_model(pascal_voc_mobilenetv2_dm05.get_config(), str(root / "w"))
  return root, model


def keras_labels(model, images, crop_size=None):
  probabilities = evaluation.predict_probabilities(
      model, augment.normalize(tf.cast(images, tf.float32)), crop_size=crop_size)
  return tf.argmax(probabilities, -1, output_type=tf.int32).numpy()


def served_labels(model, images):
  """What the SavedModel serves: padded to the run's evaluation crop."""
  crop = config_lib.eval_crop_size(pascal_voc_mobilenetv2_dm05.get_config())
  assert crop == (513, 513)  # VOC's, as the original's export pads to.
  return keras_labels(model, images, crop)


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
print(json.loads(loaded.metadata.numpy())["class_names"][15])
"""


def test_saved_model_in_a_fresh_process_and_saved_model_cli(exported):
  root, model = exported
  frames = harness.camvid_frames(2)
  images = np.stack([image for _, image in frames])  # 360x480: not aligned.
  np.save(root / "frames.npy", images)
  (root / "pngs.json").write_text(json.dumps([str(p) for p, _ in frames]))
  result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(root)],
                          capture_output=True, text=True, timeout=600, cwd="/")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == "person"
  expected = served_labels(model, images)
  assert expected.dtype == np.int32 and len(np.unique(expected)) > 1
  fresh = np.load(root / "fresh_labels.npy")
  assert fresh.dtype == np.int32 and fresh.shape == (2, 360, 480)
  np.testing.assert_array_equal(fresh, expected)
  np.testing.assert_array_equal(np.load(root / "encoded_labels.npy"), expected)
  np.testing.assert_array_equal(np.load(root / "legacy_labels.npy"), expected[:1])

  cli = REPO / ".venv" / "bin" / "saved_model_cli"
  cli = str(cli) if cli.exists() else "saved_model_cli"
  np.save(root / "one.npy", images[:1])
  result = subprocess.run(
      [cli, "run", "--dir", str(root / "saved"), "--tag_set", "serve",
       "--signature_def", "serving_default", "--inputs",
       f"images={root / 'one.npy'}", "--outdir", str(root / "cli"),
       "--overwrite"], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  np.testing.assert_array_equal(np.load(root / "cli" / "labels.npy"), expected[:1])


def test_the_served_model_converts_or_refuses_bad_images(exported):
  root, _ = exported
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
  interpreter = tf.lite.Interpreter(str(path))
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


def test_tflite_float32_float16_and_int8_agree_with_keras_on_real_images(exported):
  root, model = exported
  frames = [image for _, image in harness.camvid_frames(6)]
  images = tf.image.resize(np.stack(frames), (257, 257)).numpy()
  expected = keras_labels(model, images)
  agreement = {"float32": np.mean(tflite_labels(root / "model.tflite", images) == expected)}
  sizes = {"float32": (root / "model.tflite").stat().st_size}
  calibration = tf.image.resize(
      np.stack([image for _, image in harness.camvid_frames(10)[6:]]), (257, 257)).numpy()
  for quantization in ("float16", "int8"):
    path = root / f"{quantization}.tflite"
    sizes[quantization] = export_lib.export_tflite(
        model, str(path), 257, 257, quantization, list(calibration))
    agreement[quantization] = np.mean(tflite_labels(path, images) == expected)
  print("agreement", agreement, "bytes", sizes)
  assert agreement["float32"] >= 0.999
  assert agreement["float16"] >= 0.99
  assert agreement["int8"] >= 0.9
  assert sizes["float16"] < 0.6 * sizes["float32"]
  assert sizes["int8"] < 0.4 * sizes["float32"]


def test_predict_cli_writes_masks_and_overlays_and_names_bad_files(exported, tmp_path):
  root, model = exported
  inputs = tmp_path / "in"
  inputs.mkdir()
  frames = harness.camvid_frames(2)
  for path, image in frames:
    Image.fromarray(image).save(inputs / path.name)
  (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  out = tmp_path / "out"
  result = subprocess.run(
      [sys.executable, "-m", "deeplab.predict", f"--saved_model={root / 'saved'}",
       f"--input={inputs}", f"--output_dir={out}"], cwd=REPO,
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 1, result.stderr[-3000:]
  assert "broken.png: unreadable image" in result.stderr
  expected = served_labels(model, np.stack([image for _, image in frames]))
  for (path, image), labels in zip(frames, expected):
    stem = out / path.stem
    np.testing.assert_array_equal(np.asarray(Image.open(f"{stem}_ids.png")), labels)
    assert np.asarray(Image.open(f"{stem}_color.png")).shape == image.shape
    assert np.asarray(Image.open(f"{stem}_overlay.png")).shape == image.shape
  # From the checkpoint instead of the SavedModel: the same ids.
  out2 = tmp_path / "out2"
  result = harness.run_cli("-m", "deeplab.predict", f"--workdir={root / 'w'}",
                           f"--input={inputs}/0*.png", f"--output_dir={out2}")
  assert result.returncode == 0, result.stderr[-3000:]
  for path, _ in frames:
    np.testing.assert_array_equal(np.asarray(Image.open(out2 / f"{path.stem}_ids.png")),
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
  root, model = exported
  export_dir = root / "with_frozen"
  export_lib.export_run(pascal_voc_mobilenetv2_dm05.get_config(),
                        str(root / "w"), export_dir=str(export_dir),
                        frozen_graph=True)
  path = export_dir / export_lib.FROZEN_GRAPH_NAME
  assert path.name == "frozen_inference_graph.pb"  # The original's name.
  frames = np.stack([image for _, image in harness.camvid_frames(2)])
  np.save(root / "frozen_frames.npy", frames)
  result = subprocess.run(
      [sys.executable, "-c", FROZEN_CLIENT, str(path),
       str(root / "frozen_frames.npy"), str(root / "frozen_labels.npy")],
      capture_output=True, text=True, timeout=600, cwd="/")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == "ok"
  labels = np.load(root / "frozen_labels.npy")
  assert labels.shape == (2, 360, 480)
  np.testing.assert_array_equal(labels, served_labels(model, frames))


def test_a_frozen_graph_needs_an_export_dir():
  with pytest.raises(ValueError, match="--export_dir with --frozen_graph"):
    export_lib.export_run(pascal_voc_mobilenetv2_dm05.get_config(), "/nowhere",
                          tflite_path="/tmp/x.tflite", frozen_graph=True)
