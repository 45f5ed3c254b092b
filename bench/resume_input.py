"""Time from start to the first training batch of a resumed run.

Usage:
  python bench/resume_input.py [--records=N] [--step=29000] [--write_readme]

Writes N synthetic training records (161x161, 8 shards) into a temporary
folder, then times, for the synthetic config at batch 16 (the VOC recipe's
batch, so step 29,000 is where a VOC run resumes near its end):
- ``train_dataset(start_step=0)``: a fresh run's first batch;
- ``train_dataset(start_step=--step)``: a resumed run's first batch (the
  pipeline starts at the step's epoch and skips within it);
- what the pipeline did before (until 2026-11-25): shuffle, repeat, then
  read and discard ``step * 16`` serialized records before the first one.
"""

import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import common  # noqa: E402
from deeplab.data import pipeline  # noqa: E402
from deeplab_configs import synthetic  # noqa: E402

# 2,100 records: step 29,000 of batch 16 falls 2,000 records into an epoch,
# so the resumed pipeline skips nearly a whole epoch (its worst case).
_RECORDS = flags.DEFINE_integer("records", 2100, "Synthetic training records.")
_STEP = flags.DEFINE_integer("step", 29000, "The step a run resumes at.")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write the figures into bench/README.md.")


def first_batch_seconds(dataset: tf.data.Dataset) -> float:
  start = time.perf_counter()
  next(iter(dataset))
  return time.perf_counter() - start


def read_and_discard(config, records: int) -> tf.data.Dataset:
  """The former resume: every record before the position read and dropped
  (serialized, before decoding), behind the same shuffle buffer."""
  paths = pipeline.list_files(config.data.train_pattern, "train_pattern")
  files = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths), seed=0)
  dataset = files.interleave(tf.data.TFRecordDataset, cycle_length=8,
                             num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.shuffle(config.data.shuffle_buffer, seed=0).repeat().skip(records)


def main(argv):
  del argv
  config = synthetic.get_config()
  config.train.batch_size = 16
  config.data.deterministic = True
  step = _STEP.value
  with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "deeplab.cli", "make-synthetic",
                    f"--output_dir={tmp}", f"--train_size={_RECORDS.value}",
                    "--val_size=1", "--num_shards=8"], cwd=REPO, check=True,
                   capture_output=True)
    config.data.train_pattern = os.path.join(tmp, "train-*.tfrecord")
    size = sum(os.path.getsize(p) for p in pipeline.list_files(
        config.data.train_pattern, "train_pattern"))
    first_batch_seconds(pipeline.train_dataset(config))  # TensorFlow's warm-up.
    fresh = first_batch_seconds(pipeline.train_dataset(config))
    resumed = first_batch_seconds(pipeline.train_dataset(config, start_step=step))
    before = first_batch_seconds(read_and_discard(config, step * 16))
  offset = step * 16 % _RECORDS.value
  text = (
      f"{_RECORDS.value} synthetic records (161x161, {size / 2**20:.0f} MiB in "
      f"8 shards), synthetic config, batch 16, deterministic; seconds to the "
      f"first batch ({common.cpu_model()}):\n\n"
      f"| run | first batch (s) |\n|---|---:|\n"
      f"| fresh (step 0) | {fresh:.2f} |\n"
      f"| resumed at step {step:,} (skips {offset:,} records of its epoch) "
      f"| {resumed:.2f} |\n"
      f"| resumed at step {step:,}, former pipeline (reads and discards "
      f"{step * 16:,} records) | {before:.2f} |")
  common.report("resume_input", text, _WRITE.value)


if __name__ == "__main__":
  app.run(main)
