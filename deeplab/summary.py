"""Prints the layer table of a config's model and its parameter count.

Usage:
  deeplab-summary --config=pascal_voc_xception65

The last line is ``total_params=<int>`` (weights and batch norm statistics).
The model is built at the config's crop size so the table shows real shapes.
"""

if __name__ == "__main__":
  # `python -m`: the runtime is chosen before TensorFlow loads
  # (deeplab/runtime.py), then main() runs from a fresh import of this module.
  from deeplab import runtime

  runtime.launch(__spec__.name)

from deeplab import model as model_lib


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


def main():
  """``python -m deeplab.summary``: flags, then ``print_summary``."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  from deeplab import cli  # pylint: disable=g-import-not-at-top

  config_flag = cli.define_config_flag("Experiment config file "
                                       "(configs/<name>.py).")
  line_length = flags.DEFINE_integer(
      "line_length", 140, "Width of the printed layer table in characters.")

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print_summary(config_flag.value, line_length.value)

  cli.run_app(_main, __doc__)

