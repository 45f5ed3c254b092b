"""A run folder: its resolved config, its checkpoints, and what may change.

Training (or ``deeplab.convert``) writes ``W/config.json``, the resolved
experiment config, and numbered checkpoints in ``W/checkpoints``. Every
later tool (evaluation, export, prediction, a resumed run, a run
initialized from this one) reads the config from here instead of
re-deriving it from a ``.py`` file, and may change any field except those
that decide the model's weights (``ModelArgs.weight_signature``): such a
change is refused with the field named.

A ``config.json`` whose ``train`` section holds every training field
(``train.optimizer``, ``train.base_learning_rate``, ...) is read too: each
such field is moved to its section (``FLAT_TRAIN_KEYS``).

Layout:
  W/config.json          the resolved config (``write_config``)
  W/checkpoints/ckpt-N   checkpoints numbered by training step; the
                         ``checkpoint`` file beside them lists the complete
                         ones (a save killed midway is not listed)
  W/checkpoints/best/    ``train_and_eval``'s best checkpoint so far (by its
                         task's main metric), never rotated away, and
                         ``best.json``: its path, step, metric and value
  W/train_log.jsonl      one JSON record per logged training step
  W/train/, W/eval/      TensorBoard summaries; W/eval/metrics.json
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

import ml_collections
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import model as model_lib
from deeplab.model_args import ModelArgs

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
BEST_FILE = "best.json"
LOG_FILE = "train_log.jsonl"

# Keys of a flat ``train`` section, and the config keys holding their values.
FLAT_TRAIN_KEYS = {
    "optimizer": "optimizer.name",
    "momentum": "optimizer.momentum",
    "nesterov": "optimizer.nesterov",
    "adam_beta1": "optimizer.adam_beta1",
    "adam_beta2": "optimizer.adam_beta2",
    "adam_epsilon": "optimizer.adam_epsilon",
    "weight_decay": "optimizer.weight_decay",
    "clip_global_norm": "optimizer.clip_global_norm",
    "last_layer_gradient_multiplier": "optimizer.last_layer_gradient_multiplier",
    "schedule": "schedule.name",
    "base_learning_rate": "schedule.base_learning_rate",
    "end_learning_rate": "schedule.end_learning_rate",
    "learning_power": "schedule.learning_power",
    "warmup_steps": "schedule.warmup_steps",
    "warmup_learning_rate": "schedule.warmup_learning_rate",
    "warmup_type": "schedule.warmup_type",
    "decay_rate": "schedule.decay_rate",
    "decay_epochs": "schedule.decay_epochs",
    "epoch_examples": "schedule.epoch_examples",
    "class_weights": "loss.class_weights",
    "top_k_percent_pixels": "loss.top_k_percent_pixels",
    "hard_example_mining_step": "loss.hard_example_mining_step",
    "lovasz_weight": "loss.lovasz_weight",
    "lovasz_pixel_stride": "loss.lovasz_pixel_stride",
    "init_checkpoint": "init.checkpoint",
    "initialize_last_layer": "init.initialize_last_layer",
    "last_layers_contain_logits_only": "init.last_layers_contain_logits_only",
    "checkpoint_every": "checkpoint.every",
    "keep_checkpoints": "checkpoint.keep",
    "max_minutes": "budget.max_minutes",
    "strategy": "distribution.strategy",
    "tpu": "distribution.tpu",
}


class CheckpointWriteError(OSError):
  """A checkpoint could not be written (full disk, lost permission...)."""


def prepare(workdir: str) -> str:
  """Creates ``workdir`` and checks that files can be written in it.

  Raises:
    ValueError: an empty path, or a path that is a file.
    PermissionError: the folder cannot be created or written (read-only,
      full, no permission), before any training that would be lost.
  """
  if not workdir:
    raise ValueError("--workdir is required")
  if tf.io.gfile.exists(workdir) and not tf.io.gfile.isdir(workdir):
    raise ValueError(f"--workdir={workdir!r} is a file, not a folder")
  # A probe file per process: workers of one job share the folder.
  probe = os.path.join(workdir, f".write-probe-{socket.gethostname()}-{os.getpid()}")
  try:
    tf.io.gfile.makedirs(workdir)
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("deeplab")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    reason = getattr(e, "message", None) or str(e)
    raise PermissionError(
        f"--workdir={workdir!r} cannot be written ({reason}): checkpoints "
        "could not be saved there. Give a writable folder, or free space "
        "in this one.") from None
  return workdir


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_FILE)


def has_config(workdir: str) -> bool:
  return bool(workdir) and tf.io.gfile.exists(config_path(workdir))


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run wrote, as a locked, typed config tree.

  Raises:
    FileNotFoundError: ``workdir`` holds no ``config.json``.
    ValueError: the file is not JSON or has a field the config tree lacks
      (the message names the file and the field).
  """
  path = config_path(workdir)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} does not exist: {workdir!r} is not a "
                            "run folder (train.py or deeplab.convert writes it)")
  with tf.io.gfile.GFile(path) as f:
    try:
      values = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON: {e}") from None
  try:
    return config_lib.from_dict(sectioned(values))
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None


