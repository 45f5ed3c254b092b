"""A training time budget (``config.budget.max_minutes``) that the learning
rate schedule spends whole.

With a budget, the poly schedule's horizon (the step at which the rate
reaches its end value) is not ``config.train.steps`` but the step the run
is expected to reach when the budget runs out: the current step plus the
remaining seconds divided by the measured seconds per step. The estimate is
renewed after every loop call from this session's own pace (the first call,
which traces and warms up, is left out; checkpoint writes and evaluations
are counted, as they take time from the budget too), so a slower or
busier machine gets a shorter schedule, not a rate cut off mid-decay.

The seconds spent, the horizon and the pace live in variables that the
checkpoint saves: a resumed run continues the same schedule and spends only
what is left of the budget. Under multi-worker training every worker uses
the values agreed by an all-reduce, so the replicas keep identical weights.
"""

from __future__ import annotations

import time
from typing import Callable

import tensorflow as tf

from deeplab.training import stopping


class TimeBudget:
  """Seconds of training allowed, spent, and the horizon they give.

  Build it under the strategy's scope (its variables go in the checkpoint)
  and call ``start`` once the checkpoint is restored, then ``update`` after
  every loop call.

  Args:
    minutes: the budget; 0 means none (the horizon stays ``max_steps``).
    max_steps: ``config.train.steps``: the horizon never goes beyond it.
    clock: seconds, monotonic (tests pass a fake one).
  """

  def __init__(self, minutes: float, max_steps: int,
               clock: Callable[[], float] = time.monotonic):
    self.seconds = 60.0 * minutes
    self.max_steps = max_steps
    self.clock = clock
    # float64: a float32 count of seconds loses sub-second steps after days.
    self.elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                               name="elapsed_seconds")
    self.horizon = tf.Variable(float(max_steps), trainable=False,
                               name="schedule_horizon")
    self.seconds_per_step = tf.Variable(0.0, trainable=False,
                                        name="seconds_per_step")
    self._session_start = None

  @property
  def enabled(self) -> bool:
    return self.seconds > 0

  def checkpointed(self) -> dict:
    return dict(elapsed_seconds=self.elapsed, schedule_horizon=self.horizon,
                seconds_per_step=self.seconds_per_step)

  def start(self, step: int):
    """Begins this session's clock at ``step`` (after a restore)."""
    if not self.enabled:  # A budget-less run keeps its fixed horizon.
      self.horizon.assign(float(self.max_steps))
    self._session_start = (self.clock(), float(self.elapsed.numpy()), step)
    self._pace_start = None

  def update(self, step: int, strategy: tf.distribute.Strategy) -> bool:
    """Counts the time since ``start``, renews the horizon; True when the
    budget is spent (the same answer on every worker)."""
    now = self.clock()
    began, elapsed_before, _ = self._session_start
    elapsed = elapsed_before + now - began
    if not self.enabled:
      self.elapsed.assign(elapsed)
      return False
    if self._pace_start is None:  # Warm-up and tracing: not the pace.
      self._pace_start = (now, step)
      pace = float(self.seconds_per_step.numpy())
    else:
      pace = (now - self._pace_start[0]) / max(1, step - self._pace_start[1])
    elapsed, pace = stopping.agree_across_workers(strategy, [elapsed, pace])
    self.elapsed.assign(float(elapsed))
    if pace > 0:
      self.seconds_per_step.assign(pace)
      remaining = max(0.0, self.seconds - float(elapsed))
      horizon = min(float(self.max_steps), step + remaining / pace)
      self.horizon.assign(max(float(step), horizon))
    return float(elapsed) >= self.seconds
