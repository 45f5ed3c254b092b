"""When training stops, decided by every worker together.

A signal stops training: SIGTERM (a preempted machine, a cluster
scheduler) or SIGINT (Ctrl-C). Each process notes the signals it receives;
at every loop boundary ``Stopper.agreed_reason`` agrees on them, so in a
multi-worker job every worker stops after the same step, even if only one
of them was signalled, and all write the final checkpoint together (the
chief into the run folder). A worker that stopped alone would leave the
others blocked in the next step's collective. (The time budget,
``config.budget.max_minutes``, is agreed the same way by
``budget.TimeBudget``.)

TensorFlow's ``tf.distribute.experimental.PreemptionCheckpointHandler`` is
not used: it counts calls of one-step functions (our loop calls run a
variable number of steps), adds its own counter variable to the
checkpoint, restores through its own manager, exits the process itself
(code 42 by default) and knows no SIGINT.
"""

from __future__ import annotations

import signal
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context as eager_context

# The causes, in the order of the flags that are all-reduced.
REASONS = ("SIGTERM", "SIGINT")
# A worker waits this long for the chief's evaluation before failing; the
# coordination service fails the wait sooner if the chief dies.
EVALUATION_WAIT_MS = 24 * 3600 * 1000


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  """True where several processes train together (a TF_CONFIG cluster)."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return False
  resolver = strategy.cluster_resolver
  return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values()) > 1


class Stopper:
  """Notes SIGTERM/SIGINT; agrees on them at loop boundaries. A context
  manager: the signal handlers live inside it.

  Example::

    with Stopper(strategy) as stopper:
      while step < steps:
        step = run_some_steps()
        reason = stopper.agreed_reason()
        if reason:
          break
  """

  def __init__(self, strategy: tf.distribute.Strategy):
    self._signals = {name: False for name in REASONS}
    self._previous = {}
    self._strategy = strategy

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._note_signal)
      except ValueError:  # Not the main thread: no handlers.
        pass
    return self

  def __exit__(self, *exc):
    for sig, old in self._previous.items():
      signal.signal(sig, old)

  def _note_signal(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    logging.info("%s received: training stops at the next loop boundary", name)
    self._signals[name] = True

  def local_reasons(self):
    """This process's flags, in the order of ``REASONS``."""
    return [self._signals[name] for name in REASONS]

  def agreed_reason(self) -> Optional[str]:
    """The first signal any worker has received, or None to go on.

    In a multi-worker job this is a collective: every worker must call it
    at the same point of the loop.
    """
    flags = agree_across_workers(self._strategy, self.local_reasons()) > 0
    for reason, flag in zip(REASONS, flags):
      if flag:
        return reason
    return None


def agree_across_workers(strategy: tf.distribute.Strategy, values) -> np.ndarray:
  """The element-wise maximum of ``values`` (numbers) over the workers of a
  multi-worker job, so that every worker takes the same decision from its
  own signals and clock; ``values`` as they are in a single process. A
  collective there: every worker calls it at the same point."""
  values = np.asarray(values, np.float32)
  if not is_multi_worker(strategy):
    return values
  # ReduceOp has no MAX: gather every replica's values, then take it.
  per_replica = strategy.run(lambda: tf.constant(values)[tf.newaxis])
  return tf.reduce_max(strategy.gather(per_replica, axis=0), axis=0).numpy()


def wait_for_chief_evaluation(strategy: tf.distribute.Strategy, step: int):
  """In a multi-worker job, every worker waits here until the chief has
  evaluated step ``step`` on its host (``train_and_eval``).

  Without it the other workers would go on to the next step and wait for
  the chief inside a training collective for the whole evaluation. The
  barrier is the coordination service's, which fails if a worker dies.
  """
  if is_multi_worker(strategy):
    eager_context.context().wait_at_barrier(f"deeplab_evaluation_{step}",
                                            EVALUATION_WAIT_MS)
