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

The whole graph converts to standard ONNX operators (opset ``OPSET``):
atrous convolutions come out as ``SpaceToDepth``/``DepthToSpace`` around a
``Conv``, aligned-corner resizes as ``Resize`` with
``coordinate_transformation_mode="align_corners"``, the padding as ``Pad``
of a size computed in the graph. Two things of the SavedModel are the
caller's: gray or RGBA images (convert them to RGB) and the request limit
(``config.export.max_request_pixels``; ONNX Runtime runs what it is given).
The model's dataset facts (the SavedModel's ``metadata``) are in the
file's metadata under ``METADATA_KEY`` as JSON.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import tensorflow as tf

from deeplab import folding
from deeplab import inference
from deeplab.data import dataset_table
from deeplab.export import savedmodel

# tf2onnx's default target; ONNX Runtime 1.17 and later run it.
OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAMES = ("labels", "probabilities")
METADATA_KEY = "deeplab"


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


def export_onnx(model, path: str, info: Optional[dataset_table.DatasetInfo] = None,
                scales: Sequence[float] = (1.0,), flip: bool = False,
                output_stride: Optional[int] = None,
                crop_size: Optional[Sequence[int]] = None,
                resize_range: Sequence[float] = (0, 0, 0),
                checkpoint: Optional[dict] = None, opset: int = OPSET) -> int:
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

  Returns:
    The file's size in bytes.

  Example:
    >>> model = deeplab.from_pretrained("mobilenetv2_coco_voc_trainaug")
    >>> export_onnx(model, "model.onnx", crop_size=(513, 513))
  """
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

  proto, _ = tf2onnx.convert.from_function(
      predict, input_signature=predict.input_signature, opset=opset)
  if info is not None:
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(savedmodel.metadata(
        info, output_stride, scales, flip, crop_size, resize_range, checkpoint))
  data = proto.SerializeToString()
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(data)
  return len(data)
