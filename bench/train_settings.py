"""Training throughput under runtime settings: steps_per_loop and threads.

Usage: python bench/train_settings.py [--config=configs/synthetic.py]
    [--train_pattern=...] [--steps=120] [--steps_per_loop=1,10,50]
    [--inter_op_threads=0,1] [--write_readme]

Runs ``train.py`` once per setting, each in a fresh process (thread pools
are fixed when TensorFlow starts: TF_NUM_INTEROP_THREADS, 0 meaning
TensorFlow's default of one per core) and reads the images/s that
training logs per loop call (``train_log.jsonl``), leaving out the first
two calls (tracing, warm-up). Settings take turns over --rounds rounds.
Without --train_pattern, the demo's synthetic records are generated into a
temporary folder.
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

_CONFIG = flags.DEFINE_string("config", "configs/synthetic.py", "Config file.")
_TRAIN = flags.DEFINE_string("train_pattern", None, "Training records.")
_STEPS = flags.DEFINE_integer("steps", 120, "Training steps per run.")
_LOOPS = flags.DEFINE_list("steps_per_loop", ["1", "10", "50"],
                           "config.train.steps_per_loop values.")
_INTER = flags.DEFINE_list("inter_op_threads", ["0", "1"],
                           "TF_NUM_INTEROP_THREADS values (0: default).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Alternating rounds.")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write into bench/README.md.")


def run_once(pattern, steps_per_loop, inter_op, workdir) -> list:
  """images/s of each logged loop call after the first two."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  if inter_op:
    env["TF_NUM_INTEROP_THREADS"] = str(inter_op)
  command = [sys.executable, str(REPO / "train.py"), f"--config={_CONFIG.value}",
             f"--workdir={workdir}", f"--config.data.train_pattern={pattern}",
             f"--config.train.steps={_STEPS.value}",
             f"--config.train.steps_per_loop={steps_per_loop}",
             f"--config.checkpoint.every={_STEPS.value}"]
  result = subprocess.run(command, env=env, cwd=REPO, capture_output=True,
                          text=True)
  if result.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  records = [json.loads(line) for line in
             (pathlib.Path(workdir) / "train_log.jsonl").read_text().splitlines()]
  rates = [r["images_per_second"] for r in records[2:]]
  if not rates:
    raise ValueError(f"--steps={_STEPS.value} leaves no loop call to time with "
                     f"steps_per_loop={steps_per_loop}; raise --steps")
  return rates


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as tmp:
    pattern = _TRAIN.value
    if pattern is None:
      subprocess.run([sys.executable, "-m", "datasets.make_synthetic",
                      f"--output_dir={tmp}/records"], cwd=REPO, check=True,
                     capture_output=True)
      pattern = f"{tmp}/records/train-*.tfrecord"
    settings = [(int(k), int(t)) for t in _INTER.value for k in _LOOPS.value]
    rates = {s: [] for s in settings}
    for round_index in range(_ROUNDS.value):
      for k, t in settings:
        rates[(k, t)] += run_once(pattern, k, t, f"{tmp}/run_{k}_{t}_{round_index}")
  lines = [f"`{_CONFIG.value}`, {_STEPS.value} steps per run, median images/s "
           f"of the loop calls after the first two, {_ROUNDS.value} rounds:", "",
           "| steps_per_loop | inter-op threads | images/s |", "|---:|---:|---:|"]
  for (k, t), values in rates.items():
    lines.append(f"| {k} | {t or 'default'} | {statistics.median(values):.1f} |")
  text = "\n".join(lines)
  from bench import common  # pylint: disable=g-import-not-at-top
  common.report("train_settings", text, _WRITE.value)


if __name__ == "__main__":
  app.run(main)
