r"""Segments images and videos and writes id masks, colored masks and overlays.

  deeplab-predict --workdir=W --input='photos/*.jpg' --output_dir=O \
      [--config.eval.scales='(0.75,1.0,1.25)' --config.eval.flip=True]
  deeplab-predict --saved_model=E --input=photos/,clip.mp4 --output_dir=O \
      --batch_size=8
  deeplab-predict --tflite=model.tflite --dataset=camvid --input=photos/ --output_dir=O
  deeplab-predict --onnx=model.onnx --input=photos/ --output_dir=O

The model is one of: a run folder (--workdir, read with its own config,
W/config.json; --config.x=... changes evaluation fields such as scales
and flip on purpose), a SavedModel (--saved_model), a .tflite file
(--tflite: resized to its fixed input size and back) or an .onnx file
(--onnx). A .tflite file carries no class table: --dataset names the
dataset its ids are of (colors, names).

--input is an image or video file, a folder, a glob, or a comma separated
list of those. For each image ``x`` it writes ``O/x_ids.png`` (class ids),
``O/x_color.png`` (the dataset's colormap: pascal, cityscapes, ade20k,
camvid...) and ``O/x_overlay.png``; for each video ``v`` (PyAV, the
``video`` extra) ``O/v_overlay.mp4`` at the same frame rate, and with
--video_frame_ids ``O/v_frames/000000_ids.png``... --batch_size images of
the same size (or frames) go through the model at once. Unreadable inputs
are listed at the end (exit code 1); the others are still written. Its
runtime, oneDNN's frozen weights included, is the ``predict`` job's of
deeplab/runtime.py.
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
  tflite = flags.DEFINE_string("tflite", None, ".tflite file (instead of --workdir).")
  onnx = flags.DEFINE_string("onnx", None, ".onnx file (instead of --workdir).")
  dataset = flags.DEFINE_string(
      "dataset", None, "With --tflite or --onnx: the dataset of the table whose "
      "classes the file's ids are (default: the file's metadata, else generic "
      "PASCAL colors).")
  inputs = flags.DEFINE_string(
      "input", None, "Image or video file, folder, glob, or a comma separated list.")
  output_dir = flags.DEFINE_string("output_dir", None, "Where outputs go.")
  batch_size = flags.DEFINE_integer(
      "batch_size", 1, "Images of one size (or video frames) per model call.",
      lower_bound=1)
  frame_ids = flags.DEFINE_bool(
      "video_frame_ids", False, "Also write each video frame's id PNG.")
  checkpoint = common.define_checkpoint_flag("With --workdir. ")

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
      paths = predict.list_inputs(inputs.value)
      config = None
      if workdir.value:
        config = common.tool_config(config_flag.value, workdir.value)
      elif common.given_changes(config_flag.value):
        raise ValueError("--config and --config.x=... change a run folder's config "
                         "(--workdir); an exported model's scales, flip and tiles "
                         "are set at export (export.py --config.eval.tile_size=N)")
      predictor = predict.load_predictor(
          workdir=workdir.value, saved_model=saved_model.value,
          tflite=tflite.value, onnx=onnx.value, config=config,
          dataset=dataset.value, checkpoint=checkpoint.value)
    except (ValueError, FileNotFoundError, ImportError) as e:
      raise app.UsageError(str(e)) from e
    try:
      problems = predict.predict_files(paths, predictor, output_dir.value,
                                       batch_size.value, frame_ids.value)
    except ImportError as e:  # A video without PyAV.
      raise app.UsageError(str(e)) from e
    for problem in problems:
      print(problem, file=sys.stderr)
    if problems:
      sys.exit(1)

  flags.mark_flags_as_required(["input", "output_dir"])
  common.run_app(_main, __doc__)
