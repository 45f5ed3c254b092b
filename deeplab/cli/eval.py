r"""Evaluates a training run: one checkpoint (the latest, the best, a step), or every new one.

  deeplab-eval --workdir=W [--config.eval.scales='(0.5,0.75,1.0,1.25,1.5,1.75)'] \
      [--config.eval.flip=True] [--config.data.eval_pattern=GLOB] \
      [--checkpoint=latest|best|STEP|PREFIX] [--mode=continuous_eval]

(In a checkout, ``python eval.py`` is the same tool.)

The run's own config (W/config.json) is used; --config.x=... (or
--config=FILE) changes evaluation fields on purpose, and a change of the
model's architecture is refused. Writes W/eval/metrics.json: {"miou",
"per_class_iou", "per_class_recall", "per_class_precision": {name: value},
"pixel_accuracy", "mean_accuracy",
"frequency_weighted_iou", "step", "checkpoint"} (a classification run:
{"top_1_accuracy", "top_5_accuracy", "examples", "step", "checkpoint"}),
where "checkpoint" is {"path", "step", "selector"}, and TensorBoard
summaries in W/eval.
With --mode=continuous_eval it waits for new checkpoints and evaluates each
once, until the run's last step.
"""

import json

from absl import app
from absl import flags

from deeplab import evaluation
from deeplab.cli import common


def main():
  """Console-script entry point: flags, then one library call."""
  config_flag = common.define_config_flag()
  workdir = flags.DEFINE_string("workdir", None, "Training run folder.")
  checkpoint = common.define_checkpoint_flag()
  mode = flags.DEFINE_enum("mode", "eval", ["eval", "continuous_eval"],
                           "Evaluate once, or every new checkpoint.")
  timeout = flags.DEFINE_float("timeout", 3600, "continuous_eval: seconds to "
                               "wait for a new checkpoint before stopping.")

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = common.tool_config(config_flag.value, workdir.value)
    if mode.value == "continuous_eval":
      evaluation.continuous_eval(config, workdir.value, timeout.value)
      return
    metrics = evaluation.evaluate_checkpoint(config, workdir.value,
                                             checkpoint.value)
    print(json.dumps(metrics, indent=2))

  flags.mark_flags_as_required(["workdir"])
  common.run_app(_main, __doc__)
