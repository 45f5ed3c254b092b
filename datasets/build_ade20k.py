r"""Builds ADE20K (SceneParsing, 150 classes + 0 = other, ignored) records.

Usage:
  deeplab-build-ade20k --ade20k_root=ADEChallengeData2016 \
      --output_dir=OUT

DIR holds images/{training,validation}/*.jpg and
annotations/{training,validation}/*.png (ids 0..150), written as the
splits train (20210) and val (2000), as the original's build_ade20k_data.py.
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

_ROOT = flags.DEFINE_string("ade20k_root", None, "ADEChallengeData2016 folder.")
SPLITS = {"train": "training", "val": "validation"}


def splits(root: str):
  return {split: builder.pair_by_stem(os.path.join(root, "images", folder),
                                      os.path.join(root, "annotations", folder))
          for split, folder in SPLITS.items()
          if tf.io.gfile.isdir(os.path.join(root, "images", folder))}


def _main(argv):
  del argv
  info = registry.DATASETS["ade20k"]
  found = splits(_ROOT.value)
  if not found:
    raise FileNotFoundError(f"no images/training or images/validation under "
                            f"--ade20k_root={_ROOT.value!r}")
  common.build(found, builder.LabelSpec(info.num_classes, info.ignore_label),
               dataset="ade20k")


def main():
  """Console-script entry point."""
  flags.mark_flags_as_required(["ade20k_root", "output_dir"])
  cli.run_app(_main, __doc__)

