"""What the command-line tools share: the ``--config`` flag and the rule that
turns it and ``--workdir`` into the config a tool runs with.

Nothing here defines a flag when imported; each entry point calls
``define_config_flag()`` once.

The rule:
- A tool that creates or continues a run (``train.py``,
  ``deeplab.convert``) takes ``--config=FILE`` (with ``--config.x=...``
  overrides) as the run's config. Without ``--config`` it continues the run
  in ``--workdir`` with the config written there.
- A tool that reads a run (``eval.py``, ``export.py``, ``deeplab.predict``)
  takes the config written in ``--workdir`` and applies only what the user
  changes on purpose: each ``--config.x=...`` given, and, when
  ``--config=FILE`` is given, the fields that file sets to something other
  than the defaults. A change that would alter the model's weights is
  refused with the field named (``deeplab.run_dir``).
"""

from __future__ import annotations

from typing import Any, Dict

from absl import flags
import ml_collections
from ml_collections import config_flags

from deeplab import config as config_lib
from deeplab import run_dir

CONFIG_FLAG = "config"


def define_config_flag(help_text: str = "Experiment config file "
                       "(configs/<name>.py); default: the run's own config "
                       "in --workdir.") -> flags.FlagHolder:
  """Defines ``--config`` (a config file, with ``--config.x=...`` overrides).

  Its default is the defaults' own file, so ``--config.x=...`` works
  without ``--config``; ``given_changes`` tells what the user set.
  """
  return config_flags.DEFINE_config_file(
      CONFIG_FLAG, config_lib.__file__, help_text, lock_config=True)


def _given(path: str) -> bool:
  name = f"{CONFIG_FLAG}.{path}"
  return name in flags.FLAGS and flags.FLAGS[name].present > 0


def config_file_given() -> bool:
  return flags.FLAGS[CONFIG_FLAG].present > 0


def given_changes(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  """``{path: value}`` the user set on purpose: ``--config.<path>=...``
  flags, and fields the ``--config`` file sets away from the defaults."""
  defaults = dict(config_lib.leaves(config_lib.base_config()))
  file_given = config_file_given()
  return {path: value for path, value in config_lib.leaves(config)
          if _given(path) or (file_given and value != defaults.get(path))}


def run_config(config: ml_collections.ConfigDict,
               workdir: str) -> ml_collections.ConfigDict:
  """The config of a tool that creates or continues the run in ``workdir``.

  Raises:
    app.UsageError: no ``--config`` and no run in ``workdir``.
  """
  if config_file_given():
    return config
  if not run_dir.has_config(workdir):
    from absl import app  # pylint: disable=g-import-not-at-top
    raise app.UsageError(
        f"give --config=FILE: {workdir!r} holds no run to continue "
        f"({run_dir.config_path(workdir or '.')} is missing)")
  return run_dir.config_with_changes(workdir, given_changes(config))


def tool_config(config: ml_collections.ConfigDict,
                workdir: str) -> ml_collections.ConfigDict:
  """The config of a tool that reads the run in ``workdir``: the run's
  config with the user's changes (``given_changes``)."""
  return run_dir.config_with_changes(workdir, given_changes(config))
