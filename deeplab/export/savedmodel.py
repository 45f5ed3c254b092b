"""SavedModel export for TF Serving.

Signatures (any batch, height and width):
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
Every signature predicts as evaluation does (``deeplab.inference``: padded
up to the evaluation crop size with the mean pixel, as the original's
export does), then slices the prediction back to the image.
A request holding more than ``max_request_pixels`` pixels (batch x height x
width, ``config.export.max_request_pixels``) is an InvalidArgument error
naming the limit, before any of its activations are allocated: one huge
request cannot take the server's memory. Encoded JPEG/PNG images are
measured from their headers, before decoding.
Exported with tiles (``tile_size`` > 0, ``config.eval.tile_size``), an
image larger than the tile is predicted in overlapping tiles, and the
signatures output ``labels`` only (``SemanticPredictions`` for ``legacy``),
predicted one row of tiles at a time (``deeplab.inference.tiled_labels``):
memory is the image, its labels, one band of probabilities and one tile's
activations. ``tile_probabilities=True`` adds the ``probabilities`` output,
for which the float32 probabilities of the whole image are kept
(``deeplab.inference.tiled_probabilities``; pixels x classes x 4 bytes).
``max_request_pixels`` then bounds one tile of the request (batch x
min(tile, height) x min(tile, width)), and ``max_image_pixels``
(``config.export.max_image_pixels``) bounds the whole request (batch x
height x width), whose input and outputs grow with it; either check
failing is an InvalidArgument error naming its limit. Encoded images are
measured against the whole-image bound.
The model's dataset facts are kept in ``metadata`` (JSON: dataset, class
names, colormap, the pixel limit, and the run's checkpoint it was exported
from: path, step and selector) for clients such as ``deeplab.predict``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import folding
from deeplab import inference
from deeplab.data import dataset_table


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


# What each pixel check measures and bounds, for its message.
_REQUEST = ("the request holds more pixels (batch x height x width) than the "
            "limit of this model, {limit} (config.export.max_request_pixels); "
            "send smaller or fewer images. Pixels in the request, then the limit:")
_IMAGE = ("the request holds more pixels (batch x height x width) than the "
          "whole-image bound of this model, {limit} (config.export.max_image_pixels; "
          "it predicts in tiles, but the whole image and its outputs are kept); "
          "send smaller or fewer images. Pixels in the request, then the bound:")
_TILE = ("a tile of the request holds more pixels (batch x min(tile, height) x "
         "min(tile, width)) than the limit of this model, {limit} "
         "(config.export.max_request_pixels); send fewer images. Pixels in a "
         "tile, then the limit:")


def check_pixels(pixels, limit: int, message: str):
  """An InvalidArgument error, ``message`` with ``{limit}`` filled in, if
  ``pixels`` (int64) exceeds ``limit``; returns the check op."""
  return tf.debugging.assert_less_equal(
      tf.cast(pixels, tf.int64), tf.constant(limit, tf.int64),
      message=message.format(limit=limit))


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


def metadata(info: dataset_table.DatasetInfo, output_stride: int,
             scales: Sequence[float], flip: bool,
             crop_size: Optional[Sequence[int]], resize_range: Sequence[float],
             checkpoint: Optional[dict], precision: str = "float32") -> Dict[str, Any]:
  """The model's dataset facts and inference options, as every exported
  file records them (the SavedModel's ``metadata``, the ONNX file's
  ``METADATA_KEY``): dataset, class count, ignore label, class names,
  colormap, output stride, scales, flip, crop size, resize range, the
  checkpoint (``{"path", "step", "selector"}`` or None) and the precision
  the file computes in (``float32``; ``mixed_bfloat16`` for a SavedModel
  of that dtype policy; ``int8`` for an ONNX file of 8-bit convolutions)."""
  return {
      "dataset": info.name, "num_classes": info.num_classes,
      "ignore_label": info.ignore_label, "class_names": list(info.class_names),
      "colormap": info.colormap.tolist(), "output_stride": output_stride,
      "scales": list(scales), "flip": flip, "crop_size": list(crop_size or ()),
      "resize_range": list(resize_range), "checkpoint": checkpoint,
      "precision": precision}


def metadata_info(meta: Dict[str, Any]) -> dataset_table.DatasetInfo:
  """The dataset of a ``metadata`` dict (read back from its JSON)."""
  return dataset_table.DatasetInfo(
      meta["dataset"], meta["num_classes"], meta["ignore_label"],
      tuple(meta["class_names"]), np.array(meta["colormap"], np.uint8), {})


class ServingModule(tf.Module):
  """What the SavedModel holds: the model, its inference options, metadata."""

  def __init__(self, model, info: dataset_table.DatasetInfo,
               scales: Sequence[float] = (1.0,), flip: bool = False,
               crop_size: Optional[Sequence[int]] = None,
               resize_range: Sequence[float] = (0, 0, 0),
               max_request_pixels: int = config_lib.MAX_REQUEST_PIXELS,
               tile_size: int = 0, tile_overlap: int = 0,
               max_image_pixels: int = config_lib.MAX_IMAGE_PIXELS,
               tile_probabilities: bool = False,
               checkpoint: Optional[dict] = None):
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
    self.tile_size, self.tile_overlap = int(tile_size), int(tile_overlap)
    self.max_image_pixels = int(max_image_pixels)
    # Without tiles the probabilities come with the labels at no extra cost.
    self.probabilities = bool(tile_probabilities or not self.tile_size)
    self.metadata = tf.Variable(json.dumps({
        **metadata(info, model.args.output_stride, self.scales, flip,
                   self.crop_size, self.resize_range, checkpoint,
                   precision=model.args.dtype_policy),
        "max_request_pixels": self.max_request_pixels,
        "tile_size": self.tile_size, "tile_overlap": self.tile_overlap,
        "max_image_pixels": self.max_image_pixels,
        "probabilities": self.probabilities}),
        trainable=False)

  def _check_request(self, pixels):
    """The bound on a whole request's pixels (batch x height x width): with
    tiles the whole-image bound, else the request limit."""
    if self.tile_size:
      return check_pixels(pixels, self.max_image_pixels, _IMAGE)
    return check_pixels(pixels, self.max_request_pixels, _REQUEST)

  def _pixel_checks(self, images):
    """The bound on the whole request (``_check_request``), and with tiles
    the request limit on one tile."""
    shape = tf.shape(images, out_type=tf.int64)
    checks = [self._check_request(tf.reduce_prod(shape[:-1]))]
    if self.tile_size:
      tile = tf.minimum(shape[1:3], self.tile_size)
      checks.append(check_pixels(shape[0] * tile[0] * tile[1],
                                 self.max_request_pixels, _TILE))
    return checks

  def _predict(self, images):
    with tf.control_dependencies(self._pixel_checks(images)):
      images = to_rgb(images)
    images.set_shape([None, None, None, 3])
    labels, probabilities = inference.predict_labels(
        self.model, images, self.scales, self.flip, self.crop_size,
        self.resize_range, tile_size=self.tile_size,
        tile_overlap=self.tile_overlap, probabilities=self.probabilities)
    if probabilities is None:
      return {"labels": labels}
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
    with tf.control_dependencies([self._check_request(pixels)]):
      images = tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec(
          [None, None, 3], tf.uint8))
    return self._predict(images)

  @tf.function(input_signature=[
      tf.TensorSpec([1, None, None, 3], tf.uint8, name="ImageTensor")])
  def legacy(self, image_tensor):
    return {"SemanticPredictions": self._predict(image_tensor)["labels"]}


def export_saved_model(model, info: dataset_table.DatasetInfo, export_dir: str,
                       scales: Sequence[float] = (1.0,), flip: bool = False,
                       output_stride: Optional[int] = None,
                       legacy_names: bool = False,
                       crop_size: Optional[Sequence[int]] = None,
                       resize_range: Sequence[float] = (0, 0, 0),
                       max_request_pixels: int = config_lib.MAX_REQUEST_PIXELS,
                       tile_size: int = 0, tile_overlap: int = 0,
                       max_image_pixels: int = config_lib.MAX_IMAGE_PIXELS,
                       tile_probabilities: bool = False,
                       checkpoint: Optional[dict] = None) -> str:
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
      (``inference.predict_labels``); zeros: none.
    max_request_pixels: the most pixels (batch x height x width) one
      request may hold, or with tiles one tile of it; more is an
      InvalidArgument error naming the limit.
    tile_size: predict images larger than this in overlapping square tiles
      of this side, one row of tiles at a time (``inference.tiled_labels``);
      0: whole images.
    tile_overlap: pixels neighbouring tiles share.
    max_image_pixels: with tiles, the most pixels (batch x height x width)
      one request may hold.
    tile_probabilities: with tiles, also output ``probabilities`` (the
      whole image's float32 probabilities are then kept,
      ``inference.tiled_probabilities``); without tiles they always are.
    checkpoint: the checkpoint the weights come from (``{"path", "step",
      "selector"}``), recorded in the metadata; None: not from a run.
  """
  model = folding.inference_model(inference.with_output_stride(
      model, output_stride or model.args.output_stride))
  module = ServingModule(model, info, scales, flip, crop_size, resize_range,
                         max_request_pixels, tile_size, tile_overlap,
                         max_image_pixels, tile_probabilities, checkpoint)
  signatures = {"serving_default": module.serve.get_concrete_function(),
                "serve_encoded": module.serve_encoded.get_concrete_function()}
  if legacy_names:
    signatures["legacy"] = module.legacy.get_concrete_function()
  tf.saved_model.save(module, export_dir, signatures=signatures)
  return export_dir
