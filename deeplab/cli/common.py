"""What the command-line tools share: the ``--config`` flag and the rule that
turns it and ``--workdir`` into the config a tool runs with.

Nothing here defines a flag when imported; each entry point calls
``define_config_flag()`` (and a tool that reads a checkpoint
``define_checkpoint_flag()``) once and runs through ``run_app``, which lets
``--config`` name a shipped experiment (``--config=synthetic``) as well as
a file (``--config=configs/synthetic.py``).

The rule:
- A tool that creates or continues a run (``deeplab-train``,
  ``deeplab-convert``) takes ``--config=FILE`` (with ``--config.x=...``
  overrides) as the run's config. Without ``--config`` it continues the run
  in ``--workdir`` with the config written there.
- A tool that reads a run (``deeplab-eval``, ``deeplab-export``,
  ``deeplab-predict``) takes the config written in ``--workdir`` and applies only what the user
  changes on purpose: each ``--config.x=...`` given, and, when
  ``--config=FILE`` is given, that file's ``eval`` section (scales, flip,
  crop size) and ``export`` section (the served model's pixel limit). A
  change that would alter the model's weights is refused with the field
  named (``deeplab.run_dir``).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Dict, List, Sequence

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags

from deeplab import config as config_lib
from deeplab import run_dir
from deeplab import runtime

CONFIG_FLAG = "config"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def config_file(spec: str) -> str:
  """The file of a ``--config`` value: a path (with an optional ``:arg``
  suffix, which ml_collections passes on), or a shipped config's name.

  Raises:
    app.UsageError: a bare name that is no shipped config and no file.
  """
  path = spec.split(":", 1)[0]
  if os.path.isfile(path) or not _NAME.match(path):
    return spec
  shipped = config_lib.shipped_configs()
  if path not in shipped:
    raise app.UsageError(
        f"--config={spec!r} is neither a file nor a shipped config; shipped: "
        f"{', '.join(shipped)}")
  return shipped[path] + spec[len(path):]


def _with_config_files(argv: Sequence[str]) -> List[str]:
  """``argv`` with ``--config=NAME`` (or ``--config NAME``) made a path."""
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{CONFIG_FLAG}="):
      argv[i] = f"--{CONFIG_FLAG}=" + config_file(arg.split("=", 1)[1])
    elif arg == f"--{CONFIG_FLAG}" and i + 1 < len(argv):
      argv[i + 1] = config_file(argv[i + 1])
  return argv


def _parse_flags(argv: Sequence[str]) -> List[str]:
  try:
    argv = _with_config_files(argv)
  except app.UsageError as e:
    raise SystemExit(f"FATAL Flags parsing error: {e}") from None
  return app.parse_flags_with_usage(argv)


def run_app(main: Callable[[List[str]], Any], doc: str) -> None:
  """``absl.app.run(main)`` whose ``--config`` may be a shipped name.

  Args:
    main: the tool's main(argv).
    doc: the tool's usage text (its module docstring), shown by ``--help``
      also when the tool runs as a console script, whose ``__main__`` has
      none.
  """
  sys.modules["__main__"].__doc__ = doc
  # --help lists the key flags of the program (sys.argv[0]): the flags
  # defined in this package, which are the running tool's.
  for module, defined in flags.FLAGS.flags_by_module_dict().items():
    if module.startswith(f"{__package__}."):
      for flag in defined:
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(main, flags_parser=_parse_flags)


def define_config_flag(help_text: str = "Experiment config file "
                       "(configs/<name>.py); default: the run's own config "
                       "in --workdir.") -> flags.FlagHolder:
  """Defines ``--config`` (a config file, with ``--config.x=...`` overrides).

  Its default is the defaults' own file, so ``--config.x=...`` works
  without ``--config``; ``given_changes`` tells what the user set.
  """
  return config_flags.DEFINE_config_file(
      CONFIG_FLAG, config_lib.__file__, help_text + " A shipped config can "
      f"be named: {', '.join(config_lib.shipped_configs())}.", lock_config=True)


def define_checkpoint_flag(help_prefix: str = "") -> flags.FlagHolder:
  """Defines ``--checkpoint``: which checkpoint of the run a tool reads
  (``run_dir.resolve_checkpoint``)."""
  return flags.DEFINE_string(
      "checkpoint", "latest", help_prefix + "Which checkpoint of the run: "
      "latest, best (of --mode=train_and_eval), a step, or a checkpoint prefix.")


def _given(path: str) -> bool:
  name = f"{CONFIG_FLAG}.{path}"
  return name in flags.FLAGS and flags.FLAGS[name].present > 0


def config_file_given() -> bool:
  return flags.FLAGS[CONFIG_FLAG].present > 0


# What a --config file may change in a run read by eval, export or predict:
# how it is evaluated and exported, never what it was trained on or with.
FILE_SECTIONS = ("eval", "export")


def given_changes(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """``{path: value}`` the user set on purpose: every ``--config.<path>=...``
  flag, and the ``eval`` fields of a ``--config`` file (the rest of the
  file is the run's own business: its records, crop and steps stay)."""
  file_given = config_file_given()
  return {path: value for path, value in config_lib.leaves(config)
          if _given(path)
          or (file_given and path.split(".")[0] in FILE_SECTIONS)}


def run_config(config: ml_collections.ConfigDict,
               workdir: str) -> ml_collections.ConfigDict:
  """The config of a tool that creates or continues the run in ``workdir``.

  Raises:
    app.UsageError: no ``--config`` and no run in ``workdir``.
  """
  if not config_file_given():
    if not run_dir.has_config(workdir):
      raise app.UsageError(
          f"give --config=FILE: {workdir!r} holds no run to continue "
          f"({run_dir.config_path(workdir or '.')} is missing)")
    config = run_dir.config_with_changes(workdir, given_changes(config))
  warn_about_bf16(config)
  return config


def tool_config(config: ml_collections.ConfigDict,
                workdir: str) -> ml_collections.ConfigDict:
  """The config of a tool that reads the run in ``workdir``: the run's
  config with the user's changes (``given_changes``).

  Raises:
    app.UsageError: ``workdir`` holds no run.
  """
  if not run_dir.has_config(workdir):
    raise app.UsageError(
        f"--workdir={workdir!r} holds no run: {run_dir.config_path(workdir or '.')} "
        "does not exist (deeplab-train or deeplab-convert writes it)")
  config = run_dir.config_with_changes(workdir, given_changes(config))
  config = config_lib.resolve_dataset(config)  # The records must agree.
  warn_about_bf16(config)
  return config


def warn_about_bf16(config: ml_collections.ConfigDict) -> None:
  """Logs ``runtime.bf16_warning`` when a tool would run ``mixed_bfloat16``
  on a CPU without bf16 arithmetic (not on a TPU or GPU, where it pays)."""
  choice = runtime.current()
  if choice is None or config.distribution.strategy == "tpu":
    return  # A library call, not a tool; or the model runs on TPUs.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if tf.config.list_physical_devices("GPU"):
    return
  message = runtime.bf16_warning(choice.cpu, config.model.dtype_policy, choice.job)
  if message:
    logging.warning(message)

