"""SavedModel (TF Serving) and TFLite export.

SavedModel signatures (any batch, height and width):
- ``serving_default``: ``images`` uint8 [b, h, w, c] -> ``labels`` int32
  [b, h, w], ``probabilities`` float32 [b, h, w, classes]. c may be 3 (RGB),
  1 (gray, replicated) or 4 (RGBA, alpha dropped); any other channel count
  or an empty image is an InvalidArgument error of the request, never a
  crash of the server.
- ``serve_encoded``: ``encoded`` string [b] of JPEG/PNG bytes (what REST
  clients send as base64) of one common size -> the same outputs.
- ``legacy`` (with ``legacy_names=True``): ``ImageTensor`` uint8 [1, h, w, 3]
  -> ``SemanticPredictions`` int32 [1, h, w], the names of the original's
  frozen inference graph.
Every signature pads images as evaluation does (``deeplab.evaluation``: up
to the evaluation crop size with the mean pixel, as the original's export
does), then slices the prediction back to the image.
A request holding more than ``max_request_pixels`` pixels (batch x height x
width, ``config.export.max_request_pixels``) is an InvalidArgument error
naming the limit, before any of its activations are allocated: one huge
request cannot take the server's memory. Encoded JPEG/PNG images are
measured from their headers, before decoding.
The model's dataset facts are kept in ``metadata`` (JSON: dataset, class
names, colormap, the pixel limit) for clients such as ``deeplab.predict``.

Frozen graph (``export_frozen_graph``): the original's
``frozen_inference_graph.pb``, a GraphDef with the weights as constants:
``ImageTensor:0`` uint8 [1, h, w, 3] -> ``SemanticPredictions:0`` int32
[1, h, w], for clients of the original's demo (``tf.compat.v1`` sessions,
``tf.import_graph_def``), with the same padding as the SavedModel.

TFLite: fixed input size, float32 RGB pixels [1, h, w, 3] in [0, 255] ->
int32 labels [1, h, w] (int64 breaks mobile runtimes), in float32, float16
or int8 (post-training quantization calibrated on real images).
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from deeplab import config as config_lib
from deeplab import evaluation
from deeplab import folding
from deeplab import model as model_lib
from deeplab import progress
from deeplab import run_dir
from deeplab.data import augment
from deeplab.data import pipeline
from deeplab.data import registry


def with_output_stride(model: model_lib.DeepLab, output_stride: int):
  """The same weights at another output stride (ASPP rates scaled along)."""
  args = model.args
  if output_stride == args.output_stride:
    return model
  factor = args.output_stride / output_stride
  rebuilt = model_lib.DeepLab(args.replace(
      output_stride=output_stride,
      atrous_rates=tuple(int(round(r * factor)) for r in args.atrous_rates)))
  rebuilt.set_weights(model.get_weights())
  return rebuilt


def to_rgb(images):
  """uint8 [b, h, w, c] with c in {1, 3, 4} -> [b, h, w, 3]; else an error."""
  channels = tf.shape(images)[-1]
  shape = tf.shape(images)
  checks = [
      tf.debugging.assert_positive(
          shape[1] * shape[2],
          message="images must have height > 0 and width > 0"),
      tf.debugging.Assert(
          tf.reduce_any(tf.equal(channels, [1, 3, 4])),
          ["images must have 1, 3 or 4 channels (gray, RGB, RGBA); got",
           channels]),
  ]
  with tf.control_dependencies(checks):
    return tf.case([(tf.equal(channels, 1), lambda: tf.tile(images, [1, 1, 1, 3])),
                    (tf.equal(channels, 4), lambda: images[..., :3])],
                   default=lambda: tf.identity(images))


def predict_labels(model, images, scales: Sequence[float] = (1.0,),
                   flip: bool = False,
                   crop_size: Optional[Sequence[int]] = None,
                   resize_range: Sequence[float] = (0, 0, 0),
                   output_stride: Optional[int] = None):
  """What every export computes: (labels int32 [b, h, w], probabilities
  float32 [b, h, w, c]) of RGB pixels [b, h, w, 3] in [0, 255].

  As the original's export: the images are first resized to range
  (``augment.resize_to_range``: the run's min/max resize value and resize
  factor, if set), then padded and predicted as evaluation does
  (``evaluation.predict_probabilities``); the labels come back to the
  input size by nearest neighbour (probabilities bilinearly), aligned
  corners.
  """
  images = tf.cast(images, tf.float32)
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  resized = bool(resize_range[0] or resize_range[1])
  if resized:
    size = augment.resize_to_range_size(height, width, *resize_range)
    images = tf.raw_ops.ResizeBilinear(images=images, size=size,
                                       align_corners=True)
  probabilities = evaluation.predict_probabilities(
      model, augment.normalize(images), scales, flip, output_stride,
      crop_size)
  labels = tf.argmax(probabilities, -1, output_type=tf.int32)
  if resized:
    labels = tf.raw_ops.ResizeNearestNeighbor(
        images=labels[..., None], size=tf.stack([height, width]),
        align_corners=True)[..., 0]
    probabilities = tf.raw_ops.ResizeBilinear(
        images=probabilities, size=tf.stack([height, width]),
        align_corners=True)
  return labels, probabilities


def check_request_pixels(pixels, limit: int):
  """An InvalidArgument error naming ``limit`` if ``pixels`` (int64, the
  request's batch x height x width) exceeds it; returns the check op."""
  return tf.debugging.assert_less_equal(
      tf.cast(pixels, tf.int64), tf.constant(limit, tf.int64),
      message=f"the request holds more pixels (batch x height x width) than "
      f"the limit of this model, {limit} (config.export.max_request_pixels); "
      "send smaller or fewer images. Pixels in the request, then the limit:")


def _big_endian(data, offset: int, size: int):
  digits = tf.cast(tf.io.decode_raw(tf.strings.substr(data, offset, size),
                                    tf.uint8), tf.int64)
  return tf.reduce_sum(digits * (256 ** tf.range(size - 1, -1, -1, tf.int64)))


def encoded_pixels(data):
  """height x width of a JPEG or PNG from its header (int64; nothing is
  decoded); 0 for other formats, which are measured after decoding."""
  png = tf.logical_and(tf.strings.length(data) >= 24, tf.equal(
      tf.strings.substr(data, 0, 8), b"\x89PNG\r\n\x1a\n"))
  return tf.case(
      [(tf.io.is_jpeg(data), lambda: tf.reduce_prod(
          tf.image.extract_jpeg_shape(data, output_type=tf.int64)[:2])),
       (png, lambda: _big_endian(data, 16, 4) * _big_endian(data, 20, 4))],
      default=lambda: tf.constant(0, tf.int64))


class ServingModule(tf.Module):
  """What the SavedModel holds: the model, its inference options, metadata."""

  def __init__(self, model, info: registry.DatasetInfo,
               scales: Sequence[float] = (1.0,), flip: bool = False,
               crop_size: Optional[Sequence[int]] = None,
               resize_range: Sequence[float] = (0, 0, 0),
               max_request_pixels: int = config_lib.MAX_REQUEST_PIXELS):
    super().__init__()
    # Track the plain tf.Variables under the Keras variables, not the Keras
    # model: a Keras 3 variable is exported as a second, unnamed copy that the
    # TF1 loader of TF Serving and saved_model_cli restores while the
    # signatures read the original, which then stays uninitialized.
    object.__setattr__(self, "model", model)
    self.model_variables = [v.value for v in model.variables]
    self.scales, self.flip = tuple(scales), flip
    self.crop_size = tuple(crop_size) if crop_size else None
    self.resize_range = tuple(resize_range)
    self.max_request_pixels = int(max_request_pixels)
    self.metadata = tf.Variable(json.dumps({
        "dataset": info.name, "num_classes": info.num_classes,
        "ignore_label": info.ignore_label,
        "class_names": list(info.class_names),
        "colormap": info.colormap.tolist(),
        "output_stride": model.args.output_stride, "scales": list(scales),
        "flip": flip, "crop_size": list(self.crop_size or ()),
        "resize_range": list(self.resize_range),
        "max_request_pixels": self.max_request_pixels}),
        trainable=False)

  def _predict(self, images):
    shape = tf.shape(images, out_type=tf.int64)
    with tf.control_dependencies([check_request_pixels(
        tf.reduce_prod(shape[:-1]), self.max_request_pixels)]):
      images = to_rgb(images)
    images.set_shape([None, None, None, 3])
    labels, probabilities = predict_labels(
        self.model, images, self.scales, self.flip, self.crop_size,
        self.resize_range)
    return {"labels": labels, "probabilities": probabilities}

  @tf.function(input_signature=[
      tf.TensorSpec([None, None, None, None], tf.uint8, name="images")])
  def serve(self, images):
    return self._predict(images)

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name="encoded")])
  def serve_encoded(self, encoded):
    def decode(data):
      image = tf.io.decode_image(data, channels=3, expand_animations=False)
      image.set_shape([None, None, 3])
      return image
    pixels = tf.reduce_sum(tf.map_fn(encoded_pixels, encoded,
                                     fn_output_signature=tf.int64))
    with tf.control_dependencies([check_request_pixels(
        pixels, self.max_request_pixels)]):
      images = tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec(
          [None, None, 3], tf.uint8))
    return self._predict(images)

  @tf.function(input_signature=[
      tf.TensorSpec([1, None, None, 3], tf.uint8, name="ImageTensor")])
  def legacy(self, image_tensor):
    return {"SemanticPredictions": self._predict(image_tensor)["labels"]}


