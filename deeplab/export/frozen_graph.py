"""The original's frozen inference graph, ``frozen_inference_graph.pb``.

A GraphDef with the weights as constants: ``ImageTensor:0`` uint8
[1, h, w, 3] -> ``SemanticPredictions:0`` int32 [1, h, w], for clients of
the original's demo (``tf.compat.v1`` sessions, ``tf.import_graph_def``),
predicting as the SavedModel does (``deeplab.inference.predict_labels``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from deeplab import folding
from deeplab import inference

FROZEN_GRAPH_NAME = "frozen_inference_graph.pb"
FROZEN_INPUT = "ImageTensor"
FROZEN_OUTPUT = "SemanticPredictions"


def export_frozen_graph(model, path: str, scales: Sequence[float] = (1.0,),
                        flip: bool = False,
                        crop_size: Optional[Sequence[int]] = None,
                        resize_range: Sequence[float] = (0, 0, 0),
                        tile_size: int = 0, tile_overlap: int = 0) -> int:
  """Writes the original's frozen inference graph; returns its size in bytes.

  Args:
    model: a ``DeepLab`` (at the output stride to export).
    path: the ``.pb`` file (the original names it ``frozen_inference_graph.pb``).
    scales: eval scales baked into the graph.
    flip: also average flipped inputs.
    crop_size: (height, width) images are padded to (the evaluation crop).
    resize_range: (min, max, factor) images are first resized to
      (``inference.predict_labels``); zeros: none.
    tile_size, tile_overlap: tiles of images larger than ``tile_size``
      (``inference.tiled_probabilities``); 0: whole images.

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
    labels, _ = inference.predict_labels(model, image, scales, flip,
                                         crop_size, resize_range,
                                         tile_size=tile_size,
                                         tile_overlap=tile_overlap)
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
