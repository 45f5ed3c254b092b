"""Training curves and per-class IoU of runs, as PNG files.

Usage:
  deeplab-plot-training --run=LABEL=WORKDIR [--run=...] \
      [--output=training_curves.png] [--classes_output=class_iou.png]

The first figure has each run's training loss and validation mIoU against
the wall-clock minutes of training (from W/train_log.jsonl, and the
W/eval/metrics-<step>.json files deeplab-eval writes), the second the
per-class IoU of each run's last evaluation as grouped bars
(deeplab/training_curves.py). Needs matplotlib: pip install matplotlib.
"""

import sys

from absl import app
from absl import flags

from deeplab import training_curves
from deeplab.cli import common


def main():
  """Console-script entry point: flags, then ``training_curves.plot``."""
  runs = flags.DEFINE_multi_string("run", [], "LABEL=WORKDIR, one per run.")
  output = flags.DEFINE_string("output", "training_curves.png",
                               "Loss and val mIoU against minutes.")
  classes_output = flags.DEFINE_string("classes_output", "class_iou.png",
                                       "Per-class IoU bars.")

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not runs.value:
      raise app.UsageError("give at least one --run=LABEL=WORKDIR")
    read = {}
    for spec in runs.value:
      label, sep, workdir = spec.partition("=")
      if not sep:
        raise app.UsageError(f"--run={spec!r}: expected LABEL=WORKDIR")
      read[label] = training_curves.read_run(workdir)
    try:
      written = training_curves.plot(read, output.value, classes_output.value)
    except ImportError as e:
      sys.exit(str(e))
    for path in written:
      print(f"wrote {path}")

  common.run_app(_main, __doc__)
