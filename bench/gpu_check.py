"""The training step on whatever device this process finds: speed, memory,
a falling loss, and the SavedModel exported and reloaded there.

Usage:
  python bench/gpu_check.py              # the full check: GPUs, else a CPU
  python bench/gpu_check.py --smoke      # the tiny setting (the test suite's)

For each backbone (MobileNetV2, Xception-65: DeepLabv3+ at output stride 16,
21 classes), precision (float32, mixed_float16, mixed_bfloat16) and XLA off
and on, it trains ``--steps`` updates of ``deeplab.training.Trainer``'s
step (the one ``train.py`` runs: its loss, weight decay, loss scaling,
``config.train.jit_compile``) on one fixed synthetic batch, under
MirroredStrategy when there are several GPUs, and records images/s (after
the first loop, which traces and compiles), the peak device memory of the
setting (``tf.config.experimental.get_memory_info``; on a CPU the peak
resident memory over the process's memory before the setting, sampled),
whether the loss stayed finite and fell, and, once per backbone (float32,
no XLA), whether its SavedModel exports and reloads on the device and
serves the labels the model predicts. A setting that runs out of memory is
recorded as such. On a CPU, or with ``--smoke``, the tiny setting runs:
MobileNetV2 x0.25 at 65x65 crops, float32 and mixed_bfloat16, XLA off and
on, a few steps.

Writes ``--output`` (JSON: the device, then one record per setting) and
the same rows as a markdown table beside it (``.md``).
"""

import json
import os
import pathlib
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

_SMOKE = flags.DEFINE_bool("smoke", False, "The tiny setting (what a CPU runs).")
_STEPS = flags.DEFINE_integer("steps", 0, "Updates per setting (0: 30, smoke: 4).")
_BATCH = flags.DEFINE_integer(
    "batch_size", 0, "Images per replica (0: 8 for MobileNetV2, 4 for "
    "Xception-65; smoke: 2).")
_BACKBONES = flags.DEFINE_list("backbones", [], "Subset of backbones (default: all).")
_OUTPUT = flags.DEFINE_string("output", "bench/gpu_check.json",
                              "JSON written here; the table beside it (.md).")

FULL = dict(backbones={"mobilenet_v2": dict(depth_multiplier=1.0, batch=8),
                       "xception_65": dict(depth_multiplier=1.0, batch=4)},
            crop=513, steps=30,
            precisions=("float32", "mixed_float16", "mixed_bfloat16"))
SMOKE = dict(backbones={"mobilenet_v2": dict(depth_multiplier=0.25, batch=2)},
             crop=65, steps=4, precisions=("float32", "mixed_bfloat16"))
STEPS_PER_LOOP = 2


class PeakMemory:
  """Peak memory of a stretch of code: the device's own counter
  (``get_memory_info``, GPUs and TPUs), else the process's resident memory
  sampled every 5 ms, over its value at ``start`` (bytes)."""

  def __init__(self, device: str):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.tf, self.device = tf, device
    self.on_device = device != "CPU:0"
    self._stop = threading.Event()
    self._thread = None
    self._baseline = self._peak = 0
    self.process_peak = 0  # Bytes: the CPU's peak resident memory, absolute.

  @staticmethod
  def resident() -> int:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

  def _sample(self):
    while not self._stop.wait(0.005):
      self._peak = max(self._peak, self.resident())

  def start(self):
    if self.on_device:
      self.tf.config.experimental.reset_memory_stats(self.device)
      self._baseline = self.tf.config.experimental.get_memory_info(self.device)["current"]
      return
    self._baseline = self._peak = self.resident()
    self._stop.clear()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()

  def stop(self) -> int:
    """Bytes over the memory at ``start``."""
    if self.on_device:
      return self.tf.config.experimental.get_memory_info(self.device)["peak"] - self._baseline
    self._stop.set()
    self._thread.join()
    self.process_peak = self._peak
    return self._peak - self._baseline

  @property
  def kind(self) -> str:
    return "device peak" if self.on_device else "resident peak over baseline"


