r"""Evaluates the latest checkpoint of a training workdir.

  python eval.py --config=configs/<name>.py --workdir=W \
      [--config.data.eval_pattern=GLOB] [--config.eval.scales='(0.5,0.75,1.0,1.25,1.5,1.75)'] \
      [--config.eval.flip=True] [--checkpoint=W/checkpoints/ckpt-N]

Writes W/eval/metrics.json: {"miou", "per_class_iou": {name: iou},
"pixel_accuracy", "mean_accuracy", "frequency_weighted_iou", "step"}, and
TensorBoard summaries in W/eval. With --mode=continuous_eval it waits for
new checkpoints and evaluates each once.
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from deeplab import folding
from deeplab.training import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Training run folder.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "A checkpoint prefix (default: the latest).")
_MODE = flags.DEFINE_enum("mode", "eval", ["eval", "continuous_eval"],
                          "Evaluate once, or every new checkpoint.")
_TIMEOUT = flags.DEFINE_float("timeout", 3600, "continuous_eval: seconds to "
                              "wait for a new checkpoint before stopping.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if _MODE.value == "continuous_eval":
    loop.continuous_eval(config, _WORKDIR.value, _TIMEOUT.value)
    return
  model, step = loop.restore_model(config, _WORKDIR.value, _CHECKPOINT.value)
  model = folding.inference_model(model)  # Same logits, faster.
  metrics = loop.evaluate_model(config, model, _WORKDIR.value, step)
  print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
