"""Segments images and videos into id masks, colored masks and overlays, with
a run's checkpoint, an exported SavedModel, a ``.tflite`` or an ``.onnx`` file.

One interface, ``Predictor``: ``predictor.labels(images)`` takes uint8 RGB
images ``[b, h, w, 3]`` of one size and returns int32 labels ``[b, h, w]``;
``predictor.info`` is the dataset it labels for (class names, colormap).
``load_predictor`` opens any of the four model kinds;
``list_inputs`` names the images and videos; ``predict_files`` writes the
outputs; the tool is ``deeplab-predict`` (deeplab/cli/predict.py).

Batches (``batch_size``): images of the same size go into one batch (the
model's padding rules make a padded image's labels differ from its own, so
images are never padded to each other); an image of another size waits
for its own batch. Video frames, all of one size, are batched in order.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import os
from typing import Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from deeplab import folding
from deeplab import inference
from deeplab import progress
from deeplab import run_dir
from deeplab import video
from deeplab import visualize
from deeplab import weights
from deeplab.data import dataset_table
from deeplab.data import image_files
from deeplab.export import onnx as onnx_export
from deeplab.export import savedmodel


class Predictor(Protocol):
  """A model that labels images, whatever form it has."""

  info: dataset_table.DatasetInfo

  def labels(self, images: np.ndarray) -> np.ndarray:
    """int32 class ids [b, h, w] of uint8 RGB images [b, h, w, 3] of one size."""


@dataclasses.dataclass
class FunctionPredictor:
  """A predictor from a function of one batch (run folders, SavedModels).

  Attributes:
    info: the dataset labelled.
    function: uint8 [b, h, w, 3] -> int32 [b, h, w].
    max_pixels: most pixels (batch x height x width) one call may hold (a
      SavedModel's request limit; larger batches are split), or 0 for none.
  """
  info: dataset_table.DatasetInfo
  function: Callable[[np.ndarray], np.ndarray]
  max_pixels: int = 0

  def labels(self, images: np.ndarray) -> np.ndarray:
    step = len(images)
    if self.max_pixels:
      step = max(1, self.max_pixels // (images.shape[1] * images.shape[2]))
    return np.concatenate([self.function(images[i:i + step])
                           for i in range(0, len(images), step)])


def checkpoint_predictor(config, workdir: str, checkpoint: str = "latest"
                         ) -> FunctionPredictor:
  """Predicts with a checkpoint of a run (``latest``, ``best``, a step or a
  prefix: ``run_dir.resolve_checkpoint``), batch norm folded."""
  model, _ = run_dir.restore_model(config, workdir, checkpoint)
  model = folding.inference_model(model)
  options = inference.options_from_config(config)

  @tf.function(reduce_retracing=True)
  def labels(images):
    return inference.predict_labels(model, images, probabilities=False,
                                    **options)[0]

  return FunctionPredictor(dataset_table.from_config(config),
                           lambda images: labels(tf.constant(images)).numpy())


def saved_model_predictor(export_dir: str) -> FunctionPredictor:
  """Predicts with an exported SavedModel's ``serving_default``, within its
  request limit (``max_request_pixels`` of its metadata)."""
  loaded = tf.saved_model.load(export_dir)
  serve = loaded.signatures["serving_default"]
  meta = json.loads(loaded.metadata.numpy().decode())
  return FunctionPredictor(
      savedmodel.metadata_info(meta),
      lambda images: serve(images=tf.constant(images))["labels"].numpy(),
      int(meta.get("max_request_pixels", 0)))


def file_dataset_info(dataset: Optional[str], num_classes: Optional[int]
                      ) -> dataset_table.DatasetInfo:
  """The dataset of a model file that carries no class table (``.tflite``,
  ``.onnx``): the table's entry ``dataset``, else a generic one with the
  PASCAL colormap over ``num_classes`` ids (256 when unknown)."""
  if dataset:
    return dataset_table.get(dataset)
  return dataset_table.get("unnamed", num_classes=num_classes or 256)


def _resize_nearest(labels: np.ndarray, height: int, width: int) -> np.ndarray:
  if labels.shape[1:3] == (height, width):
    return labels
  return tf.image.resize(labels[..., None], (height, width), "nearest")[..., 0].numpy()


def _to_labels(output: np.ndarray) -> np.ndarray:
  """int32 labels [b, h, w] of a labels output ([b, h, w] or [b, h, w, 1]) or
  of per-class scores [b, h, w, c] (probabilities or logits, any type:
  their argmax, which quantization's positive scale keeps)."""
  if output.ndim == 4 and output.shape[-1] > 1:
    return np.argmax(output, -1).astype(np.int32)
  return output.reshape(output.shape[:3]).astype(np.int32)


class TFLitePredictor:
  """Predicts with a ``.tflite`` file (ai-edge-litert).

  Its input size is fixed: each image is resized (bilinearly, aspect ratio
  not kept) to it and the labels back to the image by nearest neighbour;
  that is predict's job, the file knows nothing of it. The input is read
  from the file: float32 takes RGB pixels in [0, 255] (``deeplab-export
  --tflite`` files normalize inside). An integer input (uint8, int8) is
  quantized with the file's scale and zero point, ``round(x / scale) +
  zero_point`` clipped to its type, where x is the pixel in [0, 255] when
  the input's real range reaches past 2 (``deeplab-export
  --quantization=int8_full``), else the normalized pixel in [-1, 1] (the
  released quantized files); without a scale, uint8 takes the pixels as
  they are, int8 the pixels shifted by -128. The output is the file's labels
  (an integer ``[1, h, w]`` tensor, ``ArgMax``) or the argmax of its
  per-class scores ``[1, h, w, c]``. Images run one at a time (the file's
  batch).
  """

  def __init__(self, path: str, dataset: Optional[str] = None,
               num_threads: Optional[int] = None):
    self.interpreter = weights.tflite_interpreter(path, num_threads=num_threads)
    self.interpreter.allocate_tensors()
    self.input = self.interpreter.get_input_details()[0]
    outputs = self.interpreter.get_output_details()
    labels = [d for d in outputs if len(d["shape"]) == 3
              and np.issubdtype(d["dtype"], np.integer)]
    self.output = (labels or outputs)[0]
    shape = self.output["shape"]
    self.info = file_dataset_info(
        dataset, int(shape[-1]) if len(shape) == 4 and shape[-1] > 1 else None)
    self.height, self.width = (int(v) for v in self.input["shape"][1:3])

  def _input(self, image: np.ndarray) -> np.ndarray:
    resized = tf.image.resize(image, (self.height, self.width)).numpy()
    dtype = self.input["dtype"]
    if not np.issubdtype(dtype, np.integer):
      return resized.astype(dtype)[None]
    limits = np.iinfo(dtype)
    scale, zero_point = self.input["quantization"]
    if not scale:
      values = resized + limits.min
    elif scale * (limits.max - zero_point) > 2:  # Takes pixels in [0, 255].
      values = resized / scale + zero_point
    else:  # Takes the normalized image in [-1, 1].
      values = (resized / 127.5 - 1.0) / scale + zero_point
    return np.clip(np.round(values), limits.min, limits.max).astype(dtype)[None]

  def labels(self, images: np.ndarray) -> np.ndarray:
    out = []
    for image in images:
      self.interpreter.set_tensor(self.input["index"], self._input(image))
      self.interpreter.invoke()
      out.append(_to_labels(self.interpreter.get_tensor(self.output["index"]))[0])
    return _resize_nearest(np.stack(out), *images.shape[1:3])


class OnnxPredictor:
  """Predicts with an ``.onnx`` file (onnxruntime) of ``deeplab-export
  --onnx``: uint8 images [b, h, w, 3] of any size in, int32 labels
  [b, h, w] (and float probabilities) out. Its dataset is ``dataset``
  when given, else the file's metadata (``onnx.METADATA_KEY``, written by
  ``deeplab-export --onnx``), else a generic one (``file_dataset_info``).
  """

  def __init__(self, path: str, dataset: Optional[str] = None):
    try:
      import onnxruntime  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError("running an .onnx file needs onnxruntime: "
                        "pip install onnxruntime") from e
    self.session = onnxruntime.InferenceSession(
        image_files.read_bytes(path), providers=["CPUExecutionProvider"])
    self.input = self.session.get_inputs()[0].name
    outputs = self.session.get_outputs()
    labels = [o for o in outputs if o.type == "tensor(int32)"]
    self.output = (labels or outputs)[0].name
    self.info = None if dataset else self._metadata_info()
    if self.info is None:
      shape = (labels or outputs)[0].shape
      classes = shape[-1] if len(shape) == 4 and isinstance(shape[-1], int) else None
      self.info = file_dataset_info(dataset, None if labels else classes)

  def _metadata_info(self) -> Optional[dataset_table.DatasetInfo]:
    value = self.session.get_modelmeta().custom_metadata_map.get(onnx_export.METADATA_KEY)
    return savedmodel.metadata_info(json.loads(value)) if value else None

  def labels(self, images: np.ndarray) -> np.ndarray:
    output = self.session.run([self.output], {self.input: images})[0]
    return _resize_nearest(_to_labels(output), *images.shape[1:3])


def _require_file(path: str, flag: str):
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{flag}={path}: no such file or folder")


def load_predictor(workdir: Optional[str] = None, saved_model: Optional[str] = None,
                   tflite: Optional[str] = None, onnx: Optional[str] = None,
                   config=None, dataset: Optional[str] = None,
                   checkpoint: str = "latest") -> Predictor:
  """The predictor of exactly one model: a run folder (with its ``config``),
  a SavedModel folder, a ``.tflite`` or an ``.onnx`` file.

  Args:
    workdir: a training run folder.
    saved_model: a SavedModel folder of ``deeplab-export``.
    tflite: a ``.tflite`` file.
    onnx: an ``.onnx`` file.
    config: the run's config (with ``workdir``).
    dataset: a dataset of the table, whose classes and colors a ``.tflite``
      or ``.onnx`` file's ids are (they carry none of their own).
    checkpoint: with ``workdir``, which checkpoint (``checkpoint_predictor``).

  Raises:
    ValueError: not exactly one model given.
    FileNotFoundError: the model's file or folder is missing (named).
    ImportError: the runtime of a ``.tflite`` or ``.onnx`` file is absent.
  """
  given = {k: v for k, v in (("--workdir", workdir), ("--saved_model", saved_model),
                             ("--tflite", tflite), ("--onnx", onnx)) if v}
  if len(given) != 1:
    raise ValueError("give one model: --workdir, --saved_model, --tflite or "
                     f"--onnx, got {sorted(given) or 'none'}")
  (flag, path), = given.items()
  _require_file(path, flag)
  if workdir:
    return checkpoint_predictor(config, workdir, checkpoint)
  if saved_model:
    return saved_model_predictor(saved_model)
  if tflite:
    return TFLitePredictor(tflite, dataset)
  return OnnxPredictor(onnx, dataset)


def list_inputs(spec: str) -> List[str]:
  """Images and videos named by a file, a folder, a glob, or a comma
  separated list of those; sorted within each, in the list's order.

  Raises:
    FileNotFoundError: an entry names nothing (the entry is named).
  """
  parts = [spec] if tf.io.gfile.exists(spec) else [p for p in spec.split(",") if p]
  paths = []
  for part in parts:
    found = image_files.list_images(
        part, image_files.IMAGE_EXTENSIONS + video.VIDEO_EXTENSIONS)
    if not found:
      raise FileNotFoundError(f"--input={part!r} names no image or video files")
    paths += found
  return paths


def write_png(array: np.ndarray, path: str):
  """Writes a uint8 array as PNG on any filesystem TensorFlow writes."""
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  with tf.io.gfile.GFile(path, "wb") as f:  # gs:// too.
    f.write(buffer.getvalue())


class _Batcher:
  """Collects images by size and labels each size's batch when full (or on
  ``flush``), handing (key, image, labels) to ``done`` in batch order.

  At most ``4 * batch_size`` images wait: past that every waiting batch is
  labelled, so memory stays bounded on folders of many sizes.
  """

  def __init__(self, predictor: Predictor, batch_size: int, done: Callable):
    self.predictor, self.batch_size, self.done = predictor, batch_size, done
    self.waiting: Dict[Tuple[int, ...], List] = collections.OrderedDict()

  def add(self, key, image: np.ndarray):
    batch = self.waiting.setdefault(image.shape, [])
    batch.append((key, image))
    if len(batch) >= self.batch_size:
      self._run(image.shape)
    elif sum(len(b) for b in self.waiting.values()) >= 4 * self.batch_size:
      self.flush()

  def _run(self, shape):
    batch = self.waiting.pop(shape)
    labels = self.predictor.labels(np.stack([image for _, image in batch]))
    for (key, image), ids in zip(batch, labels):
      self.done(key, image, ids)

  def flush(self):
    for shape in list(self.waiting):
      self._run(shape)


def _outputs(ids: np.ndarray, image: np.ndarray, info):
  colored = visualize.colorize(ids, info.colormap, info.ignore_label)
  return colored, visualize.overlay(image, colored)


def _stem(output_dir: str, path: str) -> str:
  return os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])


