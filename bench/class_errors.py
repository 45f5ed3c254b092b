"""Where one class's errors go: confusions, distance of misses, an overlay.

Usage:
  python bench/class_errors.py --workdir=W --class_name=pole
      [--overlay=bench/pole_errors.png] [--overlay_images=6]

Evaluates the run's latest checkpoint on its eval records at one scale and
prints, for the class:
- what its labelled pixels are predicted as, and what the pixels predicted
  as it are labelled (the confusion matrix's row and column, as fractions);
- recall and precision within a tolerance of 2, 5 and 10 pixels (a label
  pixel counts as found if the class is predicted within that distance, a
  predicted pixel as right if the class is labelled within it): if they
  stay low as the tolerance grows, the errors are confusions, not
  boundaries a few pixels off;
- the widths of the class's horizontal label runs (every 8th row), for how
  thin it is;
- the class's IoU when a pixel is called the class wherever its
  probability exceeds a threshold t, instead of where it is the most
  probable class: if no t beats the arg-max, no recalibration of the
  class (a bias, a temperature, a loss weight that only shifts the logit)
  lifts it.
``--overlay`` writes the first images dimmed, with the class's labelled
pixels it missed in green, its false predictions in red and its hits in
yellow (bench/README.md, "CamVid in 30 minutes").
"""

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import numpy as np
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import inference
from deeplab import metrics as metrics_lib
from deeplab import run_dir
from deeplab.data import pipeline
from deeplab.data import registry

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder.", required=True)
_CLASS = flags.DEFINE_string("class_name", "pole", "Class to examine.")
_OVERLAY = flags.DEFINE_string("overlay", "", "PNG of the first images' "
                               "errors of the class ('': none).")
_OVERLAY_IMAGES = flags.DEFINE_integer("overlay_images", 6, "Images in it.")
TOLERANCES = (2, 5, 10)
THRESHOLDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
  """``mask`` [h, w] grown by ``radius`` pixels (a square window)."""
  window = 2 * radius + 1
  grown = tf.nn.max_pool2d(mask[None, :, :, None].astype(np.float32),
                           window, 1, "SAME")
  return grown.numpy()[0, :, :, 0] > 0


def run_widths(mask: np.ndarray) -> np.ndarray:
  """Lengths of the horizontal runs of ``mask``, every 8th row."""
  widths = []
  for row in mask[::8]:
    edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    widths.extend(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
  return np.asarray(widths, np.int64)


def overlay(image: np.ndarray, label: np.ndarray, predicted: np.ndarray):
  """The image dimmed; misses green, false predictions red, hits yellow."""
  rgb = ((image + 1.0) * 63.75).astype(np.uint8)
  rgb[label & ~predicted] = (0, 255, 0)
  rgb[predicted & ~label] = (255, 0, 0)
  rgb[predicted & label] = (255, 255, 0)
  return rgb


def main(argv):
  del argv
  config = run_dir.read_config(_WORKDIR.value)
  info = registry.from_config(config)
  if _CLASS.value not in info.class_names:
    raise SystemExit(f"--class_name={_CLASS.value!r} is not a class of "
                     f"{info.name}: {list(info.class_names)}")
  target = list(info.class_names).index(_CLASS.value)
  model, step = run_dir.restore_model(config, _WORKDIR.value)
  classes = info.num_classes
  confusion = np.zeros((classes + 1, classes + 1), np.int64)  # + ignored.
  found = dict.fromkeys(TOLERANCES, 0)
  right = dict.fromkeys(TOLERANCES, 0)
  widths, tiles = [], []
  threshold_inter = np.zeros(len(THRESHOLDS), np.int64)
  threshold_union = np.zeros(len(THRESHOLDS), np.int64)
  thresholds = np.asarray(THRESHOLDS, np.float32)[:, None, None]
  for batch in pipeline.eval_dataset(config, None):
    probabilities = inference.predict_probabilities(
        model, batch["image"], crop_size=config_lib.eval_crop_size(config))
    predictions = tf.argmax(probabilities, -1).numpy()
    labels = np.reshape(batch["label"].numpy(), predictions.shape)
    for image, label, predicted, probability in zip(
        batch["image"].numpy(), labels, predictions,
        probabilities[..., target].numpy()):
      label = np.where(label == info.ignore_label, classes, label)
      confusion += np.bincount(label.ravel() * (classes + 1) + predicted.ravel(),
                               minlength=(classes + 1) ** 2).reshape(
                                   classes + 1, classes + 1)
      is_label, is_predicted = label == target, predicted == target
      for tolerance in TOLERANCES:
        found[tolerance] += (is_label & dilate(is_predicted, tolerance)).sum()
        right[tolerance] += (is_predicted & dilate(is_label, tolerance)).sum()
      widths.append(run_widths(is_label))
      above = (probability > thresholds) & (label < classes)
      threshold_inter += (above & is_label).sum((1, 2))
      threshold_union += (above | is_label).sum((1, 2))
      if len(tiles) < _OVERLAY_IMAGES.value:
        tiles.append(overlay(image, is_label, is_predicted))
  names = list(info.class_names) + ["ignored"]
  row, column = confusion[target], confusion[:, target]

  def fractions(counts):
    total = max(counts.sum(), 1)
    return ", ".join(f"{name} {count / total:.3f}" for name, count
                     in sorted(zip(names, counts), key=lambda p: -p[1])
                     if count)

  print(f"{_WORKDIR.value}, step {step}, 1 scale, class {_CLASS.value}")
  print(f"labelled {_CLASS.value} predicted as: {fractions(row)}")
  print(f"predicted {_CLASS.value} labelled as: {fractions(column)}")
  for tolerance in TOLERANCES:
    print(f"within {tolerance} px: recall "
          f"{found[tolerance] / max(row.sum(), 1):.3f}, precision "
          f"{right[tolerance] / max(column.sum(), 1):.3f}")
  iou = metrics_lib.metrics_from_confusion(  # Without the ignored pixels.
      confusion[:classes, :classes], info.class_names)["per_class_iou"][
          _CLASS.value]
  print(f"IoU: arg-max {iou:.3f}; probability above t: " + ", ".join(
      f"{t:g} {i / max(u, 1):.3f}" for t, i, u
      in zip(THRESHOLDS, threshold_inter, threshold_union)))
  widths = np.concatenate(widths)
  if widths.size:
    print(f"label run widths: median {np.median(widths):g} px, "
          f"{(widths <= 3).mean():.0%} of runs at most 3 px")
  if _OVERLAY.value and tiles:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    pairs = [np.concatenate(tiles[i:i + 2], 1) for i in range(0, len(tiles) - 1, 2)]
    Image.fromarray(np.concatenate(pairs, 0)).save(_OVERLAY.value)
    print(f"wrote {_OVERLAY.value}")


if __name__ == "__main__":
  app.run(main)
