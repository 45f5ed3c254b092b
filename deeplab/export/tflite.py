"""TFLite export: fixed input size, RGB pixels [1, h, w, 3] in [0, 255] ->
int32 labels [1, h, w] (int64 breaks mobile runtimes) or class
probabilities [1, h, w, classes], in one of ``QUANTIZATIONS``:

- float32, float16 (weights);
- int8: dynamic-range weights and activations calibrated on real training
  images (``representative_images``), float input and output, ops without
  an int8 kernel left in float;
- int8_full: full-integer, as Edge TPU compilers and NPU delegates take
  it: only integer builtin ops (``TFLITE_BUILTINS_INT8``; the conversion
  fails naming an op without an integer kernel), uint8 pixels in (the
  input's scale and zero point are in the file), ``ArgMax`` in the graph
  with int32 labels out, or uint8 probabilities (scale 1/256) with
  ``output="probabilities"``.
"""

from __future__ import annotations

from typing import Iterable, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from deeplab import folding
from deeplab import progress
from deeplab import tflite_model
from deeplab.data import augment
from deeplab.data import pipeline

QUANTIZATIONS = ("float32", "float16", "int8", "int8_full")
# Quantizations calibrated on training images.
CALIBRATED = ("int8", "int8_full")
OUTPUTS = ("labels", "probabilities")
# Tensor types of an integer op: 8-bit activations and weights, int32 biases,
# shapes, axes and ArgMax's labels.
INTEGER_TYPES = ("INT8", "UINT8", "INT32")



def check_options(quantization: str, output: str):
  """Refuses a quantization not in ``QUANTIZATIONS`` or an output not in
  ``OUTPUTS`` (a ValueError naming the value)."""
  if quantization not in QUANTIZATIONS:
    raise ValueError(f"TFLite quantization must be one of {', '.join(QUANTIZATIONS)}, "
                     f"got {quantization!r}")
  if output not in OUTPUTS:
    raise ValueError(f"TFLite output must be labels or probabilities, got {output!r}")


def export_tflite(model, path: str, height: int, width: int,
                  quantization: str = "float32",
                  representative_images: Optional[Iterable[np.ndarray]] = None,
                  output: str = "labels") -> int:
  """Writes a TFLite model of fixed input size; returns its size in bytes.

  Args:
    model: a ``DeepLab``.
    path: output file.
    height: input height (pixels).
    width: input width (pixels).
    quantization: one of ``QUANTIZATIONS`` (the module docstring): 'float32',
      'float16' (weights), 'int8' (weights and activations calibrated on
      ``representative_images``; ops without an int8 kernel stay float), or
      'int8_full' (integer ops only, uint8 input).
    representative_images: uint8 or float RGB images [h, w, 3] of the
      target size, for 'int8' and 'int8_full'.
    output: 'labels' (int32 [1, h, w], the argmax in the graph) or
      'probabilities' ([1, h, w, classes]: float32, uint8 for 'int8_full').

  Raises:
    ValueError: an unknown quantization or output, calibration images
      missing, or (int8_full) an op without an integer kernel.
  """
  check_options(quantization, output)
  model = folding.inference_model(model)

  @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32,
                                              name="image")])
  def predict(image):
    logits = model(augment.normalize(image), training=False)
    if output == "probabilities":
      return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32))}
    return {"labels": tf.argmax(logits, -1, output_type=tf.int32)}

  # Freeze the weights into constants first: given Keras 3's variables, the
  # converter otherwise keeps them as TFLite resource variables (READ_VARIABLE
  # ops), which quantization cannot touch.
  frozen = convert_to_constants.convert_variables_to_constants_v2(
      predict.get_concrete_function())
  converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
  data = _convert(converter, quantization, representative_images, output)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(data)
  return len(data)


def _convert(converter, quantization, representative_images, output) -> bytes:
  if quantization == "float16":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif quantization in CALIBRATED:
    if representative_images is None:
      raise ValueError(f"{quantization} quantization needs representative_images")
    images = list(representative_images)

    def representative():
      for image in images:
        yield [np.asarray(image, np.float32)[None]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
  if quantization == "int8_full":
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    if output == "probabilities":
      converter.inference_output_type = tf.uint8
  data = converter.convert()
  if quantization == "int8_full":
    others = [op for op in tflite_model.op_table(data) if not is_integer_op(op)]
    if others:
      raise ValueError(f"int8_full: ops that are not integer: {others}")
  return data


def is_integer_op(op: Tuple[str, Tuple[str, ...], Tuple[str, ...]]) -> bool:
  """Whether a ``tflite_model.op_table`` row is a builtin op on
  ``INTEGER_TYPES`` only."""
  name, inputs, outputs = op
  return name != "CUSTOM" and set(inputs + outputs) <= set(INTEGER_TYPES)


def calibration_pattern(config) -> str:
  """``config.data.train_pattern``, which int8 calibration reads.

  Raises:
    ValueError / FileNotFoundError: it is empty or matches no file (the
      message names the field).
  """
  pattern = config.data.train_pattern
  if not pattern:
    raise ValueError(
        "int8 quantization calibrates on training images: set "
        "--config.data.train_pattern (it is empty in this run's config)")
  pipeline.list_files(pattern, "config.data.train_pattern")
  return pattern


def representative_images(config, height: int, width: int, count: int):
  """Up to ``count`` training images (never validation ones: calibrating on
  them would leak them into the model) resized to the TFLite input.

  Raises:
    ValueError / FileNotFoundError: ``config.data.train_pattern`` is empty
      or matches no file (the message names the field).
  """
  pattern = calibration_pattern(config)
  dataset = pipeline.eval_dataset(
      config, pattern=pattern,
      pattern_field="config.data.train_pattern").take(count)
  bar = progress.Progress(min(count, pipeline.count_records(pattern)),
                          "calibrate", unit="images")
  for batch in dataset:
    image = (batch["image"][0] + 1.0) * 127.5
    yield tf.image.resize(image, (height, width)).numpy().astype(np.float32)
    bar.update()
