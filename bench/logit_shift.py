"""How much of a run's mIoU its class weights cost in over-prediction.

Usage:
  python bench/logit_shift.py --workdir=W [--powers=0,0.5,0.75,1]

Training with class weights w shifts the optimum of the logits by about
ln(w_c) per class. Evaluating with the logits of class c lowered by
p * ln(w_c) approximates a model trained with weights w^(1-p) as far as the
calibration goes (not the features): if mIoU rises with p, the weights
over-predict the rare classes; if a class stays low at every p, its
features hold it back. Evaluates the run's latest checkpoint on its eval
records at one scale and prints mIoU and per-class IoU for each p
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

from deeplab import config as config_lib
from deeplab import metrics as metrics_lib
from deeplab import run_dir
from deeplab.data import pipeline
from deeplab.data import registry
from deeplab.tasks import segmentation

_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder.", required=True)
_POWERS = flags.DEFINE_list("powers", ["0", "0.5", "0.75", "1"],
                            "Shifts p: logits minus p * ln(class weight).")


class ShiftedLogits:
  """The model with a constant added to its logits (what evaluation calls)."""

  def __init__(self, model, shift):
    self.model, self.shift, self.args = model, shift, model.args

  def __call__(self, images, training=False):
    return self.model(images, training=training) + self.shift


def main(argv):
  del argv
  config = run_dir.read_config(_WORKDIR.value)
  if not config.train.class_weights:
    raise SystemExit(f"{_WORKDIR.value}: the run has no config.train.class_weights")
  model, step = run_dir.restore_model(config, _WORKDIR.value)
  log_weights = np.log(np.asarray(config.train.class_weights, np.float32))
  info = registry.from_config(config)
  strategy = tf.distribute.get_strategy()
  dataset = strategy.experimental_distribute_dataset(
      pipeline.eval_dataset(config, None).map(
          lambda batch: {"image": batch["image"], "label": batch["label"]}))
  print(f"{_WORKDIR.value}, step {step}, 1 scale")
  for power in map(float, _POWERS.value):
    shifted = ShiftedLogits(model, tf.constant(-power * log_weights))
    matrix = segmentation.confusion_over_dataset(
        shifted, dataset, strategy, info.num_classes, info.ignore_label,
        (1.0,), False, crop_size=config_lib.eval_crop_size(config))
    metrics = metrics_lib.metrics_from_confusion(matrix, info.class_names,
                                                 info.evaluated_classes)
    classes = ", ".join(f"{name} {iou:.3f}" for name, iou
                        in metrics["per_class_iou"].items() if iou is not None)
    print(f"p={power:g}: mIoU {metrics['miou']:.4f}; {classes}", flush=True)


if __name__ == "__main__":
  app.run(main)
