"""Tasks: what a model is trained for, one object per task.

A task (``base.Task``) owns its model class, its training and evaluation
inputs, its loss, its metrics and what the training log keeps of them;
training (``deeplab.training``), evaluation (``deeplab.evaluation``) and
``deeplab.model.build_model`` ask the task instead of testing the task's
name. ``config.model.task`` names it, and this registry is the one place
that looks it up.

Adding a task: a module in this package defining a ``base.Task`` subclass as
its ``TASK``, and its line in ``MODULES``. The registry names modules and
imports one when its task is asked for, so that the model layer below the
tasks can ask for a task's model class.
"""

import importlib

# Task name (``config.model.task``) -> the module whose ``TASK`` it is.
MODULES = {"segmentation": "deeplab.tasks.segmentation",
           "classification": "deeplab.tasks.classification"}
NAMES = tuple(MODULES)


def get(name: str):
  """The task class named ``name``.

  Raises:
    ValueError: no task has that name (the message lists the names).
  """
  if name not in MODULES:
    raise ValueError(f"config.model.task must be one of {NAMES}, got {name!r}")
  return importlib.import_module(MODULES[name]).TASK


def make_task(config):
  """The task ``config.model.task`` names, for the experiment ``config``."""
  return get(config.model.task)(config)
