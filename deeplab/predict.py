r"""Segments images and writes id masks, colored masks and overlays.

  deeplab-predict --workdir=W --input='photos/*.jpg' --output_dir=O \
      [--config.eval.scales='(0.75,1.0,1.25)' --config.eval.flip=True]
  deeplab-predict --saved_model=E --input=photos/ --output_dir=O

A run folder is read with its own config (W/config.json); --config.x=...
changes evaluation fields (scales, flip) on purpose.

--input is an image file, a folder, or a glob. For each image ``x`` it
writes ``O/x_ids.png`` (class ids), ``O/x_color.png`` (the dataset's
colormap: pascal, cityscapes, ade20k, camvid...) and ``O/x_overlay.png``.
Unreadable images are listed at the end (exit code 1); the others are
still written.
"""

from __future__ import annotations

if __name__ == "__main__":
  # `python -m`: the runtime is chosen before TensorFlow loads
  # (deeplab/runtime.py), then main() runs from a fresh import of this module.
  from deeplab import runtime

  runtime.launch(__spec__.name)

import io
import json
import os
import sys
from typing import Callable, List, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from deeplab import folding
from deeplab import inference
from deeplab import progress
from deeplab import run_dir
from deeplab import visualize
from deeplab.data import image_files
from deeplab.data import registry

Predictor = Callable[[np.ndarray], np.ndarray]


def list_inputs(spec: str) -> List[str]:
  """Image files named by a file, a folder or a glob, sorted."""
  paths = image_files.list_images(spec)
  if not paths:
    raise FileNotFoundError(f"--input={spec!r} names no image files")
  return paths


def checkpoint_predictor(config, workdir: str) -> Tuple[Predictor, registry.DatasetInfo]:
  """Predicts with the latest checkpoint of a run, batch norm folded."""
  model, _ = run_dir.restore_model(config, workdir)
  model = folding.inference_model(model)
  options = inference.options_from_config(config)

  @tf.function(reduce_retracing=True)
  def labels(image):
    return inference.predict_labels(model, image[None], **options)[0][0]

  return (lambda image: labels(tf.constant(image)).numpy(),
          registry.from_config(config))


def saved_model_predictor(export_dir: str) -> Tuple[Predictor, registry.DatasetInfo]:
  """Predicts with an exported SavedModel's ``serving_default``."""
  loaded = tf.saved_model.load(export_dir)
  serve = loaded.signatures["serving_default"]
  meta = json.loads(loaded.metadata.numpy().decode())
  info = registry.DatasetInfo(meta["dataset"], meta["num_classes"],
                              meta["ignore_label"], tuple(meta["class_names"]),
                              np.array(meta["colormap"], np.uint8), {})
  return (lambda image: serve(images=tf.constant(image[None]))["labels"][0].numpy(),
          info)


def _write_png(array: np.ndarray, path: str):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  with tf.io.gfile.GFile(path, "wb") as f:  # gs:// too.
    f.write(buffer.getvalue())


def predict_files(paths, predictor: Predictor, info: registry.DatasetInfo,
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


def main():
  """``deeplab-predict`` / ``python -m deeplab.predict``: flags, then
  ``predict_files``. (Its runtime, oneDNN's frozen weights included, is
  the ``predict`` job's of deeplab/runtime.py.)"""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  from deeplab import cli  # pylint: disable=g-import-not-at-top

  config_flag = cli.define_config_flag(
      "With --workdir: changes to the run's config (e.g. eval scales).")
  workdir = flags.DEFINE_string("workdir", None, "Training run folder.")
  saved_model = flags.DEFINE_string("saved_model", None,
                                    "SavedModel folder (instead of --workdir).")
  inputs = flags.DEFINE_string("input", None, "Image file, folder or glob.")
  output_dir = flags.DEFINE_string("output_dir", None, "Where outputs go.")

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if bool(saved_model.value) == bool(workdir.value):
      raise app.UsageError("give --saved_model or --workdir (one of them)")
    if saved_model.value:
      predictor, info = saved_model_predictor(saved_model.value)
    else:
      predictor, info = checkpoint_predictor(
          cli.tool_config(config_flag.value, workdir.value), workdir.value)
    problems = predict_files(list_inputs(inputs.value), predictor, info,
                             output_dir.value)
    for problem in problems:
      print(problem, file=sys.stderr)
    if problems:
      sys.exit(1)

  flags.mark_flags_as_required(["input", "output_dir"])
  cli.run_app(_main, __doc__)

