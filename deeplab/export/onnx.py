"""ONNX export through tf2onnx (the ``onnx`` extra: ``pip install
'deeplab-tf2[onnx]'``).

The file computes what the SavedModel's ``serving_default`` computes
(``deeplab.inference.predict_labels``: resize to range, padding to the
evaluation crop with the mean pixel, scales and flip, labels and
probabilities back at the input size), with batch norm folded:

- input ``images``: uint8 [batch, height, width, 3], RGB, any batch,
  height and width;
- outputs ``labels``: int32 [batch, height, width] and ``probabilities``:
  float32 [batch, height, width, classes].

The whole graph converts to standard ONNX operators (opset ``OPSET``),
traced inside ``deeplab.kernels.converted_graph``: atrous convolutions
come out as ``Conv`` with ``dilations``, the image pooling's 1x1 map is
broadcast (``Expand``), the softmax is the reductions and elementwise ops
it is made of; aligned-corner resizes are ``Resize`` with
``coordinate_transformation_mode="align_corners"``, the padding a ``Pad``
of a size computed in the graph. Two things of the SavedModel are the
caller's: gray or RGBA images (convert them to RGB) and the request limit
(``config.export.max_request_pixels``; ONNX Runtime runs what it is given).
The model's dataset facts (the SavedModel's ``metadata``) are in the
file's metadata under ``METADATA_KEY`` as JSON.

``quantization="int8"`` writes the same graph with its convolutions in
8 bits (``quantize_int8``): ONNX Runtime's static quantization in the QDQ
form, uint8 activations with ranges calibrated on training images and
int8 weights per output channel, which ONNX Runtime and OpenVINO run as
integer convolutions (VNNI where the CPU has it). The ReLUs, residual adds
and concatenations between convolutions are 8-bit too (``INT8_OPS``); the
input normalization, resizes, softmax and argmax stay float32.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

from deeplab import folding
from deeplab import inference
from deeplab import kernels
from deeplab.data import dataset_table
from deeplab.export import savedmodel

# tf2onnx's default target; ONNX Runtime 1.17 and later run it.
OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAMES = ("labels", "probabilities")
METADATA_KEY = "deeplab"
QUANTIZATIONS = ("float32", "int8")
# The ops quantize_int8 makes 8-bit: the convolutions, which carry nearly
# all of the FLOPs, and the ops between them, so that the activations stay
# 8-bit from one convolution to the next and a ReLU's range is the
# convolution's. On a CamVid MobileNetV2 (docs/export.md) convolutions alone
# kept 95.1% of the float labels; with Relu, Clip, Add and Concat 98.1%, in
# two thirds of the time of convolutions alone and a third of float32's
# (percentile calibration: 98.3%, at four times the calibration time;
# leaving the first and last convolutions in float: 98.2%, and most of the
# speed lost).
INT8_OPS = ("Conv", "Relu", "Clip", "Add", "Concat")


def tf2onnx_module():
  """tf2onnx, or an ImportError saying how to install it."""
  try:
    import tf2onnx  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError("ONNX export needs tf2onnx: pip install "
                      "'deeplab-tf2[onnx]'") from error
  return tf2onnx


def check_tiles(tile_size: int):
  """Refuses a run's tiles (``config.eval.tile_size`` > 0): the ONNX file
  predicts whole images.

  Raises:
    ValueError: tile_size is not 0 (the message names the field and value).
  """
  if tile_size:
    raise ValueError(
        f"config.eval.tile_size={tile_size}: the ONNX file predicts whole images "
        "(a caller tiles large ones); export it with --config.eval.tile_size=0")


def check_quantization(quantization: str):
  """Refuses an unknown ONNX quantization; for int8, checks that ONNX
  Runtime's quantizer imports.

  Raises:
    ValueError: naming the value and the choices.
    ImportError: int8 without onnxruntime (the ``onnx`` extra).
  """
  if quantization not in QUANTIZATIONS:
    raise ValueError(f"--onnx_quantization={quantization!r} is not one of "
                     f"{', '.join(QUANTIZATIONS)}")
  if quantization == "int8":
    _quantizer()


def _quantizer():
  """``onnxruntime.quantization``, or an ImportError saying how to install it."""
  try:
    from onnxruntime import quantization  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError("ONNX int8 quantization needs onnxruntime: pip install "
                      "'deeplab-tf2[onnx]'") from error
  return quantization


def quantize_int8(source: str, target: str, images: Iterable[np.ndarray]) -> None:
  """Writes ``target``: the float ONNX file ``source`` with its ``INT8_OPS``
  quantized (QDQ form: uint8 activations, int8 weights per channel, ranges
  from running ``images``, uint8 [height, width, 3] training images).

  Raises:
    ImportError: ONNX Runtime (the ``onnx`` extra) is not installed.
    ValueError: no calibration image.
  """
  ort_quantization = _quantizer()
  batches = [{INPUT_NAME: np.asarray(image, np.uint8)[None]} for image in images]
  if not batches:
    raise ValueError("ONNX int8 quantization calibrates on training images: "
                     "calibration= holds none")

  class Reader(ort_quantization.CalibrationDataReader):

    def __init__(self):
      self._batches = iter(batches)

    def get_next(self):
      return next(self._batches, None)

  with tempfile.TemporaryDirectory() as tmp:
    prepared = os.path.join(tmp, "prepared.onnx")
    # ONNX shape inference and ONNX Runtime's graph optimizations first, so
    # that the quantizer sees the fused convolutions it will run (symbolic
    # shape inference would need sympy, and the convolutions' shapes do not
    # need it).
    ort_quantization.shape_inference.quant_pre_process(
        source, prepared, skip_symbolic_shape=True)
    ort_quantization.quantize_static(
        prepared, target, Reader(), quant_format=ort_quantization.QuantFormat.QDQ,
        op_types_to_quantize=list(INT8_OPS), per_channel=True,
        activation_type=ort_quantization.QuantType.QUInt8,
        weight_type=ort_quantization.QuantType.QInt8)


def export_onnx(model, path: str, info: Optional[dataset_table.DatasetInfo] = None,
                scales: Sequence[float] = (1.0,), flip: bool = False,
                output_stride: Optional[int] = None,
                crop_size: Optional[Sequence[int]] = None,
                resize_range: Sequence[float] = (0, 0, 0),
                checkpoint: Optional[dict] = None, opset: int = OPSET,
                quantization: str = "float32",
                calibration: Optional[Sequence[np.ndarray]] = None) -> int:
  """Writes the inference model as an ONNX file; returns its size in bytes.

  Args:
    model: a ``DeepLab`` with trained weights.
    path: the output file.
    info: the dataset the model was trained on, written into the file's
      metadata (``METADATA_KEY``); None writes none.
    scales: eval scales computed in the graph.
    flip: also average the flipped input.
    output_stride: run at another output stride than trained.
    crop_size: (height, width) images are padded to (the evaluation crop
      size); None pads to the output stride's alignment only.
    resize_range: (min, max, factor) images are first resized to; zeros:
      none.
    checkpoint: the checkpoint the weights come from (``{"path", "step",
      "selector"}``), recorded in the metadata; None: not from a run.
    opset: the ONNX opset.
    quantization: ``float32``, or ``int8`` (``quantize_int8``).
    calibration: with int8, uint8 [height, width, 3] training images.

  Returns:
    The file's size in bytes.

  Example:
    >>> model = deeplab.from_pretrained("mobilenetv2_coco_voc_trainaug")
    >>> export_onnx(model, "model.onnx", crop_size=(513, 513))
  """
  check_quantization(quantization)
  if quantization == "int8" and (calibration is None or len(calibration) == 0):
    raise ValueError("ONNX int8 quantization calibrates on training images: "
                     "give calibration= (uint8 [height, width, 3] images)")
  tf2onnx = tf2onnx_module()
  output_stride = output_stride or model.args.output_stride
  model = folding.inference_model(inference.with_output_stride(model, output_stride))
  scales, crop_size = tuple(scales), tuple(crop_size) if crop_size else None

  @tf.function(input_signature=[
      tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)])
  def predict(images):
    labels, probabilities = inference.predict_labels(
        model, images, scales, flip, crop_size, resize_range)
    return dict(zip(OUTPUT_NAMES, (labels, probabilities)))

  with kernels.converted_graph():
    proto, _ = tf2onnx.convert.from_function(
        predict, input_signature=predict.input_signature, opset=opset)
  if quantization == "int8":
    import onnx  # pylint: disable=g-import-not-at-top
    with tempfile.TemporaryDirectory() as tmp:
      source, target = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
      with open(source, "wb") as f:
        f.write(proto.SerializeToString())
      quantize_int8(source, target, calibration)
      proto = onnx.load(target)
  if info is not None:
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(savedmodel.metadata(
        info, output_stride, scales, flip, crop_size, resize_range, checkpoint,
        precision=quantization))
  data = proto.SerializeToString()
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(data)
  return len(data)
