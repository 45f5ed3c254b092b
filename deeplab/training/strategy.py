"""tf.distribute strategy from a name: one device, mirrored, multi-worker, TPU."""

from __future__ import annotations

import tensorflow as tf

from deeplab.config import STRATEGIES


def make_strategy(name: str, tpu_address: str = "") -> tf.distribute.Strategy:
  """Returns the strategy ``name``.

  Args:
    name: 'default' (one device), 'mirrored' (all local GPUs, or the CPU),
      'multi_worker' (MultiWorkerMirroredStrategy; workers from TF_CONFIG),
      'tpu' (TPUStrategy on ``tpu_address``).
    tpu_address: TPU name or grpc:// address ('' for a local TPU VM).

  Raises:
    ValueError: an unknown name.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the worker that writes checkpoints and summaries."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                  "chief" not in resolver.cluster_spec().as_dict())
