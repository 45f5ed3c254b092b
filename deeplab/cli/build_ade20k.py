r"""Builds ADE20K (SceneParsing, 150 classes + 0 = other, ignored) records.

Usage:
  deeplab-build-ade20k --ade20k_root=ADEChallengeData2016 \
      --output_dir=OUT

DIR holds images/{training,validation}/*.jpg and
annotations/{training,validation}/*.png (ids 0..150), written as the
splits train (20210) and val (2000), as the original's build_ade20k_data.py.
"""

from absl import flags

from deeplab.cli import builder_flags
from deeplab_datasets import build_ade20k


def main():
  """Console-script entry point: flags, then ``build_ade20k.build``."""
  root = flags.DEFINE_string("ade20k_root", None, "ADEChallengeData2016 folder.")
  flags.mark_flags_as_required(["ade20k_root"])
  builder_flags.run_builder(
      lambda output_dir, options: build_ade20k.build(root.value, output_dir, options),
      __doc__)
