"""The full-integer TFLite file (int8_full), checked by reading its op table
from the flatbuffer (``tflite_model.op_table``) and running it in LiteRT
(the ``tflite`` extra; those tests skip without it).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import model as model_lib
from deeplab import tflite_model
from deeplab import weights
from deeplab.export import tflite
from deeplab_datasets import make_synthetic
from tests import harness
from tests.conftest import SHARED

# What a full-integer file may hold: each op's tensors all in
# tflite.INTEGER_TYPES, and the op one of these builtins.
INTEGER_OPS = {"QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "SUB",
               "MEAN", "RESIZE_BILINEAR", "CONCATENATION", "PAD", "SPACE_TO_BATCH_ND",
               "BATCH_TO_SPACE_ND", "ARG_MAX", "SOFTMAX", "RESHAPE"}


def frames(count):
  """``count`` real CamVid val frames (360x480), else synthetic images of
  the same size."""
  if SHARED.joinpath("camvid", "val").exists():
    return [image for _, image in harness.camvid_frames(count)]
  return [make_synthetic.generate(i, 0, 480)[0][:360] for i in range(count)]


def integer_model_problems(data):
  """The ops of a TFLite file that are not integer ops (op_table rows)."""
  return [op for op in tflite_model.op_table(data)
          if op[0] not in INTEGER_OPS or not tflite.is_integer_op(op)]


@pytest.fixture(scope="module")
def small_model():
  config = harness.config_with("unused")
  config.model.aspp_filters = config.model.decoder_filters = 16
  keras.utils.set_random_seed(0)
  return model_lib.build_model(config)


@pytest.mark.parametrize("output", ["labels", "probabilities"])
def test_int8_full_tflite_holds_integer_ops_only(small_model, tmp_path, output):
  pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")
  calibration = [tf.image.resize(image, (65, 65)).numpy()
                 for image in frames(2)]
  path = tmp_path / "model.tflite"
  tflite.export_tflite(small_model, str(path), 65, 65, "int8_full", calibration,
                       output=output)
  data = path.read_bytes()
  assert integer_model_problems(data) == []
  names = [op[0] for op in tflite_model.op_table(data)]
  assert ("ARG_MAX" in names) == (output == "labels")
  runner = weights.tflite_interpreter(str(path))
  runner.allocate_tensors()
  (source,), (target,) = runner.get_input_details(), runner.get_output_details()
  assert source["dtype"] == np.uint8 and tuple(source["shape"]) == (1, 65, 65, 3)
  image = np.asarray(calibration[0], np.uint8)[None]
  runner.set_tensor(source["index"], image)
  runner.invoke()
  result = runner.get_tensor(target["index"])
  if output == "labels":
    assert target["dtype"] == np.int32 and result.shape == (1, 65, 65)
    assert result.min() >= 0 and result.max() < 5
  else:
    assert target["dtype"] == np.uint8 and result.shape == (1, 65, 65, 5)
    assert target["quantization"] == (1 / 256, 0)


def test_the_op_table_names_the_float_ops_of_a_float_file(small_model, tmp_path):
  path = tmp_path / "model.tflite"
  tflite.export_tflite(small_model, str(path), 65, 65, "float32")
  problems = integer_model_problems(path.read_bytes())
  assert ("CONV_2D", ("FLOAT32", "FLOAT32", "FLOAT32"), ("FLOAT32",)) in problems
  with pytest.raises(ValueError, match="int8_full quantization needs representative_images"):
    tflite.export_tflite(small_model, str(path), 65, 65, "int8_full")
  with pytest.raises(ValueError, match="output must be labels or probabilities, got 'logits'"):
    tflite.export_tflite(small_model, str(path), 65, 65, output="logits")