def export_saved_model(model, info: registry.DatasetInfo, export_dir: str,
                       scales: Sequence[float] = (1.0,), flip: bool = False,
                       output_stride: Optional[int] = None,
                       legacy_names: bool = False,
                       crop_size: Optional[Sequence[int]] = None,
                       resize_range: Sequence[float] = (0, 0, 0),
                       max_request_pixels: int = config_lib.MAX_REQUEST_PIXELS
                       ) -> str:
  """Writes a SavedModel for TF Serving (signatures in the module docstring).

  Args:
    model: a ``DeepLab`` with trained weights.
    info: the dataset the model was trained on (metadata for clients).
    export_dir: the SavedModel folder (TF Serving wants ``.../<version>``).
    scales: eval scales baked into the graph.
    flip: also average flipped inputs.
    output_stride: run at another output stride than trained (e.g. 8).
    legacy_names: add the ``legacy`` signature.
    crop_size: (height, width) images are padded to (the evaluation crop
      size); None pads to the output stride's alignment only.
    resize_range: (min, max, factor) images are first resized to
      (``predict_labels``); zeros: none.
    max_request_pixels: the most pixels (batch x height x width) one
      request may hold; more is an InvalidArgument error naming the limit.
  """
  model = folding.inference_model(
      with_output_stride(model, output_stride or model.args.output_stride))
  module = ServingModule(model, info, scales, flip, crop_size, resize_range,
                         max_request_pixels)
  signatures = {"serving_default": module.serve.get_concrete_function(),
                "serve_encoded": module.serve_encoded.get_concrete_function()}
  if legacy_names:
    signatures["legacy"] = module.legacy.get_concrete_function()
  tf.saved_model.save(module, export_dir, signatures=signatures)
  return export_dir


