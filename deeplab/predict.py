"""Segments images into id masks, colored masks and overlays, with a run's
latest checkpoint or an exported SavedModel.

``list_inputs`` names the images, ``checkpoint_predictor`` or
``saved_model_predictor`` predicts, ``predict_files`` writes the outputs;
the tool is ``deeplab-predict`` (deeplab/cli/predict.py).
"""

from __future__ import annotations

import io
import json
import os
from typing import Callable, List, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from deeplab import folding
from deeplab import inference
from deeplab import progress
from deeplab import run_dir
from deeplab import visualize
from deeplab.data import dataset_table
from deeplab.data import image_files

Predictor = Callable[[np.ndarray], np.ndarray]


def list_inputs(spec: str) -> List[str]:
  """Image files named by a file, a folder or a glob, sorted."""
  paths = image_files.list_images(spec)
  if not paths:
    raise FileNotFoundError(f"--input={spec!r} names no image files")
  return paths


def checkpoint_predictor(config, workdir: str, checkpoint: str = "latest"
                         ) -> Tuple[Predictor, dataset_table.DatasetInfo]:
  """Predicts with a checkpoint of a run (``latest``, ``best``, a step or a
  prefix: ``run_dir.resolve_checkpoint``), batch norm folded."""
  model, _ = run_dir.restore_model(config, workdir, checkpoint)
  model = folding.inference_model(model)
  options = inference.options_from_config(config)

  @tf.function(reduce_retracing=True)
  def labels(image):
    return inference.predict_labels(model, image[None], **options)[0][0]

  return (lambda image: labels(tf.constant(image)).numpy(),
          dataset_table.from_config(config))


def saved_model_predictor(export_dir: str) -> Tuple[Predictor, dataset_table.DatasetInfo]:
  """Predicts with an exported SavedModel's ``serving_default``."""
  loaded = tf.saved_model.load(export_dir)
  serve = loaded.signatures["serving_default"]
  meta = json.loads(loaded.metadata.numpy().decode())
  info = dataset_table.DatasetInfo(meta["dataset"], meta["num_classes"],
                              meta["ignore_label"], tuple(meta["class_names"]),
                              np.array(meta["colormap"], np.uint8), {})
  return (lambda image: serve(images=tf.constant(image[None]))["labels"][0].numpy(),
          info)


def _write_png(array: np.ndarray, path: str):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  with tf.io.gfile.GFile(path, "wb") as f:  # gs:// too.
    f.write(buffer.getvalue())


def predict_files(paths, predictor: Predictor, info: dataset_table.DatasetInfo,
                  output_dir: str) -> List[str]:
  """Writes the three outputs per image; returns the problems met."""
  tf.io.gfile.makedirs(output_dir)
  problems = []
  bar = progress.Progress(len(paths), "predict", unit="images")
  for path in paths:
    try:
      image = image_files.read_rgb(path)
    except Exception as e:  # PIL raises many types for broken files.
      problems.append(f"{path}: unreadable image ({e})")
      bar.update()
      continue
    ids = predictor(image)
    colored = visualize.colorize(ids, info.colormap, info.ignore_label)
    stem = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
    _write_png(ids.astype(np.uint8), stem + "_ids.png")
    _write_png(colored, stem + "_color.png")
    _write_png(visualize.overlay(image, colored), stem + "_overlay.png")
    bar.update()
  return problems
