"""Peak memory of one training step per backbone, crop, batch and dtype.

Usage:
  python bench/train_memory.py                  # the grid, then the fit
  python bench/train_memory.py --backbones=mobilenet_v2 --crops=321,513
  python bench/train_memory.py --output_strides=8 --crops=321 --batches=1,4
  python bench/train_memory.py --graph_bytes --output_strides=16,8
  python bench/train_memory.py --fit_only --write_readme  # fit, tables into bench/README.md

Each setting runs in its own process (so peaks do not mix), chosen as
``train.py`` chooses its runtime (``deeplab.runtime``, job ``train``):
``deeplab.training.Trainer`` builds the model and its optimizer (slots
included) for the experiment config of the setting (PASCAL VOC's 21
classes, batch norm trained, dropout off, SGD with momentum), then its
training loop (``Trainer.make_train_loop``: forward, backward, weight decay,
optimizer update, as ``train.py`` runs it) runs one step on a fixed
batch. The process's resident memory after the build (the baseline:
Python, TensorFlow, the weights and optimizer slots, the batch) and its
peak resident memory during the step (``VmHWM`` of /proc/self/status,
reset after the build through /proc/self/clear_refs) are recorded; the
step's memory is the peak over the baseline. A parent process watches
each child's resident memory and stops it over ``--cap_gb`` (recorded
as such: the host is shared).

"mixed" is ``mixed_bfloat16`` here (a CPU; a GPU would train with
``mixed_float16``, whose activations take the same two bytes).

Settings already in ``--output`` are kept and skipped (a grid can be
finished in several runs); those recorded with an error (over the cap)
are kept, shown as not measured, and measured again. Writes ``--output`` (JSON: the CPU, the
records, the fit) and a markdown table beside it (``.md``). The fit, per
backbone, dtype and output stride: step memory = fixed + per_pixel *
batch * crop^2 (least squares), with its largest error on the measured
points; ``deeplab.training.memory.COEFFICIENTS`` holds its figures.
"""

import json
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

_BACKBONES = flags.DEFINE_list("backbones", ["mobilenet_v2", "resnet_101", "xception_65"],
                               "Backbones measured (DeepLabv3+ on each).")
_CROPS = flags.DEFINE_list("crops", ["321", "513", "769"], "Square crop sizes.")
_BATCHES = flags.DEFINE_list("batches", ["1", "4"], "Images per step.")
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "mixed_bfloat16"], "Dtype policies.")
_STRIDES = flags.DEFINE_list("output_strides", ["16"], "Output strides of training.")
_CAP = flags.DEFINE_float("cap_gb", 14.0, "A child over this resident memory (GiB) is stopped.")
_OUTPUT = flags.DEFINE_string("output", "bench/train_memory.json",
                              "JSON written here; the table beside it (.md).")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write the tables into bench/README.md.")
_FIT_ONLY = flags.DEFINE_bool("fit_only", False, "Only fit and tabulate --output.")
_GRAPH = flags.DEFINE_bool("graph_bytes", False, "Only the forward graphs' tensor bytes per "
                            "megapixel (--backbones, --dtypes, --output_strides), written "
                            "beside --output (_graph.json).")
_MEASURE = flags.DEFINE_string("measure", None, "(internal) BACKBONE,CROP,BATCH,DTYPE,OS: "
                               "measure one setting, print its JSON record.")

MIB = 2**20


def status_kib(field: str, pid: str = "self") -> int:
  """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM) in KiB."""
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise KeyError(field)


def make_config(backbone: str, crop: int, batch: int, dtype: str, output_stride: int):
  """The experiment config of one setting: the base config (PASCAL VOC,
  batch norm trained) with the setting's model and batch."""
  from deeplab import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config()
  config.model.backbone = backbone
  config.model.output_stride = output_stride
  config.model.dtype_policy = dtype
  config.model.dropout_rate = 0.0
  if backbone.startswith("resnet"):
    config.model.multi_grid = (1, 2, 4)
  config.data.crop_size = (crop, crop)
  config.train.batch_size = batch
  config.train.steps_per_loop = 1
  config_lib.validate(config)
  return config


