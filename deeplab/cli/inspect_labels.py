r"""Label audit of records or masks: run it before training on your own data.

Usage:
  deeplab-inspect PATH [--dataset=camvid]
  deeplab-inspect PATH --num_classes=5 [--ignore_label=255]
  deeplab-inspect 'records/train-*'   (records with their dataset.json)

PATH is a folder of masks, a folder of .tfrecord shards, or a glob of
either. Prints per-class pixel frequency, the ignore share, values that
should not be there, palette / RGB / JPEG masks detected, warnings for the
usual mistakes (0/255 masks, absent classes, a dominant class) and
median-frequency class weights to paste into a config. Exits 1 if it
warned about values that break training.
"""

import sys

from absl import app
from absl import flags

from deeplab.cli import common
from deeplab_datasets import label_audit


def main():
  """Console-script entry point: flags, then ``label_audit.audit``."""
  dataset = flags.DEFINE_string("dataset", None,
                                "Dataset table entry (classes, ignore label).")
  num_classes = flags.DEFINE_integer("num_classes", None, "Number of classes.")
  ignore = flags.DEFINE_integer("ignore_label", None, "Ignore label (default 255).")

  def _main(argv):
    if len(argv) != 2:
      raise app.UsageError("give exactly one PATH (folder or glob)")
    text, warnings = label_audit.audit(argv[1], dataset.value, num_classes.value,
                                       ignore.value)
    print(text)
    if label_audit.breaks_training(warnings):
      sys.exit(1)

  common.run_app(_main, __doc__)
