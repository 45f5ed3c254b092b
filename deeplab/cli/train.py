r"""Trains DeepLab (or resumes a run) from an experiment config.

  deeplab-train --config=pascal_voc_xception65 --workdir=runs/voc \
      [--mode=train|train_and_eval] [--config.train.strategy=mirrored] \
      [--config.train.steps=N --config.train.max_minutes=M ...]
  deeplab-train --workdir=runs/voc          # resume with the run's config

(In a checkout, ``python train.py`` is the same tool; ``--config`` takes a
shipped config's name or a file.)

Leaves checkpoints, W/config.json (the resolved config), TensorBoard
summaries and W/train_log.jsonl in W; a second run resumes from the latest
checkpoint. SIGTERM / Ctrl-C save a checkpoint before exiting. Strategies:
--config.train.strategy=default|mirrored|multi_worker (TF_CONFIG)|tpu, with
--config.train.tpu=NAME. Continuous evaluation is eval.py's.
"""

from absl import app
from absl import flags

from deeplab.cli import common
from deeplab.training import loop


def main():
  """Console-script entry point: flags, then one library call."""
  config_flag = common.define_config_flag(
      "Experiment config file (configs/<name>.py); default: the config of "
      "the run in --workdir, to resume it.")
  workdir = flags.DEFINE_string("workdir", None, "Run folder.")
  mode = flags.DEFINE_enum("mode", "train", loop.MODES,
                           "train, or train_and_eval (evaluate after every "
                           "checkpoint).")

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    loop.run(common.run_config(config_flag.value, workdir.value), workdir.value,
             mode.value)

  flags.mark_flags_as_required(["workdir"])
  common.run_app(_main, __doc__)
