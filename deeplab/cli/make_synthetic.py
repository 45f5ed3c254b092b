r"""Generates the built-in synthetic dataset: colored shapes on textures.

Usage:
  deeplab-make-synthetic --output_dir=OUT [--train_size=400]
      [--val_size=64] [--image_size=161] [--seed=0]
  deeplab-make-synthetic --task=classification --output_dir=OUT \
      [--train_size=400] [--val_size=64] [--image_size=48]

Deterministic from --seed. Each image has a low-saturation textured
background (gradients, stripes, checkers, blotches, noise) and 2-5 shapes of
four classes (disc, square, triangle, ring; see the dataset table
'synthetic'), randomly sized, rotated and textured, each class within its
own hue range, drawn in order so later shapes occlude earlier ones. Written
through the same builder as real data, so the demo and tests exercise the
real record format and pipeline.

With --task=classification it writes a classification set instead (the
dataset table's 'synthetic_shapes', 4 classes, ImageNet record layout):
each image has one shape of its class (label = the shape's class - 1) over
the same backgrounds, large enough that a tiny backbone learns the classes
in a few dozen steps (CI).
"""

from absl import app
from absl import flags

from deeplab.cli import builder_flags
from deeplab.cli import common
from deeplab_datasets import make_synthetic


def main():
  """Console-script entry point: flags, then ``make_synthetic.build``."""
  train_size = flags.DEFINE_integer("train_size", 400, "Training images.")
  val_size = flags.DEFINE_integer("val_size", 64, "Validation images.")
  image_size = flags.DEFINE_integer(
      "image_size", None, "Image height and width (default: "
      f"{make_synthetic.SEGMENTATION_SIZE}, or "
      f"{make_synthetic.CLASSIFICATION_SIZE} with --task=classification).")
  seed = flags.DEFINE_integer("seed", 0, "Random seed.")
  task = flags.DEFINE_enum(
      "task", "segmentation", ["segmentation", "classification"],
      "segmentation: images and masks ('synthetic'); classification: one "
      "shape per image and its class ('synthetic_shapes').")
  png_dir = flags.DEFINE_string(
      "png_dir", "", "Also write the validation images here as PNG files "
      "(inputs for trying deeplab-predict).")
  build_options = builder_flags.define_build_flags()

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    output_dir, options = build_options()
    reports = builder_flags.stop_at_strict_error(lambda: make_synthetic.build(
        output_dir, train_size.value, val_size.value, image_size.value,
        seed.value, task.value, png_dir.value, options))
    builder_flags.print_reports(reports,
                                classification=task.value == "classification")

  common.run_app(_main, __doc__)
