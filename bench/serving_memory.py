"""Peak memory of one SavedModel request at the export's pixel limit.

Usage:
  python bench/serving_memory.py [--configs=synthetic,pascal_voc_mobilenetv2_dm05]
      [--write_readme]

For each config: its model (random weights; memory does not depend on
them) is exported with the default ``config.export.max_request_pixels``;
then a fresh process loads the SavedModel, serves one 64x64 image (so the
graph is built), notes its peak resident memory (``ru_maxrss``), sends one
image a row over the limit (refused: the peak grows by the request's own
uint8 pixels only), then one uint8 image of exactly the limit (4096x4096)
through ``serving_default``, noting the peak after each.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from bench import common  # noqa: E402

_CONFIGS = flags.DEFINE_list("configs", ["synthetic", "pascal_voc_mobilenetv2_dm05"],
                             "Shipped configs whose models are measured.")
_SERVE = flags.DEFINE_string("serve", None, "(internal) measure this SavedModel.")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write the figures into bench/README.md.")


def serve(saved_model: str):
  """In a fresh process: peak memory after a small and a limit-size request."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  loaded = tf.saved_model.load(saved_model)
  limit = json.loads(loaded.metadata.numpy())["max_request_pixels"]
  side = int(np.sqrt(limit))
  predict = loaded.signatures["serving_default"]
  predict(images=tf.zeros([1, 64, 64, 3], tf.uint8))
  before = common.peak_rss_gib()
  rng = np.random.default_rng(0)
  over = tf.constant(rng.integers(0, 256, (1, side + 1, side, 3), np.uint8))
  try:
    predict(images=over)
    raise AssertionError("a request over the limit was served")
  except tf.errors.InvalidArgumentError:
    refused = common.peak_rss_gib()
  del over
  image = rng.integers(0, 256, (1, side, side, 3), np.uint8)
  predict(images=tf.constant(image))["labels"].numpy()
  print(json.dumps({"limit": limit, "side": side, "before": before,
                    "refused": refused, "peak": common.peak_rss_gib()}))


def main(argv):
  del argv
  if _SERVE.value:
    serve(_SERVE.value)
    return
  from deeplab import config as config_lib  # pylint: disable=g-import-not-at-top
  from deeplab import model as model_lib  # pylint: disable=g-import-not-at-top
  from deeplab.data import dataset_table  # pylint: disable=g-import-not-at-top
  from deeplab.export import savedmodel  # pylint: disable=g-import-not-at-top
  rows = []
  for name in _CONFIGS.value:
    config = __import__(f"deeplab_configs.{name}", fromlist=["get_config"]).get_config()
    model = model_lib.build_model(config)
    with tempfile.TemporaryDirectory() as tmp:
      savedmodel.export_saved_model(
          model, dataset_table.from_config(config), tmp,
          crop_size=config_lib.eval_crop_size(config),
          max_request_pixels=config.export.max_request_pixels)
      result = subprocess.run([sys.executable, __file__, f"--serve={tmp}"],
                              capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    rows.append(f"| {name} ({model.args.backbone}, {config.dataset.num_classes} "
                f"classes) | {figures['side']}x{figures['side']} | "
                f"{figures['before']:.2f} | {figures['refused']:.2f} | "
                f"{figures['peak']:.2f} |")
  text = ("One `serving_default` request of one uint8 image at the default "
          "limit, `config.export.max_request_pixels` = 4096 x 4096 = "
          "16,777,216 pixels; peak resident memory of the serving process "
          f"(`ru_maxrss`), {common.cpu_model()}:\n\n"
          "| model | request at the limit | peak before (GiB) | after a refused "
          "request one row over (GiB) | after the request (GiB) |\n"
          "|---|---|---:|---:|---:|\n" + "\n".join(rows))
  common.report("serving_memory", text, _WRITE.value)


if __name__ == "__main__":
  app.run(main)
