"""Forward latency with batch norm versus folded into the convolutions.

Usage: python bench/fold_speed.py [--backbones=mobilenet_v2,xception_65,resnet_50]

For each backbone: DeepLabv3+ (OS 16, separable ASPP 6,12,18 + decoder,
21 classes) with random batch norm statistics, and its folded form from
``deeplab.folding``; prints the largest logit difference and the batch-1
latency at 513x513 of each form, in alternating rounds.
"""

import os
import pathlib
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import common  # noqa: E402
from deeplab import folding  # noqa: E402

_BACKBONES = flags.DEFINE_list("backbones", ["mobilenet_v2", "xception_65", "resnet_50"],
                               "Backbones to measure.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds of 3 runs.")


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  x = tf.constant(rng.uniform(-1, 1, (1, 513, 513, 3)).astype("float32"))
  for backbone in _BACKBONES.value:
    model = common.randomize_batch_norm(common.deeplab_v3_plus(backbone), rng)
    folded = folding.fold_batch_norm(model)
    forms = {"batch norm": tf.function(lambda v, m=model: m(v, training=False)),
             "folded": tf.function(lambda v, m=folded: m(v, training=False))}
    outputs = {name: fn(x).numpy() for name, fn in forms.items()}
    times = {name: [] for name in forms}
    for _ in range(_ROUNDS.value):
      for name, fn in forms.items():
        for _ in range(3):
          start = time.perf_counter()
          fn(x).numpy()
          times[name].append(time.perf_counter() - start)
    diff = np.abs(outputs["batch norm"] - outputs["folded"]).max()
    print(f"{backbone}: max |logit diff| {diff:.2e}; " + ", ".join(
        f"{name} {1e3 * statistics.median(t):.0f} ms" for name, t in times.items()),
          flush=True)


if __name__ == "__main__":
  app.run(main)