FROZEN_GRAPH_NAME = "frozen_inference_graph.pb"
FROZEN_INPUT = "ImageTensor"
FROZEN_OUTPUT = "SemanticPredictions"


def export_frozen_graph(model, path: str, scales: Sequence[float] = (1.0,),
                        flip: bool = False,
                        crop_size: Optional[Sequence[int]] = None,
                        resize_range: Sequence[float] = (0, 0, 0)) -> int:
  """Writes the original's frozen inference graph; returns its size in bytes.

  Args:
    model: a ``DeepLab`` (at the output stride to export).
    path: the ``.pb`` file (the original names it ``frozen_inference_graph.pb``).
    scales: eval scales baked into the graph.
    flip: also average flipped inputs.
    crop_size: (height, width) images are padded to (the evaluation crop).
    resize_range: (min, max, factor) images are first resized to
      (``predict_labels``); zeros: none.

  Example (a client that knows nothing of this project)::

    graph_def = tf.compat.v1.GraphDef.FromString(open(path, "rb").read())
    with tf.Graph().as_default() as graph:
      tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
      labels = session.run("SemanticPredictions:0",
                           {"ImageTensor:0": image[None]})
  """
  model = folding.inference_model(model)
  crop_size = tuple(crop_size) if crop_size else None

  @tf.function(input_signature=[
      tf.TensorSpec([1, None, None, 3], tf.uint8, name=FROZEN_INPUT)])
  def predict(image):
    labels, _ = predict_labels(model, image, scales, flip, crop_size,
                               resize_range)
    return tf.identity(labels, name=FROZEN_OUTPUT)

  frozen = convert_to_constants.convert_variables_to_constants_v2(
      predict.get_concrete_function())
  graph_def = frozen.graph.as_graph_def()
  names = {node.name for node in graph_def.node}
  missing = {FROZEN_INPUT, FROZEN_OUTPUT} - names
  if missing:  # A tf.function renamed a node: a bug here, never user input.
    raise RuntimeError(f"frozen graph lacks the node(s) {sorted(missing)}")
  data = graph_def.SerializeToString()
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(data)
  return len(data)


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


