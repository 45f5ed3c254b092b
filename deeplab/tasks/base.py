"""What every task provides (the interface training and evaluation use).

The loss of a replica is ``(sum, count)``: the trainer divides the sum by
the count all-reduced over the replicas, so gradients equal those of one
device on the global batch whatever the replica count.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf

from deeplab import model as model_lib


class Task:
  """One task: its model, inputs, loss, metrics and log.

  Subclasses set ``name`` (the ``config.model.task`` value), ``MODEL``
  (the Keras model class built from the config's ``ModelArgs``) and
  ``MAIN_METRIC`` (the key of ``evaluate``'s metrics, higher is better,
  that picks a run's best checkpoint) and define the methods below.

  Args:
    config: the experiment config.
  """

  name = ""
  MODEL = None
  MAIN_METRIC = ""

  def __init__(self, config):
    self.config = config

  def build_model(self, **overrides) -> keras.Model:
    """The config's model, freshly initialized (``model.build_model``)."""
    return model_lib.build_model(self.config, **overrides)

  def train_dataset(self, input_context: Optional[tf.distribute.InputContext],
                    start_step: int) -> tf.data.Dataset:
    """Infinite training batches ``(images, labels)`` of one input pipeline,
    resuming at ``start_step``."""
    raise NotImplementedError

  def loss_sum_and_count(self, logits, labels, step) -> Tuple[tf.Tensor, tf.Tensor]:
    """One replica's summed loss and the count it is normalised by."""
    raise NotImplementedError

  def evaluate(self, model: keras.Model, strategy: tf.distribute.Strategy,
               pattern: Optional[str] = None) -> Dict:
    """The metrics of ``model`` on the eval records (``pattern`` replaces
    ``config.data.eval_pattern``), as a JSON-able dict."""
    raise NotImplementedError

  def summarize(self, model: keras.Model, metrics: Dict, step: int,
                pattern: Optional[str] = None) -> None:
    """Writes ``metrics`` (and whatever else shows them) to the default
    TensorBoard writer, and logs them."""
    raise NotImplementedError

  def validation_log(self, metrics: Dict) -> Dict:
    """What the training log records of an evaluation's metrics."""
    raise NotImplementedError