def _predict_video(path: str, predictor: Predictor, output_dir: str,
                   batch_size: int, frame_ids: bool, bar: progress.Progress):
  stem = _stem(output_dir, path)
  if frame_ids:
    tf.io.gfile.makedirs(stem + "_frames")
  with video.Frames(path) as frames, video.OverlayWriter(
      stem + "_overlay.mp4", frames.rate) as writer:

    def done(index, image, ids):
      writer.write(_outputs(ids, image, predictor.info)[1])
      if frame_ids:
        write_png(ids.astype(np.uint8), os.path.join(stem + "_frames", f"{index:06d}_ids.png"))
      bar.update()

    batcher = _Batcher(predictor, batch_size, done)
    for index, frame in enumerate(frames):
      batcher.add(index, frame)
    batcher.flush()


def predict_files(paths: Sequence[str], predictor: Predictor, output_dir: str,
                  batch_size: int = 1, frame_ids: bool = False) -> List[str]:
  """Writes the outputs of every image and video; returns the problems met.

  An image ``x`` gives ``x_ids.png`` (class ids), ``x_color.png`` (the
  dataset's colormap) and ``x_overlay.png``; a video ``v`` gives
  ``v_overlay.mp4`` (every frame overlaid, the same frame rate) and, with
  ``frame_ids``, ``v_frames/000000_ids.png``...

  Args:
    paths: images and videos (``list_inputs``).
    predictor: the model (``load_predictor``).
    output_dir: where the outputs go (created).
    batch_size: images (of one size) or frames per call of the model.
    frame_ids: also write each video frame's id PNG.

  Returns:
    One line per input that could not be read (``path: unreadable ...``);
    the others are written all the same.

  Raises:
    ValueError: ``batch_size`` below 1.
    ImportError: a video without PyAV (the ``video`` extra).
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  videos = [p for p in paths if video.is_video(p)]
  if videos:
    video.require()
  tf.io.gfile.makedirs(output_dir)
  counts = [video.frame_count(p) for p in videos]
  total = None if None in counts else len(paths) - len(videos) + sum(counts)
  bar = progress.Progress(total, "predict", unit="images")
  problems = []

  def done(path, image, ids):
    colored, overlay = _outputs(ids, image, predictor.info)
    stem = _stem(output_dir, path)
    write_png(ids.astype(np.uint8), stem + "_ids.png")
    write_png(colored, stem + "_color.png")
    write_png(overlay, stem + "_overlay.png")
    bar.update()

  batcher = _Batcher(predictor, batch_size, done)
  for path in paths:
    if video.is_video(path):
      try:
        _predict_video(path, predictor, output_dir, batch_size, frame_ids, bar)
      except video.VideoError as e:
        problems.append(f"{path}: unreadable video ({e})")
      continue
    try:
      image = image_files.read_rgb(path)
    except Exception as e:  # PIL raises many types for broken files.
      problems.append(f"{path}: unreadable image ({e})")
      bar.update()
      continue
    batcher.add(path, image)
  batcher.flush()
  return problems