def _calibration_pattern(config) -> str:
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
  pattern = _calibration_pattern(config)
  dataset = pipeline.eval_dataset(
      config, pattern=pattern,
      pattern_field="config.data.train_pattern").take(count)
  bar = progress.Progress(min(count, pipeline.count_records(pattern)),
                          "calibrate", unit="images")
  for batch in dataset:
    image = (batch["image"][0] + 1.0) * 127.5
    yield tf.image.resize(image, (height, width)).numpy().astype(np.float32)
    bar.update()


def export_run(config, workdir: str, export_dir: Optional[str] = None,
               tflite_path: Optional[str] = None,
               tflite_size: Optional[Sequence[int]] = None,
               quantization: str = "float32", representative_count: int = 32,
               output_stride: Optional[int] = None,
               legacy_names: bool = False, frozen_graph: bool = False) -> int:
  """Exports the latest checkpoint of a run: SavedModel, frozen graph and/or
  TFLite.

  Args:
    config: the run's config (``run_dir.read_config``, possibly changed:
      ``config.eval.scales``/``flip`` are baked into the SavedModel).
    workdir: the run folder.
    export_dir: SavedModel folder, or None.
    tflite_path: TFLite file, or None.
    tflite_size: TFLite input (height, width); default: the crop size.
    quantization: TFLite 'float32', 'float16' or 'int8' (calibrated on
      ``representative_count`` images of ``config.data.train_pattern``).
    representative_count: int8 calibration images.
    output_stride: export at another output stride than trained.
    legacy_names: add the SavedModel's ``legacy`` signature.
    frozen_graph: also write ``export_dir/frozen_inference_graph.pb``, the
      original's frozen graph (``export_frozen_graph``).

  Returns:
    The step of the exported checkpoint.

  Raises:
    ValueError: neither output given, a frozen graph without an export_dir,
      or int8 without training records (checked before anything is
      written).
  """
  if not export_dir and not tflite_path:
    raise ValueError("give an export_dir (--export_dir) and/or a tflite "
                     "path (--tflite)")
  if frozen_graph and not export_dir:
    raise ValueError("the frozen graph is written into the export_dir: give "
                     "--export_dir with --frozen_graph")
  if tflite_path and quantization == "int8":
    _calibration_pattern(config)
  model, step = run_dir.restore_model(config, workdir)
  output_stride = output_stride or model.args.output_stride
  if export_dir:
    export_saved_model(model, registry.from_config(config), export_dir,
                       tuple(config.eval.scales), config.eval.flip,
                       output_stride, legacy_names,
                       config_lib.eval_crop_size(config),
                       pipeline.resize_range(config),
                       config.export.max_request_pixels)
    logging.info("SavedModel of step %d written to %s", step, export_dir)
  if frozen_graph:
    path = os.path.join(export_dir, FROZEN_GRAPH_NAME)
    size = export_frozen_graph(
        with_output_stride(model, output_stride), path,
        tuple(config.eval.scales), config.eval.flip,
        config_lib.eval_crop_size(config), pipeline.resize_range(config))
    logging.info("Frozen graph of step %d written to %s: %d bytes", step,
                 path, size)
  if tflite_path:
    height, width = tuple(tflite_size or config.data.crop_size)
    images = None
    if quantization == "int8":
      images = representative_images(config, height, width,
                                     representative_count)
    size = export_tflite(with_output_stride(model, output_stride), tflite_path,
                         height, width, quantization, images)
    logging.info("TFLite (%s, %dx%d) of step %d written to %s: %d bytes",
                 quantization, height, width, step, tflite_path, size)
  return step