def sectioned(values: Dict[str, Any]) -> Dict[str, Any]:
  """``values`` (a ``config.json``'s) with every key of a flat ``train``
  section moved to the section ``FLAT_TRAIN_KEYS`` names; other keys, known
  or not, stay where they are."""
  values = {name: dict(section) if isinstance(section, dict) else section
            for name, section in values.items()}
  train = values.get("train")
  if not isinstance(train, dict):
    return values
  for key in [k for k in train if k in FLAT_TRAIN_KEYS]:
    section, name = FLAT_TRAIN_KEYS[key].split(".")
    values.setdefault(section, {})[name] = train.pop(key)
  return values


def check_architecture(config, saved, where: str) -> None:
  """Raises ValueError naming every field where ``config`` describes other
  weights than ``saved`` (the config of the run in ``where``)."""
  differences = ModelArgs.from_experiment(config).differences(
      ModelArgs.from_experiment(saved))
  if differences:
    raise ValueError(
        "the config does not describe the model of the run in "
        f"{where} (its weights would not fit): " + "; ".join(
            f"config.{ModelArgs.config_key(name)}={ours!r} (the run has "
            f"{theirs!r})" for name, (ours, theirs) in differences.items()))


def write_config(config, workdir: str) -> None:
  """Writes the resolved config to ``workdir/config.json``.

  Raises:
    ValueError: the workdir holds a run whose weights the config does not
      describe (``check_architecture``).
  """
  if has_config(workdir):
    check_architecture(config, read_config(workdir), workdir)
  with tf.io.gfile.GFile(config_path(workdir), "w") as f:
    json.dump(json.loads(config.to_json()), f, indent=2, sort_keys=True)


def config_with_changes(workdir: str,
                        changes: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """The run's config with ``changes`` (``{"eval.flip": True, ...}``) applied.

  Raises:
    ValueError: a change names no config field, has the wrong type, breaks
      a rule, or would change the model's weights; the message names it.
  """
  saved = read_config(workdir)
  config = config_lib.from_dict(saved.to_dict())
  for path, value in changes.items():
    config_lib.set_field(config, path, value)
  check_architecture(config, saved, workdir)
  config_lib.validate(config)
  return config


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, CHECKPOINT_DIR)


def latest_checkpoint(workdir: str) -> Optional[str]:
  """The newest checkpoint prefix of the run, or None."""
  return tf.train.latest_checkpoint(checkpoint_dir(workdir))


def checkpoints_newest_first(workdir: str) -> List[str]:
  """The run's complete checkpoints (those the ``checkpoint`` file lists:
  a save killed midway is not), newest step first."""
  state = tf.train.get_checkpoint_state(checkpoint_dir(workdir))
  if state is None:
    return []
  paths = list(state.all_model_checkpoint_paths)
  if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
    paths.append(state.model_checkpoint_path)
  directory = checkpoint_dir(workdir)
  paths = [p if os.path.isabs(p) or "://" in p else os.path.join(directory, p)
           for p in paths]
  return sorted(set(paths), key=checkpoint_step, reverse=True)


def forget_checkpoints(workdir: str, damaged: List[str]) -> Optional[str]:
  """Drops ``damaged`` checkpoints from the run's ``checkpoint`` file, so
  the newest intact one becomes the latest for every tool (their files
  stay, for inspection; the next save of their step replaces them).
  Returns the new latest, or None."""
  kept = [p for p in checkpoints_newest_first(workdir) if p not in damaged]
  latest = kept[0] if kept else None
  if latest:
    tf.compat.v1.train.update_checkpoint_state(
        checkpoint_dir(workdir), latest,
        all_model_checkpoint_paths=list(reversed(kept)))
  return latest


