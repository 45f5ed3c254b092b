"""The original's learning rate: slow start (warm-up), then poly decay."""

from __future__ import annotations

import keras
import tensorflow as tf

WARMUP_TYPES = ("none", "linear")


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
