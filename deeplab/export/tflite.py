"""TFLite export: fixed input size, float32 RGB pixels [1, h, w, 3] in
[0, 255] -> int32 labels [1, h, w] (int64 breaks mobile runtimes), in
float32, float16 or int8 (post-training quantization calibrated on real
training images, ``representative_images``).
"""

from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from deeplab import folding
from deeplab import progress
from deeplab.data import augment
from deeplab.data import pipeline


def export_tflite(model, path: str, height: int, width: int,
                  quantization: str = "float32",
                  representative_images: Optional[Iterable[np.ndarray]] = None) -> int:
  """Writes a TFLite model of fixed input size; returns its size in bytes.

  Args:
    model: a ``DeepLab``.
    path: output file.
    height: input height (pixels).
    width: input width (pixels).
    quantization: 'float32', 'float16' (weights), or 'int8' (weights and
      activations, calibrated on ``representative_images``; ops without an
      int8 kernel stay float).
    representative_images: uint8 or float RGB images [h, w, 3] of the
      target size, for 'int8'.
  """
  if quantization not in ("float32", "float16", "int8"):
    raise ValueError("quantization must be float32, float16 or int8, got "
                     f"{quantization!r}")
  model = folding.inference_model(model)

  @tf.function(input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32,
                                              name="image")])
  def predict(image):
    logits = model(augment.normalize(image), training=False)
    return {"labels": tf.argmax(logits, -1, output_type=tf.int32)}

  # Freeze the weights into constants first: given Keras 3's variables, the
  # converter otherwise keeps them as TFLite resource variables (READ_VARIABLE
  # ops), which quantization cannot touch.
  frozen = convert_to_constants.convert_variables_to_constants_v2(
      predict.get_concrete_function())
  converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
  data = _convert(converter, quantization, representative_images)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(data)
  return len(data)


def _convert(converter, quantization, representative_images) -> bytes:
  if quantization == "float16":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
  elif quantization == "int8":
    if representative_images is None:
      raise ValueError("int8 quantization needs representative_images")
    images = list(representative_images)

    def representative():
      for image in images:
        yield [np.asarray(image, np.float32)[None]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
  return converter.convert()


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