def measure(backbone: str, crop: int, batch: int, dtype: str, output_stride: int) -> dict:
  """In this (fresh) process: builds the trainer, runs one step; returns
  the record (MiB)."""
  from deeplab import runtime  # pylint: disable=g-import-not-at-top
  runtime.apply("train")
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from deeplab.training import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  config = make_config(backbone, crop, batch, dtype, output_stride)
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (batch, crop, crop, 3)).astype(np.float32)
  labels = rng.integers(0, config.dataset.num_classes, (batch, crop, crop)).astype(np.int32)
  with tempfile.TemporaryDirectory() as workdir:
    trainer = trainer_lib.Trainer(config, workdir, tf.distribute.get_strategy())
    loop = trainer.make_train_loop(jit_compile=False)
    iterator = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
    variables = sum(v.numpy().nbytes for v in trainer.model.weights)
    slots = sum(v.numpy().nbytes for v in trainer.optimizer.variables)
    build_peak = status_kib("VmHWM") * 1024
    baseline = status_kib("VmRSS") * 1024
    try:  # Resets VmHWM to the current resident memory (Linux >= 4.0).
      pathlib.Path("/proc/self/clear_refs").write_text("5")
      reset = True
    except OSError:
      reset = False
    begin = time.perf_counter()
    loss = float(loop(iterator, tf.constant(1)))
    seconds = time.perf_counter() - begin
    peak = status_kib("VmHWM") * 1024
  return dict(backbone=backbone, crop=crop, batch=batch, dtype=dtype,
              output_stride=output_stride,
              parameters=int(sum(np.prod(v.shape) for v in trainer.model.trainable_weights)),
              variables_mb=round(variables / MIB), optimizer_mb=round(slots / MIB),
              baseline_mb=round(baseline / MIB), build_peak_mb=round(build_peak / MIB),
              peak_mb=round(peak / MIB), step_mb=round((peak - baseline) / MIB),
              peak_reset=reset, step_seconds=round(seconds, 1), loss_finite=bool(np.isfinite(loss)))


