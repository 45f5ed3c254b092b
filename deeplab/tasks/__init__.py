"""Tasks: what a model is trained for, one object per task.

A task (``base.Task``) owns its model class, its training and evaluation
inputs, its loss, its metrics and what the training log keeps of them;
training (``deeplab.training``), evaluation (``deeplab.evaluation``) and
``deeplab.model.build_model`` ask the task instead of testing the task's
name. ``config.model.task`` names it, and this registry is the one place
that looks it up.

Adding a task: a module in this package defining a ``base.Task`` subclass as
its ``TASK``, and its line in ``REGISTERED``. The registry names modules and
imports one when its task is asked for, so that the model layer below the
tasks can ask for a task's model class, and it holds the facts that config
validation needs without importing TensorFlow.
"""

import importlib
from typing import NamedTuple


class Registration(NamedTuple):
  """A task's line in the registry.

  Attributes:
    module: the module whose ``TASK`` the task is.
    stride_aligned_inputs: whether crops must be ``output_stride * k + 1``
      pixels (a dense head whose features align with the input's corners);
      False where any size works (a head that pools globally).
  """
  module: str
  stride_aligned_inputs: bool


# Task name (``config.model.task``) -> its registration.
REGISTERED = {
    "segmentation": Registration("deeplab.tasks.segmentation", True),
    "classification": Registration("deeplab.tasks.classification", False),
}
NAMES = tuple(REGISTERED)


def registration(config) -> Registration:
  """The registration of the task ``config.model.task`` names.

  Raises:
    ValueError: no task has that name (the message lists the names).
  """
  return _registration(config.model.task)


def _registration(name: str) -> Registration:
  if name not in REGISTERED:
    raise ValueError(f"config.model.task must be one of {NAMES}, got {name!r}")
  return REGISTERED[name]


def get(name: str):
  """The task class named ``name``.

  Raises:
    ValueError: no task has that name (the message lists the names).
  """
  return importlib.import_module(_registration(name).module).TASK


def make_task(config):
  """The task ``config.model.task`` names, for the experiment ``config``."""
  return get(config.model.task)(config)
