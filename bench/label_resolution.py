"""What a grid of logits at stride s can express of a dataset's labels, and
how concentrated each class is.

Usage:
  python bench/label_resolution.py --pattern='camvid_records/val-*' \
      --dataset=camvid [--strides=2,4,8,16] [--class_name=pole]

DeepLab predicts logits on a grid of stride s (4 with the paper's decoder)
and resizes them bilinearly, corners aligned, to the image. For each stride
this prints the per-class IoU of the labels themselves sent through such a
grid: each label mask padded to ``16k + 1`` as evaluation pads images,
turned into one-hot class scores, sampled at the grid points, resized back
and arg-maxed. Two samplings bound what a model can reach:
- ``point``: the label at the grid point itself (a model certain of the
  class at every grid point);
- ``area``: the class shares of the s x s pixels around the grid point (a
  model that predicts, calibrated, what its grid cell holds).
A class far below 1 at stride 4 is one the paper's decoder cannot draw even
when it knows where the class is.

For ``--class_name`` it also prints how the class's pixels fall into
connected regions (8-connected) per image: the share of its pixels in each
image's largest region. A share near 1 on a video clip means the metric of
that class rests on a few physical objects seen in many frames
(bench/README.md, "CamVid in 30 minutes").
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

from deeplab import inference
from deeplab import metrics as metrics_lib
from deeplab.data import pipeline
from deeplab.data import records
from deeplab.data import registry

_PATTERN = flags.DEFINE_string("pattern", None, "Glob of segmentation records.",
                               required=True)
_DATASET = flags.DEFINE_string("dataset", None, "Dataset table entry (classes, "
                               "ignore label).", required=True)
_STRIDES = flags.DEFINE_list("strides", ["2", "4", "8", "16"],
                             "Strides of the logit grid.")
_CLASS = flags.DEFINE_string("class_name", "", "Class whose connected regions "
                             "are counted ('': none).")
ALIGNMENT = 16  # Evaluation pads to 16k + 1 (deeplab.inference).


def grid_scores(one_hot: tf.Tensor, stride: int, sampling: str) -> tf.Tensor:
  """One-hot [1, h, w, c] (h, w of the form stride * k + 1) -> class scores
  at the grid points 0, stride, 2 * stride, ... of each axis."""
  if sampling == "area":
    one_hot = tf.nn.avg_pool2d(one_hot, stride, 1, "SAME")
  return one_hot[:, ::stride, ::stride, :]


def regions(mask: np.ndarray) -> np.ndarray:
  """Pixel counts of the 8-connected regions of a boolean mask."""
  labels = np.zeros(mask.shape, np.int32)
  sizes = []
  height, width = mask.shape
  for y, x in zip(*np.nonzero(mask)):
    if labels[y, x]:
      continue
    sizes.append(0)
    labels[y, x] = len(sizes)
    stack = [(y, x)]
    while stack:
      cy, cx = stack.pop()
      sizes[-1] += 1
      for ny in range(max(cy - 1, 0), min(cy + 2, height)):
        for nx in range(max(cx - 1, 0), min(cx + 2, width)):
          if mask[ny, nx] and not labels[ny, nx]:
            labels[ny, nx] = len(sizes)
            stack.append((ny, nx))
  return np.asarray(sizes, np.int64)


def main(argv):
  del argv
  info = registry.get(_DATASET.value)
  classes, ignore = info.num_classes, info.ignore_label
  strides = [int(s) for s in _STRIDES.value]
  samplings = ("point", "area")
  confusion = {(s, m): np.zeros((classes, classes), np.int64)
               for s in strides for m in samplings}
  target = (list(info.class_names).index(_CLASS.value)
            if _CLASS.value else None)
  largest, total, images = 0, 0, 0
  paths = pipeline.list_files(_PATTERN.value, "--pattern")
  for example in records.iterate_examples(paths):
    label = example["label"][..., 0].astype(np.int64)
    height, width = label.shape
    padded = np.full((inference.padded_size(height, ALIGNMENT),
                      inference.padded_size(width, ALIGNMENT)), ignore)
    padded[:height, :width] = label
    one_hot = tf.one_hot(np.where(padded < classes, padded, -1), classes)[None]
    for stride in strides:
      for sampling in samplings:
        scores = tf.raw_ops.ResizeBilinear(
            images=grid_scores(one_hot, stride, sampling),
            size=padded.shape, align_corners=True)
        predicted = tf.argmax(scores[0], -1)[:height, :width]
        confusion[stride, sampling] += metrics_lib.confusion_matrix(
            label, predicted, classes, ignore).numpy()
    if target is not None and (label == target).any():
      sizes = regions(label == target)
      largest += sizes.max()
      total += sizes.sum()
      images += 1
  names = list(info.class_names)
  print(f"{_PATTERN.value}: IoU of the labels through a logit grid "
        "(bilinear, corners aligned)")
  print(f"{'stride':>6} {'sampling':>8} {'mean':>6}  " +
        " ".join(f"{n[:9]:>9}" for n in names))
  for stride in strides:
    for sampling in samplings:
      metrics = metrics_lib.metrics_from_confusion(confusion[stride, sampling],
                                                   names)
      print(f"{stride:>6} {sampling:>8} {metrics['miou']:>6.3f}  " +
            " ".join(f"{v:>9.3f}" for v in metrics["per_class_iou"].values()))
  if target is not None:
    print(f"{_CLASS.value}: in {images} images, {total} pixels; the largest "
          f"region of each image holds {largest / max(total, 1):.2f} of them")


if __name__ == "__main__":
  app.run(main)
