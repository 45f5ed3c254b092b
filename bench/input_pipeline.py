"""Training input pipeline throughput on CamVid at crop 513.

Usage:
  python bench/input_pipeline.py [--camvid_root=../shared/data/camvid]
      [--batches=60] [--write_readme]

Builds the CamVid train records into a temporary folder (or uses
--records), then times the training pipeline of configs/camvid_scratch.py
with crop 513x513, random scale 0.5-2.0, flip, batch 8: decode, augment,
batch, as the training loop consumes it. Prints images/s.
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

from bench import common  # noqa: E402
from deeplab.data import pipeline  # noqa: E402
from deeplab_configs import camvid_scratch  # noqa: E402

_ROOT = flags.DEFINE_string("camvid_root", str(REPO.parent / "shared/data/camvid"),
                            "CamVid folder (train/ trainannot/).")
_RECORDS = flags.DEFINE_string("records", None, "Existing CamVid records folder.")
_BATCHES = flags.DEFINE_integer("batches", 60, "Batches to time after warm-up.")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write the figure into bench/README.md.")


def measure(records_dir: str, batches: int) -> float:
  config = camvid_scratch.get_config()
  config.data.train_pattern = os.path.join(records_dir, "train-*.tfrecord")
  config.data.crop_size = (513, 513)
  config.train.batch_size = 8
  dataset = pipeline.train_dataset(config)
  iterator = iter(dataset)
  for _ in range(10):  # Warm-up: fills the shuffle buffer and autotunes.
    next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * 8 / (time.perf_counter() - start)


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as tmp:
    records_dir = _RECORDS.value
    if records_dir is None:
      records_dir = tmp
      # Train split only: the sample's size check against the table passes.
      root = pathlib.Path(tmp) / "camvid"
      root.mkdir()
      for folder in ("train", "trainannot"):
        (root / folder).symlink_to(pathlib.Path(_ROOT.value).resolve() / folder)
      subprocess.run([sys.executable, "-m", "deeplab.cli", "build-camvid",
                      f"--camvid_root={root}", f"--output_dir={tmp}"],
                     cwd=REPO, check=True)
    rate = measure(records_dir, _BATCHES.value)
  line = (f"Training pipeline, CamVid train, crop 513x513, scale 0.5-2.0, "
          f"flip, batch 8: **{rate:.1f} images/s** (2 cores, both shared "
          "with nothing else).")
  common.report("input_pipeline", line, _WRITE.value)


if __name__ == "__main__":
  app.run(main)
