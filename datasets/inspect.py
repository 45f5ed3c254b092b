r"""Label audit of records or masks: run it before training on your own data.

Usage:
  deeplab-inspect PATH [--dataset=camvid]
  deeplab-inspect PATH --num_classes=5 [--ignore_label=255]

PATH is a folder of masks, a folder of .tfrecord shards, or a glob of
either. Prints per-class pixel frequency, the ignore share, values that
should not be there, palette / RGB / JPEG masks detected, warnings for the
usual mistakes (0/255 masks, absent classes, a dominant class) and
median-frequency class weights to paste into a config. Exits 1 if it
warned about values that break training.
"""

if __name__ == "__main__":
  # `python -m`: the runtime is chosen before TensorFlow loads
  # (deeplab/runtime.py), then main() runs from a fresh import of this module.
  from deeplab import runtime

  runtime.launch(__spec__.name)

import sys

from absl import app
from absl import flags

from deeplab import cli
from deeplab.data import audit
from deeplab.data import registry

_DATASET = flags.DEFINE_string("dataset", None, "Dataset table entry (classes, ignore label).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Number of classes.")
_IGNORE = flags.DEFINE_integer("ignore_label", None, "Ignore label (default 255).")


def _main(argv):
  if len(argv) != 2:
    raise app.UsageError("give exactly one PATH (folder or glob)")
  num_classes, ignore, names = _NUM_CLASSES.value, _IGNORE.value, ()
  if _DATASET.value:
    info = registry.get(_DATASET.value, num_classes, ignore)
    num_classes, ignore, names = info.num_classes, info.ignore_label, info.class_names
  ignore = 255 if ignore is None else ignore
  result = audit.audit_path(argv[1])
  text, warnings = audit.report(result, num_classes, ignore, names)
  print(text)
  if any("break training" in w for w in warnings):
    sys.exit(1)


def main():
  """Console-script entry point."""
  cli.run_app(_main, __doc__)

