"""Peak memory of predicting one large image whole and in tiles.

Usage:
  python bench/tile_memory.py [--config=pascal_voc_mobilenetv2]
      [--height=3000 --width=4000] [--tile_size=513 --tile_overlap=128]
      [--write_readme]

The config's model (random weights; memory does not depend on them),
batch norm folded, predicts one random uint8 image as ``deeplab.predict``
does (``inference.predict_labels`` in a ``tf.function``, the run's eval
options, labels only: in tiles, one row of windows at a time), once
whole (``config.eval.tile_size=0``) and once in tiles, each in a fresh
process; each reports its peak resident memory (``ru_maxrss``)
before and after the image, and the seconds the image took.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from bench import common  # noqa: E402

_CONFIG = flags.DEFINE_string("config", "pascal_voc_mobilenetv2", "Shipped config whose model predicts.")
_HEIGHT = flags.DEFINE_integer("height", 3000, "Image height in pixels.")
_WIDTH = flags.DEFINE_integer("width", 4000, "Image width in pixels.")
_TILE = flags.DEFINE_integer("tile_size", 513, "config.eval.tile_size of the tiled run.")
_OVERLAP = flags.DEFINE_integer("tile_overlap", 128, "config.eval.tile_overlap of the tiled run.")
_MEASURE = flags.DEFINE_integer("measure", None, "(internal) predict with this tile size.")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write the figures into bench/README.md.")


def measure(tile_size: int):
  """In a fresh process: peak memory before and after one large image."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from deeplab import folding  # pylint: disable=g-import-not-at-top
  from deeplab import inference  # pylint: disable=g-import-not-at-top
  from deeplab import model as model_lib  # pylint: disable=g-import-not-at-top
  config = __import__(f"deeplab_configs.{_CONFIG.value}", fromlist=["get_config"]).get_config()
  config.eval.tile_size, config.eval.tile_overlap = tile_size, _OVERLAP.value
  model = folding.inference_model(model_lib.build_model(config))
  options = inference.options_from_config(config)
  labels = tf.function(lambda image: inference.predict_labels(
      model, image[None], probabilities=False, **options)[0][0], reduce_retracing=True)
  labels(tf.zeros([65, 65, 3], tf.uint8))  # Builds the model.
  before = common.peak_rss_gib()
  image = np.random.default_rng(0).integers(0, 256, (_HEIGHT.value, _WIDTH.value, 3), np.uint8)
  start = time.perf_counter()
  labels(tf.constant(image)).numpy()
  seconds = time.perf_counter() - start
  print(json.dumps({"before": before, "peak": common.peak_rss_gib(), "seconds": seconds}))


def main(argv):
  del argv
  if _MEASURE.value is not None:
    measure(_MEASURE.value)
    return
  rows = []
  for tile_size in (0, _TILE.value):
    result = subprocess.run([sys.executable, __file__, f"--measure={tile_size}",
                             f"--config={_CONFIG.value}", f"--height={_HEIGHT.value}",
                             f"--width={_WIDTH.value}", f"--tile_overlap={_OVERLAP.value}"],
                            capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    how = (f"tiles of {tile_size}, overlap {_OVERLAP.value}" if tile_size else "whole image")
    rows.append(f"| {how} | {figures['before']:.2f} | {figures['peak']:.2f} | {figures['seconds']:.0f} |")
  text = (f"One {_WIDTH.value}x{_HEIGHT.value} uint8 image predicted by `{_CONFIG.value}`'s "
          "model (batch norm folded, one scale), as `deeplab-predict` does; peak resident "
          f"memory of the predicting process (`ru_maxrss`), {common.cpu_model()}:\n\n"
          "| inference | peak before the image (GiB) | peak after it (GiB) | seconds |\n"
          "|---|---:|---:|---:|\n" + "\n".join(rows))
  common.report("tile_memory", text, _WRITE.value)


if __name__ == "__main__":
  app.run(main)