def checkpoint_step(path: str) -> int:
  """The training step of a checkpoint prefix (``.../ckpt-<step>``)."""
  try:
    return int(path.rsplit("-", 1)[1])
  except (IndexError, ValueError):
    raise ValueError(f"{path!r} is not a checkpoint prefix ending in "
                     "-<step>") from None


def best_dir(workdir: str) -> str:
  return os.path.join(checkpoint_dir(workdir), BEST_DIR)


def read_best(workdir: str) -> Optional[Dict[str, Any]]:
  """The run's best checkpoint as ``best.json`` records it (``{"path",
  "step", "metric", "value"}``, the path absolute), or None: no evaluation
  during training kept one."""
  path = os.path.join(best_dir(workdir), BEST_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    best = json.load(f)
  best["path"] = os.path.join(best_dir(workdir), best["path"])
  return best


def keep_best(workdir: str, checkpoint: str, metric: str, value: float
              ) -> Optional[Dict[str, Any]]:
  """Copies ``checkpoint`` (a prefix of the run) into ``W/checkpoints/best``
  if its ``metric`` ``value`` (higher is better) beats the kept one's.

  The copy is complete before ``best.json`` names it, and the previous best
  is removed after: a run stopped midway still has an intact best. The
  ``checkpoint`` file of ``W/checkpoints`` never lists it, so rotation
  (``config.checkpoint.keep``) and resuming, which follow that file, leave
  it alone.

  Returns:
    The new ``read_best`` record, or None when the kept one stays best.
  """
  previous = read_best(workdir)
  if previous is not None and not value > previous["value"]:
    return None
  folder = best_dir(workdir)
  tf.io.gfile.makedirs(folder)
  name = os.path.basename(checkpoint)
  for source in tf.io.gfile.glob(checkpoint + ".*"):
    tf.io.gfile.copy(source, os.path.join(folder, os.path.basename(source)),
                     overwrite=True)
  record = {"path": name, "step": checkpoint_step(checkpoint),
            "metric": metric, "value": float(value)}
  temporary = os.path.join(folder, BEST_FILE + ".tmp")
  with tf.io.gfile.GFile(temporary, "w") as f:
    json.dump(record, f, indent=2)
  tf.io.gfile.rename(temporary, os.path.join(folder, BEST_FILE), overwrite=True)
  if previous is not None and os.path.basename(previous["path"]) != name:
    for stale in tf.io.gfile.glob(previous["path"] + ".*"):
      tf.io.gfile.remove(stale)
  return dict(record, path=os.path.join(folder, name))


class CheckpointChoice(NamedTuple):
  """A checkpoint of a run a tool reads, and how it was chosen.

  Attributes:
    path: the checkpoint prefix.
    step: its training step.
    selector: what the user asked for (``latest``, ``best``, a step or a
      prefix).
  """
  path: str
  step: int
  selector: str

  def describe(self) -> Dict[str, Any]:
    """What ``metrics.json`` and the export's metadata record of it."""
    return self._asdict()


def _on_disk(workdir: str) -> str:
  """The steps of the run's checkpoints, for error messages."""
  steps = sorted(checkpoint_step(p) for p in checkpoints_newest_first(workdir))
  best = read_best(workdir)
  listed = ", ".join(map(str, steps)) or "none"
  return listed + (f" (best: {best['step']})" if best else "")


def resolve_checkpoint(workdir: str, selector: Optional[str] = "latest"
                       ) -> CheckpointChoice:
  """The checkpoint of the run in ``workdir`` that ``selector`` names.

  Args:
    workdir: the run folder.
    selector: ``latest`` (the default, also for None or ''), ``best``
      (``train_and_eval``'s best by its task's main metric), a training
      step (``1200``: ``W/checkpoints/ckpt-1200``, or the best checkpoint
      if it is of that step), or a checkpoint prefix (absolute, relative
      to the current folder, or to ``W/checkpoints``).

  Returns:
    A ``CheckpointChoice``.

  Raises:
    FileNotFoundError: no such checkpoint; the message lists the steps on
      disk, or says how to get a best checkpoint.
  """
  selector = str(selector or "latest")
  folder = checkpoint_dir(workdir)
  if selector == "latest":
    path = latest_checkpoint(workdir)
    if path is None:
      raise FileNotFoundError(f"--checkpoint=latest: no checkpoint in {folder}")
    return CheckpointChoice(path, checkpoint_step(path), selector)
  if selector == "best":
    best = read_best(workdir)
    if best is None:
      raise FileNotFoundError(
          f"--checkpoint=best: {workdir!r} has no best checkpoint "
          f"({os.path.join(best_dir(workdir), BEST_FILE)} is missing); a "
          "run trained with --mode=train_and_eval keeps one, chosen by its "
          "evaluation after each checkpoint. Steps on disk: "
          f"{_on_disk(workdir)}; give one with --checkpoint=STEP, or "
          "--checkpoint=latest")
    return CheckpointChoice(best["path"], best["step"], selector)
  if selector.isdigit():
    step = int(selector)
    for path in checkpoints_newest_first(workdir):
      if checkpoint_step(path) == step:
        return CheckpointChoice(path, step, selector)
    best = read_best(workdir)
    if best is not None and best["step"] == step:
      return CheckpointChoice(best["path"], step, selector)
    raise FileNotFoundError(
        f"--checkpoint={selector}: no checkpoint of step {step} in {folder}; "
        f"steps on disk: {_on_disk(workdir)}")
  for path in (selector, os.path.join(folder, selector)):
    if tf.io.gfile.exists(path + ".index"):
      return CheckpointChoice(path, checkpoint_step(path), selector)
  raise FileNotFoundError(
      f"--checkpoint={selector!r} is neither latest, best, a step nor a "
      f"checkpoint prefix ({selector}.index does not exist); steps on disk in "
      f"{folder}: {_on_disk(workdir)}")


def restore_model(config, workdir: str, checkpoint: Optional[str] = None
                  ) -> Tuple[model_lib.DeepLab, int]:
  """Builds the config's model and restores a checkpoint of the run.

  Args:
    config: the run's config (``read_config``, possibly with changes).
    workdir: the run folder.
    checkpoint: what ``resolve_checkpoint`` takes (``latest``, ``best``,
      a step or a checkpoint prefix); default: the run's latest.

  Returns:
    (model, step).

  Raises:
    FileNotFoundError: the run has no such checkpoint.
    ValueError: the config describes other weights than the run's, or the
      checkpoint's files are damaged.
  """
  checkpoint = resolve_checkpoint(workdir, checkpoint).path
  if has_config(workdir):
    check_architecture(config, read_config(workdir), workdir)
  model = model_lib.build_model(config)
  try:
    tf.train.Checkpoint(model=model).restore(checkpoint) \
        .assert_existing_objects_matched().expect_partial()
  except (tf.errors.OpError, IndexError) as e:  # Read errors.
    reason = (getattr(e, "message", None) or str(e)).splitlines()[0]
    raise ValueError(f"{checkpoint} is damaged ({reason[:300]}); give "
                     "another checkpoint of the run") from None
  except AssertionError as e:
    raise ValueError(f"{checkpoint} does not hold every weight of the config's "
                     f"model: {str(e)[:500]}") from None
  return model, checkpoint_step(checkpoint)


def refuse_existing_checkpoints(workdir: str) -> None:
  """Raises ValueError if ``workdir`` already holds checkpoints (writing
  imported weights there would replace a trained run's)."""
  latest = latest_checkpoint(workdir) if workdir else None
  if latest:
    raise ValueError(f"--workdir={workdir!r} already holds checkpoints "
                     f"({latest}); give a new folder")


def save_model(model, config, workdir: str, step: int = 0) -> str:
  """Makes ``workdir`` a new run holding ``model``'s weights (for imported
  weights): its config and ``checkpoints/ckpt-<step>``.

  Raises:
    ValueError: ``workdir`` already holds checkpoints.
  """
  refuse_existing_checkpoints(workdir)
  prepare(workdir)
  write_config(config, workdir)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model), checkpoint_dir(workdir), max_to_keep=1)
  return manager.save(checkpoint_number=step)


def append_log(workdir: str, record: Dict[str, Any]) -> None:
  """Appends one JSON record to ``workdir/train_log.jsonl``."""
  with tf.io.gfile.GFile(os.path.join(workdir, LOG_FILE), "a") as f:
    f.write(json.dumps(record) + "\n")