def device_description():
  """``(name, memory device, gpus)`` of what TensorFlow sees."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus:
    from bench import common  # pylint: disable=g-import-not-at-top
    return f"CPU: {common.cpu_model()}", "CPU:0", 0
  details = tf.config.experimental.get_device_details(gpus[0])
  name = details.get("device_name", "GPU")
  capability = details.get("compute_capability")
  if capability:
    name += f" (compute capability {capability[0]}.{capability[1]})"
  return f"{len(gpus)} x {name}", "GPU:0", len(gpus)


def make_config(backbone: str, depth_multiplier: float, crop: int,
                batch_size: int, precision: str, xla: bool, replicas: int = 1):
  """The experiment config of one setting (PASCAL VOC's 21 classes);
  ``batch_size`` is the global batch of ``replicas``."""
  del replicas
  from deeplab import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config()
  config.model.backbone = backbone
  config.model.depth_multiplier = depth_multiplier
  config.model.dtype_policy = precision
  config.data.crop_size = (crop, crop)
  config.train.batch_size = batch_size
  config.train.jit_compile = xla
  config.train.steps_per_loop = STEPS_PER_LOOP
  config.model.dropout_rate = 0.0
  config_lib.validate(config)
  return config


def fixed_batch(batch_size: int, crop: int, num_classes: int, seed: int = 0):
  """A learnable batch: cells of 1/8 of the crop, each a class, drawn in
  that class's colour plus noise."""
  rng = np.random.default_rng(seed)
  cells = rng.integers(0, num_classes, (batch_size, 8, 8))
  step = -(-crop // 8)
  labels = np.repeat(np.repeat(cells, step, 1), step, 2)[:, :crop, :crop]
  colours = rng.uniform(-1, 1, (num_classes, 3))
  images = colours[labels] + rng.normal(0, 0.2, labels.shape + (3,))
  return images.astype(np.float32), labels.astype(np.int32)


def run_setting(setting, strategy, memory: PeakMemory, workdir: str,
                export: bool):
  """Trains one setting; returns its record."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from deeplab.training import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  record = {k: setting[k] for k in ("backbone", "depth_multiplier", "crop",
                                    "precision", "xla")}
  record.update(batch_size=setting["batch_size"] * strategy.num_replicas_in_sync,
                replicas=strategy.num_replicas_in_sync)
  keras.backend.clear_session()
  config = make_config(**record)
  images, labels = fixed_batch(config.train.batch_size, setting["crop"],
                               config.dataset.num_classes)
  dataset = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors((images, labels)).repeat())
  memory.start()
  try:
    trainer = trainer_lib.Trainer(config, workdir, strategy)
    loop = trainer.make_train_loop()
    iterator = iter(dataset)
    losses = [float(loop(iterator, tf.constant(STEPS_PER_LOOP)))]  # Compiles.
    loops = max(1, setting["steps"] // STEPS_PER_LOOP - 1)
    begin = time.perf_counter()
    for _ in range(loops):
      losses.append(float(loop(iterator, tf.constant(STEPS_PER_LOOP))))
    elapsed = time.perf_counter() - begin
  except tf.errors.ResourceExhaustedError as e:
    record.update(error="out of memory", detail=str(e).splitlines()[0][:300],
                  peak_memory_mb=round(memory.stop() / 2**20))
    return record
  record.update(
      images_per_second=round(loops * STEPS_PER_LOOP * config.train.batch_size / elapsed, 2),
      peak_memory_mb=round(memory.stop() / 2**20),
      losses=[round(x, 4) for x in losses],
      loss_finite=bool(np.all(np.isfinite(losses))),
      loss_falls=bool(losses[-1] < losses[0]))
  if not memory.on_device:  # Memory freed by the setting before is reused.
    record["process_peak_mb"] = round(memory.process_peak / 2**20)
  if export:
    record["export"] = check_export(trainer.model, images[:1], workdir)
  return record


def check_export(model, image, workdir: str) -> dict:
  """Exports ``model`` as a SavedModel, reloads it on this device and
  compares its labels with the model's own prediction."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from deeplab import inference  # pylint: disable=g-import-not-at-top
  from deeplab.data import dataset_table  # pylint: disable=g-import-not-at-top
  from deeplab.export import savedmodel  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, "saved_model")
  try:
    savedmodel.export_saved_model(model, dataset_table.DATASETS["pascal_voc_seg"], path)
    served = tf.saved_model.load(path).signatures["serving_default"]
    pixels = np.clip((image + 1.0) * 127.5, 0, 255).astype(np.uint8)
    got = served(images=tf.constant(pixels))["labels"].numpy()
    expected = tf.argmax(inference.predict_probabilities(
        model, tf.constant(pixels.astype(np.float32) / 127.5 - 1.0)), -1).numpy()
  except Exception as e:  # pylint: disable=broad-except
    return {"ok": False, "error": f"{type(e).__name__}: {str(e)[:300]}"}
  agreement = float(np.mean(got == expected))
  return {"ok": agreement > 0.99, "label_agreement": round(agreement, 4)}


def settings(plan, batch_override: int, steps_override: int, backbones):
  for backbone, spec in plan["backbones"].items():
    if backbones and backbone not in backbones:
      continue
    for precision in plan["precisions"]:
      for xla in (False, True):
        yield dict(backbone=backbone, depth_multiplier=spec["depth_multiplier"],
                   crop=plan["crop"], batch_size=batch_override or spec["batch"],
                   steps=steps_override or plan["steps"], precision=precision,
                   xla=xla)


def check(smoke: bool = False, steps: int = 0, batch_size: int = 0,
          backbones=(), output: str = "bench/gpu_check.json") -> dict:
  """Runs every setting; writes ``output`` and its table; returns the
  report."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  name, memory_device, gpus = device_description()
  plan = SMOKE if smoke or not gpus else FULL
  strategy = (tf.distribute.MirroredStrategy() if gpus > 1
              else tf.distribute.get_strategy())
  memory = PeakMemory(memory_device)
  rows, exported = [], set()
  for setting in settings(plan, batch_size, steps, backbones):
    with tempfile.TemporaryDirectory() as workdir:
      export = (setting["precision"] == "float32" and not setting["xla"]
                and setting["backbone"] not in exported)
      if export:
        exported.add(setting["backbone"])
      row = run_setting(setting, strategy, memory, workdir, export)
    print(json.dumps(row), flush=True)
    rows.append(row)
  report = {"device": name, "tensorflow": tf.__version__,
            "strategy": type(strategy).__name__, "memory": memory.kind,
            "smoke": plan is SMOKE, "settings": rows}
  path = pathlib.Path(output)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=1) + "\n")
  path.with_suffix(".md").write_text(table(report))
  return report


def table(report) -> str:
  """The report as a markdown table, under a line naming the device."""
  lines = [f"#### {report['device']}, TensorFlow {report['tensorflow']}, "
           f"{report['strategy']}; memory: {report['memory']}", "",
           "| backbone | crop | batch | precision | XLA | images/s | peak memory (MiB) "
           "| loss finite, falling | SavedModel |", "|---|---|---|---|---|---|---|---|---|"]
  for r in report["settings"]:
    name = r["backbone"] + (f" x{r['depth_multiplier']}" if r["depth_multiplier"] != 1.0 else "")
    speed = r.get("images_per_second", r.get("error", ""))
    loss = (f"{'yes' if r['loss_finite'] else 'NO'}, {'yes' if r['loss_falls'] else 'NO'}"
            if "loss_finite" in r else "")
    export = r.get("export")
    export = "" if export is None else ("reloaded, same labels" if export["ok"]
                                        else f"FAILED {export.get('error', export)}")
    lines.append(f"| {name} | {r['crop']} | {r['batch_size']} | {r['precision']} | "
                 f"{'on' if r['xla'] else 'off'} | {speed} | {r.get('peak_memory_mb', '')} | "
                 f"{loss} | {export} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  report = check(_SMOKE.value, _STEPS.value, _BATCH.value, _BACKBONES.value,
                 _OUTPUT.value)
  print(table(report))
  failed = [r for r in report["settings"] if "error" in r or not r["loss_finite"]
            or (r.get("export") and not r["export"]["ok"])]
  if failed:
    print(f"{len(failed)} setting(s) failed", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
