"""Learning-rate schedules: the original DeepLab's (slow start, then poly
decay) and slim's ImageNet one (staircase exponential decay by epochs),
chosen by ``config.schedule.name`` (``from_config``)."""

from __future__ import annotations

import keras
import tensorflow as tf

from deeplab.config import WARMUP_TYPES


@keras.saving.register_keras_serializable(package="deeplab")
class PolyWithWarmup(keras.optimizers.schedules.LearningRateSchedule):
  """The original's slow start for ``warmup_steps``, then
  ``base * (1 - t / T) ** power`` down to ``end_learning_rate`` at
  ``total_steps`` (t counted from the warm-up's end, T = total_steps -
  warmup_steps, as the original's adjusted global step). ``total_steps``
  may be a variable: a time budget moves it as training goes
  (``budget.TimeBudget``).

  The slow start (the original's ``slow_start_burnin_type``): 'none' holds
  ``warmup_learning_rate`` constant, 'linear' ramps from it to
  ``base_learning_rate``.

  Raises:
    ValueError: an unknown ``warmup_type``.
  """

  def __init__(self, base_learning_rate: float, total_steps: int,
               power: float = 0.9, end_learning_rate: float = 0.0,
               warmup_steps: int = 0, warmup_learning_rate: float = 1e-4,
               warmup_type: str = "none"):
    if warmup_type not in WARMUP_TYPES:
      raise ValueError(f"warmup_type must be one of {WARMUP_TYPES}, got "
                       f"{warmup_type!r}")
    self.base_learning_rate = base_learning_rate
    self.total_steps = total_steps
    self.power = power
    self.end_learning_rate = end_learning_rate
    self.warmup_steps = warmup_steps
    self.warmup_learning_rate = warmup_learning_rate
    self.warmup_type = warmup_type

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    total = tf.cast(self.total_steps, tf.float32)
    decay_steps = tf.maximum(1.0, total - self.warmup_steps)
    progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
    poly = ((self.base_learning_rate - self.end_learning_rate) *
            (1.0 - progress) ** self.power + self.end_learning_rate)
    if not self.warmup_steps:
      return poly
    warm = tf.constant(self.warmup_learning_rate, tf.float32)
    if self.warmup_type == "linear":
      fraction = step / float(self.warmup_steps)
      warm += (self.base_learning_rate - self.warmup_learning_rate) * fraction
    return tf.where(step < self.warmup_steps, warm, poly)

  def get_config(self):
    return dict(base_learning_rate=self.base_learning_rate,
                total_steps=(float(self.total_steps.numpy())
                             if isinstance(self.total_steps, tf.Variable)
                             else self.total_steps), power=self.power,
                end_learning_rate=self.end_learning_rate,
                warmup_steps=self.warmup_steps,
                warmup_learning_rate=self.warmup_learning_rate,
                warmup_type=self.warmup_type)


@keras.saving.register_keras_serializable(package="deeplab")
class StaircaseExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
  """``base * decay_rate ** floor(step / decay_steps)``: slim's
  ``train_image_classifier`` schedule (``exponential_decay`` with
  ``staircase=True``), e.g. 0.05 decayed by 0.94 every 2 epochs.

  Raises:
    ValueError: ``decay_steps`` below 1.
  """

  def __init__(self, base_learning_rate: float, decay_steps: int,
               decay_rate: float):
    if decay_steps < 1:
      raise ValueError(f"decay_steps must be >= 1, got {decay_steps!r}")
    self.base_learning_rate = base_learning_rate
    self.decay_steps = decay_steps
    self.decay_rate = decay_rate

  @classmethod
  def by_epochs(cls, base_learning_rate: float, decay_epochs: float,
                decay_rate: float, epoch_examples: int, batch_size: int):
    """The schedule decaying every ``decay_epochs`` epochs of
    ``epoch_examples`` records at ``batch_size`` per step (slim's
    ``int(examples * epochs_per_decay / batch_size)`` steps, at least 1)."""
    decay_steps = max(1, int(epoch_examples * decay_epochs / batch_size))
    return cls(base_learning_rate, decay_steps, decay_rate)

  def __call__(self, step):
    decays = tf.floor(tf.cast(step, tf.float32) / float(self.decay_steps))
    return self.base_learning_rate * tf.pow(
        tf.constant(self.decay_rate, tf.float32), decays)

  def get_config(self):
    return dict(base_learning_rate=self.base_learning_rate,
                decay_steps=self.decay_steps, decay_rate=self.decay_rate)


def from_config(schedule, batch_size: int, horizon
                ) -> keras.optimizers.schedules.LearningRateSchedule:
  """The schedule ``schedule.name`` names, with its fields.

  Args:
    schedule: ``config.schedule``.
    batch_size: images per step (``config.train.batch_size``): the
      exponential schedule's epochs become steps with it.
    horizon: the poly schedule's total steps: ``config.train.steps``, or a
      time budget's variable (``budget.TimeBudget.horizon``); the
      exponential schedule decays by epochs and has no horizon.
  """
  if schedule.name == "exponential":
    return StaircaseExponentialDecay.by_epochs(
        schedule.base_learning_rate, schedule.decay_epochs,
        schedule.decay_rate, schedule.epoch_examples, batch_size)
  return PolyWithWarmup(
      schedule.base_learning_rate, horizon, schedule.learning_power,
      schedule.end_learning_rate, schedule.warmup_steps,
      schedule.warmup_learning_rate, schedule.warmup_type)