def graph_megapixel_bytes(backbone: str, dtype: str, output_stride: int) -> dict:
  """The model's weights and optimizer slots (MiB), and the MiB per input
  megapixel of the floating-point tensors the training forward graph
  computes (traced at two crops, not run): what the backward pass may keep,
  the measure that scales the fit to unmeasured settings."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from deeplab import tasks  # pylint: disable=g-import-not-at-top
  keras.backend.clear_session()
  config = make_config(backbone, 321, 1, dtype, output_stride)
  model = tasks.make_task(config).build_model()
  forward = tf.function(lambda x: model(x, training=True))
  totals = []
  for crop in (321, 513):
    graph = forward.get_concrete_function(tf.TensorSpec([1, crop, crop, 3])).graph
    total = 0
    for op in graph.get_operations():
      for tensor in op.outputs:
        if tensor.dtype.is_floating and tensor.shape.is_fully_defined():
          total += tensor.shape.num_elements() * tensor.dtype.size
    totals.append(total)
  weights = sum(v.numpy().nbytes for v in model.weights)
  slots = sum(v.numpy().nbytes for v in model.trainable_weights)  # Momentum.
  return dict(backbone=backbone, dtype=dtype, output_stride=output_stride,
              state_mb=round((weights + slots) / MIB),
              forward_mb_per_megapixel=round((totals[1] - totals[0]) / (
                  (513**2 - 321**2) / 1e6) / MIB, 1))


def run_child(setting, cap_bytes: float) -> dict:
  """Measures ``setting`` in a child process, stopped over ``cap_bytes``."""
  backbone, crop, batch, dtype, stride = setting
  command = [sys.executable, __file__, f"--measure={backbone},{crop},{batch},{dtype},{stride}"]
  child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  highest = 0
  while child.poll() is None:
    try:
      highest = max(highest, status_kib("VmRSS", str(child.pid)) * 1024)
    except (OSError, KeyError):
      pass
    if highest > cap_bytes:
      child.kill()
      child.wait()
      return dict(backbone=backbone, crop=crop, batch=batch, dtype=dtype, output_stride=stride,
                  error=f"over the {cap_bytes / 2**30:g} GiB cap", peak_mb=round(highest / MIB))
    time.sleep(0.1)
  out, err = child.communicate()
  lines = [line for line in out.splitlines() if line.startswith("{")]
  if child.returncode or not lines:
    return dict(backbone=backbone, crop=crop, batch=batch, dtype=dtype, output_stride=stride,
                error=f"exit {child.returncode}: {err.strip().splitlines()[-1:] or ''}")
  return json.loads(lines[-1])


def key(record) -> tuple:
  return (record["backbone"], record["crop"], record["batch"], record["dtype"],
          record["output_stride"])


def fit(records, graphs=()) -> list:
  """Per backbone, dtype and output stride: least squares of step_mb =
  fixed + per_pixel * batch * crop^2 over the measured records; a setting
  measured at fewer than two sizes is estimated from a measured one of the
  same dtype where one is (else the other), the same output stride where
  one is (its MiB per megapixel scaled by the two forward graphs' tensor
  bytes per megapixel, its fixed part by the difference of their weights
  and slots: a gradient and one more copy per weight; where the setting was
  measured at one size, its fixed part is then set to pass through it, and
  the error before is ``unanchored_error``)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  groups = {}
  for r in records:
    if "step_mb" in r:
      groups.setdefault((r["backbone"], r["dtype"], r["output_stride"]), []).append(r)
  fits = []
  for (backbone, dtype, stride), rows in sorted(groups.items()):
    pixels = np.array([r["batch"] * r["crop"] ** 2 for r in rows], float)
    step = np.array([r["step_mb"] for r in rows], float)
    if len(set(pixels)) < 2:
      continue
    design = np.stack([np.ones_like(pixels), pixels], 1)
    (fixed, per_pixel), *_ = np.linalg.lstsq(design, step, rcond=None)
    predicted = fixed + per_pixel * pixels
    errors = (predicted - step) / step
    fits.append(dict(
        backbone=backbone, dtype=dtype, output_stride=stride, points=len(rows),
        fixed_mb=round(float(fixed)), per_megapixel_mb=round(float(per_pixel) * 1e6, 1),
        state_mb=rows[0]["variables_mb"] + rows[0]["optimizer_mb"],
        max_error=round(float(np.max(np.abs(errors))), 3),
        max_error_mb=round(float(np.max(np.abs(predicted - step))))))
  graph = {(g["backbone"], g["dtype"], g["output_stride"]): g for g in graphs}
  measured = {(f["backbone"], f["dtype"], f["output_stride"]): f for f in fits}
  for (backbone, dtype, stride), g in sorted(graph.items()):
    if (backbone, dtype, stride) in measured:
      continue
    references = [f for k, f in measured.items() if k in graph]
    if not references:
      continue
    ref = min(references, key=lambda f: (f["dtype"] != dtype, f["output_stride"] != stride,
                                         f["backbone"] != backbone, f["backbone"]))
    ref_graph = graph[(ref["backbone"], ref["dtype"], ref["output_stride"])]
    scale = g["forward_mb_per_megapixel"] / ref_graph["forward_mb_per_megapixel"]
    estimate = dict(
        backbone=backbone, dtype=dtype, output_stride=stride, points=0,
        fixed_mb=round(ref["fixed_mb"] + g["state_mb"] - ref_graph["state_mb"]),
        per_megapixel_mb=round(ref["per_megapixel_mb"] * scale, 1), state_mb=g["state_mb"],
        estimated_from=f"{ref['backbone']} OS {ref['output_stride']} {ref['dtype']}")
    rows = groups.get((backbone, dtype, stride), [])
    if rows:  # A single measured size checks the estimate, then anchors its fixed part.
      per_pixel = estimate["per_megapixel_mb"] / 1e6
      errors = [(estimate["fixed_mb"] + per_pixel * r["batch"] * r["crop"]**2 - r["step_mb"])
                / r["step_mb"] for r in rows]
      estimate.update(points=len(rows), unanchored_error=round(max(errors, key=abs), 3),
                      fixed_mb=round(sum(r["step_mb"] - per_pixel * r["batch"] * r["crop"]**2
                                         for r in rows) / len(rows)), max_error=0.0)
    fits.append(estimate)
  return fits


def estimate_check(records, graphs) -> list:
  """Each backbone measured at two sizes or more, estimated as if it were
  not (from another measured backbone): the estimate's largest error on
  its measured points."""
  checks = []
  fits = fit(records, graphs)
  for f in fits:
    if "estimated_from" in f or not f["points"]:
      continue
    group = (f["backbone"], f["dtype"], f["output_stride"])
    own = [r for r in records if "step_mb" in r and key(r)[:1] + key(r)[3:] == group]
    others = [r for r in records if r not in own]
    for e in fit(others, graphs):
      if (e["backbone"], e["dtype"], e["output_stride"]) == (
          f["backbone"], f["dtype"], f["output_stride"]) and "estimated_from" in e:
        errors = [(e["fixed_mb"] + e["per_megapixel_mb"] * r["batch"] * r["crop"]**2 / 1e6
                   - r["step_mb"]) / r["step_mb"] for r in own]
        checks.append(dict(backbone=f["backbone"], dtype=f["dtype"],
                           output_stride=f["output_stride"], estimated_from=e["estimated_from"],
                           max_error=round(max(map(abs, errors)), 3)))
  return checks


