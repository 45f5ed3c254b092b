"""ONNX export against the SavedModel.

ONNX Runtime runs the exported file beside the SavedModel of the same run
on real CamVid frames (../shared; synthetic images when it is absent) at
two sizes, for MobileNetV2 (Google's released weights when ../shared is
there, else the synthetic config's model) and a random-init Xception-65
at small inputs.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import inference
from deeplab import model as model_lib
from deeplab import run_dir
from deeplab.data import dataset_table
from deeplab.export import onnx as onnx_export
from deeplab_datasets import make_synthetic
from tests import harness
from tests.conftest import SHARED

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


def shared(*parts):
  return SHARED.joinpath(*parts).exists()


def frames(count):
  """``count`` real CamVid val frames (360x480), else synthetic images of
  the same size."""
  if shared("camvid", "val"):
    return [image for _, image in harness.camvid_frames(count)]
  return [make_synthetic.generate(i, 0, 480)[0][:360] for i in range(count)]


def onnx_outputs(path, images):
  session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
  labels, probabilities = session.run(["labels", "probabilities"],
                                      {"images": images})
  return labels, probabilities, session


def assert_onnx_agrees(onnx_path, saved, images):
  labels, probabilities, session = onnx_outputs(onnx_path, images)
  expected = saved.signatures["serving_default"](images=tf.constant(images))
  assert labels.dtype == np.int32 and labels.shape == images.shape[:3]
  assert probabilities.dtype == np.float32
  assert probabilities.shape == expected["probabilities"].shape
  agreement = np.mean(labels == expected["labels"].numpy())
  assert agreement >= 0.999, (images.shape, agreement)
  return session


@pytest.mark.slow
def test_onnx_of_the_cli_gives_the_saved_models_labels(tmp_path):
  """MobileNetV2, end to end through deeplab-export (about 60 s)."""
  if shared("pretrained", "deeplabv3_257_mv_gpu.tflite"):
    harness.convert_released(tmp_path / "w")  # Real weights, VOC's 513 crop.
  else:
    config = harness.config_with("unused")
    keras.utils.set_random_seed(0)
    run_dir.save_model(model_lib.build_model(config), config, str(tmp_path / "w"))
  result = harness.run_cli(
      "export.py", f"--workdir={tmp_path / 'w'}", f"--export_dir={tmp_path / 'saved'}",
      f"--onnx={tmp_path / 'model.onnx'}", timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  saved = tf.saved_model.load(str(tmp_path / "saved"))
  images = np.stack(frames(2))
  small = tf.cast(tf.image.resize(images, (images.shape[1] * 2 // 3 + 1,
                                           images.shape[2] * 2 // 3 + 1)), tf.uint8)
  for batch in (images, small.numpy()[:1]):
    session = assert_onnx_agrees(tmp_path / "model.onnx", saved, batch)
  (source,) = session.get_inputs()
  assert (source.name, source.type, source.shape[-1]) == ("images", "tensor(uint8)", 3)
  assert [(o.name, o.type) for o in session.get_outputs()] == [
      ("labels", "tensor(int32)"), ("probabilities", "tensor(float)")]
  metadata = json.loads(session.get_modelmeta().custom_metadata_map["deeplab"])
  # The SavedModel's metadata, less what only its serving function does.
  serving_only = {"max_request_pixels", "max_image_pixels", "tile_size", "tile_overlap",
                  "probabilities"}
  assert metadata == {k: v for k, v in json.loads(saved.metadata.numpy()).items()
                      if k not in serving_only}
  assert metadata["checkpoint"]["selector"] == "latest"


@pytest.mark.slow
def test_onnx_of_xception65_gives_the_inference_paths_labels(tmp_path):
  """A random-init Xception-65 at 129 and 193 px against
  ``inference.predict_labels``, the function the SavedModel serves (the
  MobileNetV2 test above compares with a SavedModel on disk)."""
  config = config_lib.base_config()
  config.dataset.name, config.dataset.num_classes = "synthetic", 5
  config.model.backbone = "xception_65"
  keras.utils.set_random_seed(0)
  model = model_lib.build_model(config)
  onnx_export.export_onnx(model, str(tmp_path / "model.onnx"),
                          dataset_table.from_config(config))
  images = np.stack(frames(2))
  for size in (129, 193):
    resized = tf.cast(tf.image.resize(images, (size, size + 16)), tf.uint8).numpy()
    labels, probabilities, _ = onnx_outputs(tmp_path / "model.onnx", resized)
    expected_labels, expected = inference.predict_labels(model, resized)
    assert labels.shape == resized.shape[:3] and probabilities.shape == expected.shape
    agreement = np.mean(labels == expected_labels.numpy())
    assert agreement >= 0.999, (size, agreement)
  # Its atrous separable convolutions (ASPP, exit flow) are dilated Convs,
  # not space-to-depth rewrites, and the image pooling's 1x1 map is
  # broadcast, not resized (OpenVINO reads the file), and the softmax is
  # the ops it is made of.
  onnx = pytest.importorskip("onnx")
  nodes = onnx.load(str(tmp_path / "model.onnx")).graph.node
  op_types = {n.op_type for n in nodes}
  assert not {"SpaceToDepth", "DepthToSpace", "Softmax"} & op_types
  assert "Expand" in op_types
  dilations = {tuple(a.ints) for n in nodes if n.op_type == "Conv"
               for a in n.attribute if a.name == "dilations"}
  assert {(2, 2), (6, 6), (12, 12), (18, 18)} <= dilations, dilations


@pytest.mark.slow
def test_onnx_resizes_to_range_and_pads_in_the_graph(tmp_path):
  """The synthetic model with a config's resize range and crop, as
  ``inference.predict_labels`` (scales and flip convert as well; each adds
  a copy of the model to the graph and its conversion time); about 20 s."""
  config = harness.config_with("unused")
  config.model.aspp_filters = config.model.decoder_filters = 16
  keras.utils.set_random_seed(0)
  model = model_lib.build_model(config)
  options = dict(crop_size=(97, 97), resize_range=(60, 90, 0))
  onnx_export.export_onnx(model, str(tmp_path / "model.onnx"), **options)
  images = np.stack(frames(2))[:, :80, :100]
  labels, probabilities, _ = onnx_outputs(tmp_path / "model.onnx", images)
  expected_labels, expected = inference.predict_labels(
      model, images, output_stride=model.args.output_stride, **options)
  assert np.mean(labels == expected_labels.numpy()) >= 0.999
  np.testing.assert_allclose(probabilities, expected.numpy(), atol=1e-4)
