r"""Builds Cityscapes records: gtFine labelIds converted to the 19 train ids.

Usage:
  deeplab-build-cityscapes --cityscapes_root=DIR --output_dir=OUT

DIR holds leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and
gtFine/{train,val}/<city>/*_gtFine_labelIds.png. Label ids map to train ids
through the dataset table; every other id (void, license plate, classes
not evaluated) becomes 255, the ignore label.
"""

if __name__ == "__main__":
  # `python -m`: the runtime is chosen before TensorFlow loads
  # (deeplab/runtime.py), then main() runs from a fresh import of this module.
  from deeplab import runtime

  runtime.launch(__spec__.name)

import os

from absl import flags
import tensorflow as tf

from deeplab import cli
from deeplab.data import builder
from deeplab.data import registry

from . import common

_ROOT = flags.DEFINE_string("cityscapes_root", None, "Cityscapes folder.")


def splits(root: str):
  found = {}
  for split in ("train", "val"):
    images = sorted(tf.io.gfile.glob(os.path.join(
        root, "leftImg8bit", split, "*", "*_leftImg8bit.png")))
    if not images:
      continue
    samples = []
    for image in images:
      city = os.path.basename(os.path.dirname(image))
      stem = os.path.basename(image)[:-len("_leftImg8bit.png")]
      mask = os.path.join(root, "gtFine", split, city,
                          stem + "_gtFine_labelIds.png")
      samples.append(builder.Sample(image, mask if tf.io.gfile.exists(mask) else None))
    found[split] = samples
  if not found:
    raise FileNotFoundError(f"no leftImg8bit/train or leftImg8bit/val images "
                            f"under --cityscapes_root={root!r}")
  return found


def _main(argv):
  del argv
  info = registry.DATASETS["cityscapes"]
  spec = builder.LabelSpec(
      info.num_classes, info.ignore_label,
      id_map=tuple(sorted(registry.CITYSCAPES_LABEL_TO_TRAIN_ID.items())))
  common.build(splits(_ROOT.value), spec, dataset="cityscapes")


def main():
  """Console-script entry point."""
  flags.mark_flags_as_required(["cityscapes_root", "output_dir"])
  cli.run_app(_main, __doc__)