def coefficients_source(fits) -> str:
  """``deeplab.training.memory.COEFFICIENTS`` as Python source."""
  from deeplab.training import memory as memory_lib  # pylint: disable=g-import-not-at-top
  lines = ["COEFFICIENTS = {"]
  for f in sorted(fits, key=lambda f: (f["backbone"], f["dtype"], f["output_stride"])):
    note = f"  # Estimated from {f['estimated_from']}." if "estimated_from" in f else ""
    lines.append(f"    ({f['backbone']!r}, {memory_lib.precision(f['dtype'])!r}, {f['output_stride']}): Coefficients("
                 f"{f['state_mb']}, {f['fixed_mb']}, {f['per_megapixel_mb']}),{note}")
  return "\n".join(lines + ["}"]) + "\n"


def table(report) -> str:
  """The records and the fit as markdown tables."""
  lines = [f"#### {report['cpu']}, TensorFlow {report['tensorflow']}", "",
           "| backbone | OS | crop | batch | dtype | baseline (MiB) | step peak over "
           "baseline (MiB) | weights + slots (MiB) | wall time of the step (first call, tracing "
           "included, shared host) (s) |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in sorted(report["settings"], key=key):
    step = r["step_mb"] if "step_mb" in r else f"not measured: {r['error']}" + (
        f" ({r['peak_mb']} MiB resident)" if "peak_mb" in r else "")
    lines.append(f"| {r['backbone']} | {r['output_stride']} | {r['crop']} | {r['batch']} | "
                 f"{r['dtype']} | {r.get('baseline_mb', '')} | {step} | "
                 f"{r['variables_mb'] + r['optimizer_mb'] if 'variables_mb' in r else ''} | "
                 f"{r.get('step_seconds', '')} |")
  lines += ["", "Fit: step peak over baseline = fixed + per-pixel x batch x crop^2 "
            "(estimated: scaled from a measured backbone by the forward graphs)", "",
            "| backbone | OS | dtype | measured points | fixed (MiB) | MiB per megapixel | "
            "weights + slots (MiB) | largest error on the measured points |",
            "|---|---|---|---|---|---|---|---|"]
  for f in report["fit"]:
    error = (f"{f['max_error']:.1%}" if "max_error" in f else "")
    if "max_error_mb" in f:
      error += f" ({f['max_error_mb']} MiB)"
    source = f" (estimated from {f['estimated_from']})" if "estimated_from" in f else ""
    if "unanchored_error" in f:
      error = f"fixed set by the point; before: {f['unanchored_error']:+.1%}"
    lines.append(f"| {f['backbone']} | {f['output_stride']} | {f['dtype']}{source} | "
                 f"{f['points']} | {f['fixed_mb']} | {f['per_megapixel_mb']} | "
                 f"{f['state_mb']} | {error} |")
  if report.get("estimate_check"):
    lines += ["", "The estimate checked: a measured backbone estimated as if it were not", "",
              "| backbone | OS | dtype | estimated from | largest error |", "|---|---|---|---|---|"]
    for c in report["estimate_check"]:
      lines.append(f"| {c['backbone']} | {c['output_stride']} | {c['dtype']} | "
                   f"{c['estimated_from']} | {c['max_error']:.1%} |")
  lines += ["", "Forward graph tensors (MiB per megapixel, traced, not run: the "
            "scale of unmeasured settings)", "", "| backbone | OS | dtype | MiB per megapixel |",
            "|---|---|---|---|"]
  for g in report.get("graph_bytes", []):
    lines.append(f"| {g['backbone']} | {g['output_stride']} | {g['dtype']} | "
                 f"{g['forward_mb_per_megapixel']} |")
  lines += ["", "deeplab.training.memory.COEFFICIENTS of this fit:", "", "```python",
            coefficients_source(report["fit"]).rstrip(), "```"]
  lines += ["", "Predicted for one GPU by deeplab.training.memory (fits: at most "
            "90% of the memory; GB read as GiB)", "", gpu_table()]
  return "\n".join(lines) + "\n"


# The paper's settings: (what, backbone, crop, batch per GPU, output stride).
PAPER = (("PASCAL VOC recipe", "xception_65", 513, 16, 16),
         ("PASCAL VOC, output stride 8", "xception_65", 513, 16, 8),
         ("Cityscapes", "xception_65", 769, 8, 16),
         ("Cityscapes, output stride 8", "xception_65", 769, 8, 8),
         ("ResNet-101 at the recipe's batch", "resnet_101", 513, 16, 16),
         ("MobileNetV2 at the recipe's batch", "mobilenet_v2", 513, 16, 16))
GPUS_GB = (16, 24, 40, 80)


def gpu_table() -> str:
  """What ``deeplab.training.memory`` predicts for the paper's settings on
  one GPU of each size: fits, or the accumulation_steps that keep the batch
  (micro-batches of batch / steps images), or no."""
  from deeplab.training import memory as memory_lib  # pylint: disable=g-import-not-at-top
  lines = ["| setting | backbone, crop, batch, OS | dtype | predicted (GiB) | "
           + " | ".join(f"{gb} GB" for gb in GPUS_GB) + " |",
           "|---|---|---|---|" + "---|" * len(GPUS_GB)]
  for what, backbone, crop, batch, stride in PAPER:
    for dtype in ("float32", "mixed_float16"):
      predicted = memory_lib.predict_mb(backbone, (crop, crop), batch, dtype, stride)
      if predicted is None:
        continue
      cells = []
      for gb in GPUS_GB:
        budget = memory_lib.HEADROOM * gb * 1024
        steps = next((k for k in range(1, batch + 1) if batch % k == 0 and memory_lib.predict_mb(
            backbone, (crop, crop), batch // k, dtype, stride) <= budget), None)
        cells.append("fits" if steps == 1 else f"accumulation_steps={steps}" if steps
                     else "no")
      lines.append(f"| {what} | {backbone}, {crop}, {batch}, {stride} | {dtype} | "
                   f"{predicted / 1024:.1f} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write(path: pathlib.Path, records, graphs=()):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from deeplab import runtime  # pylint: disable=g-import-not-at-top
  cpu = runtime.this_cpu()
  report = {"cpu": f"CPU: {cpu.model} ({cpu.isa()}), {cpu.cores} cores",
            "tensorflow": tf.__version__, "mixed": "mixed_bfloat16",
            "memory": "peak resident memory (VmHWM) over the resident memory after the build",
            "settings": sorted(records, key=key), "fit": fit(records, graphs),
            "estimate_check": estimate_check(records, graphs),
            "graph_bytes": list(graphs)}
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(report, indent=1) + "\n")
  path.with_suffix(".md").write_text(table(report))
  return report


def main(argv):
  del argv
  if _MEASURE.value:
    backbone, crop, batch, dtype, stride = _MEASURE.value.split(",")
    print(json.dumps(measure(backbone, int(crop), int(batch), dtype, int(stride))), flush=True)
    return
  path = pathlib.Path(_OUTPUT.value)
  records = json.loads(path.read_text())["settings"] if path.exists() else []
  graph_path = path.with_name(path.stem + "_graph.json")
  graphs = json.loads(graph_path.read_text()) if graph_path.exists() else []
  if _GRAPH.value:
    graphs = [g for g in graphs if (g["backbone"] not in _BACKBONES.value
                                    or g["dtype"] not in _DTYPES.value
                                    or str(g["output_stride"]) not in _STRIDES.value)]
    for stride in map(int, _STRIDES.value):
      for backbone in _BACKBONES.value:
        for dtype in _DTYPES.value:
          graphs.append(graph_megapixel_bytes(backbone, dtype, stride))
          print(json.dumps(graphs[-1]), flush=True)
    graph_path.write_text(json.dumps(graphs, indent=1) + "\n")
    return
  # Records of settings that failed (over the cap) stay until a rerun
  # measures them again.
  done = {key(r) for r in records if "error" not in r}
  if not _FIT_ONLY.value:
    # Cheapest first: what a time box leaves out is the largest settings.
    grid = sorted(((b, c, n, d, s) for s in map(int, _STRIDES.value) for b in _BACKBONES.value
                   for c in map(int, _CROPS.value) for n in map(int, _BATCHES.value)
                   for d in _DTYPES.value),
                  key=lambda x: (x[2] * x[1] ** 2 * 16 / x[4], _BACKBONES.value.index(x[0])))
    for setting in grid:
      if setting in done:
        continue
      record = run_child(setting, _CAP.value * 2**30)
      print(json.dumps(record), flush=True)
      records = [r for r in records if key(r) != setting] + [record]
      write(path, records, graphs)
  text = table(write(path, records, graphs))
  print(text)
  if _WRITE.value:
    from bench import common  # pylint: disable=g-import-not-at-top
    common.write_cpu_section("train_memory", text.split("\n", 2)[2].strip())


if __name__ == "__main__":
  app.run(main)
