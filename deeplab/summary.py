"""Prints the layer table of a config's model and its parameter count.

Usage:
  python -m deeplab.summary --config=configs/pascal_voc_xception65.py

The last line is ``total_params=<int>`` (weights and batch norm statistics).
The model is built at the config's crop size so the table shows real shapes.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from deeplab import model as model_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/<name>.py).",
    lock_config=True)
_LINE_LENGTH = flags.DEFINE_integer(
    "line_length", 140, "Width of the printed layer table in characters.")


def print_summary(config, line_length: int = 140) -> int:
  """Prints the layer table and ``total_params=N``; returns N."""
  crop_height, crop_width = config.data.crop_size
  model = model_lib.build_model(config, input_shape=(crop_height, crop_width, 3))
  model.summary(line_length=line_length, expand_nested=True)
  total = model.count_params()
  trainable = sum(int(v.numpy().size) for v in model.trainable_weights)
  print(f"trainable_params={trainable}")
  print(f"non_trainable_params={total - trainable}")
  print(f"total_params={total}")
  return total


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  print_summary(_CONFIG.value, _LINE_LENGTH.value)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  app.run(main)
