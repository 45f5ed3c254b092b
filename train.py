r"""Trains DeepLab (or resumes a run) from an experiment config.

  python train.py --config=configs/pascal_voc_xception65.py --workdir=/runs/voc \
      [--mode=train|train_and_eval|continuous_eval] [--strategy=mirrored] \
      [--config.train.steps=N --config.train.max_minutes=M ...]

Leaves checkpoints, W/config.json (the resolved config), TensorBoard
summaries and W/train_log.jsonl in W; a second run resumes from the latest
checkpoint. SIGTERM / Ctrl-C save a checkpoint before exiting.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from deeplab.training import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder.")
_MODE = flags.DEFINE_enum("mode", "train", loop.MODES, "What to run.")
_STRATEGY = flags.DEFINE_string(
    "strategy", None, "Overrides config.train.strategy: default, mirrored, "
    "multi_worker (TF_CONFIG) or tpu.")
_TPU = flags.DEFINE_string("tpu", None, "TPU address (overrides config.train.tpu).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if _STRATEGY.value is not None:
    config.train.strategy = _STRATEGY.value
  if _TPU.value is not None:
    config.train.tpu = _TPU.value
  loop.run(config, _WORKDIR.value, _MODE.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
