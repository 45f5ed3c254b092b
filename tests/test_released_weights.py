"""Importing the original DeepLab weights: TF1 checkpoints and TFLite parity."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab import convert
from deeplab import naming
from deeplab import run_dir
from deeplab import weights
from deeplab_configs import pascal_voc_mobilenetv2_dm05
from deeplab_configs import synthetic
from tests import harness


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


def test_the_released_tflite_model_and_ours_agree_on_real_images(tmp_path):
  """The acceptance test: same logits (1e-3) and labels (99.9%) as Google's."""
  output = harness.convert_released(tmp_path)
  assert "loaded 272 tensors" in output
  config = pascal_voc_mobilenetv2_dm05.get_config()
  model, _ = run_dir.restore_model(config, str(tmp_path))
  interpreter = weights.tflite_interpreter(str(harness.released_tflite()))
  interpreter.allocate_tensors()
  source = interpreter.get_input_details()[0]
  target = interpreter.get_output_details()[0]
  frames = [image for _, image in harness.camvid_frames(8)]
  inputs = tf.image.resize(np.stack(frames), (257, 257)).numpy() / 127.5 - 1.0
  worst, agree, pixels = 0.0, 0, 0
  for image in inputs.astype(np.float32):
    interpreter.set_tensor(source["index"], image[None])
    interpreter.invoke()
    theirs = interpreter.get_tensor(target["index"])[0]
    ours = model(image[None], training=False).numpy()[0]
    worst = max(worst, float(np.abs(ours - theirs).max()))
    agree += int(np.sum(ours.argmax(-1) == theirs.argmax(-1)))
    pixels += ours.shape[0] * ours.shape[1]
  print(f"max |logit difference| {worst:.2e}, label agreement {agree / pixels:.6f}")
  assert worst <= 1e-3
  assert agree / pixels >= 0.999
