r"""Builds Cityscapes records: gtFine labelIds converted to the 19 train ids.

Usage:
  deeplab-build-cityscapes --cityscapes_root=DIR --output_dir=OUT

DIR holds leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and
gtFine/{train,val}/<city>/*_gtFine_labelIds.png. Label ids map to train ids
through the dataset table; every other id (void, license plate, classes
not evaluated) becomes 255, the ignore label.
"""

from absl import flags

from deeplab.cli import builder_flags
from deeplab_datasets import build_cityscapes


def main():
  """Console-script entry point: flags, then ``build_cityscapes.build``."""
  root = flags.DEFINE_string("cityscapes_root", None, "Cityscapes folder.")
  flags.mark_flags_as_required(["cityscapes_root"])
  builder_flags.run_builder(
      lambda output_dir, options: build_cityscapes.build(root.value, output_dir, options),
      __doc__)
