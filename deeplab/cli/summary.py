"""Prints the layer table of a config's model and its parameter count.

Usage:
  deeplab-summary --config=pascal_voc_xception65

The last line is ``total_params=<int>`` (weights and batch norm statistics).
The model is built at the config's crop size so the table shows real shapes.
"""

from absl import app
from absl import flags

from deeplab import summary
from deeplab.cli import common


def main():
  """Console-script entry point: flags, then ``deeplab.summary.print_summary``."""
  config_flag = common.define_config_flag("Experiment config file "
                                          "(configs/<name>.py).")
  line_length = flags.DEFINE_integer(
      "line_length", 140, "Width of the printed layer table in characters.")

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    summary.print_summary(config_flag.value, line_length.value)

  common.run_app(_main, __doc__)
