r"""Segments images and writes id masks, colored masks and overlays.

  deeplab-predict --workdir=W --input='photos/*.jpg' --output_dir=O \
      [--config.eval.scales='(0.75,1.0,1.25)' --config.eval.flip=True]
  deeplab-predict --saved_model=E --input=photos/ --output_dir=O

A run folder is read with its own config (W/config.json); --config.x=...
changes evaluation fields (scales, flip) on purpose.

--input is an image file, a folder, or a glob. For each image ``x`` it
writes ``O/x_ids.png`` (class ids), ``O/x_color.png`` (the dataset's
colormap: pascal, cityscapes, ade20k, camvid...) and ``O/x_overlay.png``.
Unreadable images are listed at the end (exit code 1); the others are
still written. Its runtime, oneDNN's frozen weights included, is the
``predict`` job's of deeplab/runtime.py.
"""

import sys

from absl import app
from absl import flags

from deeplab import predict
from deeplab.cli import common


def main():
  """Console-script entry point: flags, then ``deeplab.predict.predict_files``."""
  config_flag = common.define_config_flag(
      "With --workdir: changes to the run's config (e.g. eval scales).")
  workdir = flags.DEFINE_string("workdir", None, "Training run folder.")
  saved_model = flags.DEFINE_string("saved_model", None,
                                    "SavedModel folder (instead of --workdir).")
  inputs = flags.DEFINE_string("input", None, "Image file, folder or glob.")
  output_dir = flags.DEFINE_string("output_dir", None, "Where outputs go.")
  checkpoint = flags.DEFINE_string(
      "checkpoint", "latest", "With --workdir: which checkpoint: latest, best "
      "(of --mode=train_and_eval), a step, or a checkpoint prefix.")

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if bool(saved_model.value) == bool(workdir.value):
      raise app.UsageError("give --saved_model or --workdir (one of them)")
    if saved_model.value:
      predictor, info = predict.saved_model_predictor(saved_model.value)
    else:
      predictor, info = predict.checkpoint_predictor(
          common.tool_config(config_flag.value, workdir.value), workdir.value,
          checkpoint.value)
    problems = predict.predict_files(predict.list_inputs(inputs.value), predictor,
                                     info, output_dir.value)
    for problem in problems:
      print(problem, file=sys.stderr)
    if problems:
      sys.exit(1)

  flags.mark_flags_as_required(["input", "output_dir"])
  common.run_app(_main, __doc__)
