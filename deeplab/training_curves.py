"""Training curves and per-class IoU of runs, as PNG files.

For each run folder, ``read_run`` reads ``train_log.jsonl``: the loss of
each loop call and, where the run evaluated (``--mode=train_and_eval``, or
``deeplab-eval`` on its checkpoints, whose ``eval/metrics-<step>.json``
files are matched to the log's minutes by step), the validation mIoU, both
against the wall-clock minutes of training; and the per-class IoU of the
run's last evaluation (``eval/metrics.json``). ``plot`` draws the curves
and the per-class IoU as grouped bars. Plotting needs matplotlib (``pip
install matplotlib``; ``make bench-peers`` installs it too), which the
library does not depend on. The tool is ``deeplab-plot-training``
(deeplab/cli/plot_training.py).
"""

import glob
import json
import os
from typing import Dict, List, Optional


def read_run(workdir: str) -> dict:
  """``{"loss": [(minutes, loss)], "miou": [(minutes, miou)], "classes":
  {name: iou}}`` of one run folder.

  Raises:
    FileNotFoundError: ``workdir`` has no training log.
  """
  path = os.path.join(workdir, "train_log.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: not a run folder (no training log)")
  records = [json.loads(line) for line in open(path) if line.strip()]
  loss = [(r["minutes"], r["loss"]) for r in records if "loss" in r]
  minutes_at = {r["step"]: r["minutes"] for r in records if "loss" in r}
  miou = {r["step"]: (r["minutes"], r["val_miou"])
          for r in records if "val_miou" in r}
  for name in glob.glob(os.path.join(workdir, "eval", "metrics-*.json")):
    metrics = json.load(open(name))
    if metrics["step"] in minutes_at and metrics["step"] not in miou:
      miou[metrics["step"]] = (minutes_at[metrics["step"]], metrics["miou"])
  latest = os.path.join(workdir, "eval", "metrics.json")
  classes = json.load(open(latest))["per_class_iou"] if os.path.exists(latest) else {}
  return {"loss": loss, "miou": [miou[s] for s in sorted(miou)],
          "classes": classes}


def plot(runs: Dict[str, dict], output: str,
         classes_output: Optional[str] = None) -> List[str]:
  """Draws the runs (``{label: read_run(workdir)}``): loss and validation
  mIoU against minutes into ``output``, and the per-class IoU of the runs
  that have one into ``classes_output``.

  Returns:
    The files written.

  Raises:
    ImportError: matplotlib is not installed.
  """
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("plotting training curves needs matplotlib: "
                      "pip install matplotlib") from e
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top

  figure, (loss_axes, miou_axes) = pyplot.subplots(1, 2, figsize=(11, 4))
  for label, run in runs.items():
    if run["loss"]:
      loss_axes.plot(*zip(*run["loss"]), label=label)
    if run["miou"]:
      miou_axes.plot(*zip(*run["miou"]), marker="o", label=label)
  loss_axes.set(xlabel="training minutes", ylabel="training loss",
                title="Loss")
  miou_axes.set(xlabel="training minutes", ylabel="mIoU (val)",
                title="Validation mIoU", ylim=(0, 1))
  for axes in (loss_axes, miou_axes):
    axes.grid(alpha=0.3)
    axes.legend()
  figure.tight_layout()
  figure.savefig(output, dpi=110)
  written = [output]

  with_classes = {label: run["classes"] for label, run in runs.items()
                  if run["classes"]}
  if with_classes and classes_output:
    names = list(next(iter(with_classes.values())))
    width = 0.8 / len(with_classes)
    figure, axes = pyplot.subplots(figsize=(11, 4))
    for i, (label, classes) in enumerate(with_classes.items()):
      axes.bar([c + i * width for c in range(len(names))],
               [classes.get(n) or 0.0 for n in names], width, label=label)
    axes.set_xticks([c + 0.4 - width / 2 for c in range(len(names))], names,
                    rotation=30, ha="right")
    axes.set(ylabel="IoU (val)", ylim=(0, 1), title="Per-class IoU, last evaluation")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(classes_output, dpi=110)
    written.append(classes_output)
  return written
