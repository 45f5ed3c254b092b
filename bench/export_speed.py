"""Latency of the exported model beside the Keras model it came from.

Usage: python bench/export_speed.py [--backbones=mobilenet_v2,xception_65]
    [--write_readme]

For each backbone (DeepLabv3+, OS 16, separable ASPP 6,12,18 + decoder, 21
classes, random weights with random batch norm statistics), batch 1 at
513x513, median of alternating rounds:
- Keras: the trained form (batch norm layers) in a tf.function, logits;
- SavedModel: ``serving_default`` of ``export.savedmodel.export_saved_model``
  (BN-folded; uint8 in, labels and probabilities out), loaded back;
- TFLite: ``export.tflite.export_tflite`` float32, the TFLite interpreter with
  one thread per core.
"""

import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import common  # noqa: E402
from deeplab import weights  # noqa: E402
from deeplab.data import dataset_table  # noqa: E402
from deeplab.export import savedmodel  # noqa: E402
from deeplab.export import tflite  # noqa: E402

_BACKBONES = flags.DEFINE_list("backbones", ["mobilenet_v2", "xception_65"],
                               "Backbones to measure.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds of 3 runs.")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write into bench/README.md.")

SIZE = 513


def measure(backbone, folder):
  rng = np.random.default_rng(0)
  model = common.randomize_batch_norm(common.deeplab_v3_plus(backbone), rng)
  image = rng.integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.uint8)
  saved = os.path.join(folder, backbone)
  savedmodel.export_saved_model(model, dataset_table.get("pascal_voc_seg"), saved)
  serve = tf.saved_model.load(saved).signatures["serving_default"]
  lite = os.path.join(folder, backbone + ".tflite")
  tflite.export_tflite(model, lite, SIZE, SIZE)
  interpreter = weights.tflite_interpreter(lite, num_threads=os.cpu_count())
  interpreter.allocate_tensors()
  source = interpreter.get_input_details()[0]["index"]
  target = interpreter.get_output_details()[0]["index"]
  keras_forward = tf.function(lambda x: model(x, training=False))
  normalized = tf.constant(image.astype(np.float32) / 127.5 - 1)

  def run_lite():
    interpreter.set_tensor(source, image.astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(target)

  forms = {"Keras (batch norm)": lambda: keras_forward(normalized).numpy(),
           "SavedModel (folded)": lambda: serve(images=tf.constant(image))["labels"].numpy(),
           "TFLite float32": run_lite}
  for fn in forms.values():  # warm-up
    fn()
    fn()
  times = {name: [] for name in forms}
  for _ in range(_ROUNDS.value):
    for name, fn in forms.items():
      for _ in range(3):
        start = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - start)
  return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main(argv):
  del argv
  lines = ["| backbone | Keras, batch norm (ms) | SavedModel, folded (ms) | TFLite float32 (ms) |",
           "|---|---:|---:|---:|"]
  with tempfile.TemporaryDirectory() as folder:
    for backbone in _BACKBONES.value:
      ms = measure(backbone, folder)
      lines.append(f"| {backbone} | " + " | ".join(f"{v:.0f}" for v in ms.values()) + " |")
      print(lines[-1], flush=True)
  text = "\n".join(lines)
  common.report("export_speed", text, _WRITE.value)


if __name__ == "__main__":
  app.run(main)
