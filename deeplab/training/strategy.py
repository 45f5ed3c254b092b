"""tf.distribute strategy from a name: one device, mirrored, multi-worker, TPU."""

from __future__ import annotations

import tensorflow as tf

from deeplab.config import STRATEGIES


def make_strategy(name: str, tpu_address: str = "local") -> tf.distribute.Strategy:
  """Returns the strategy ``name``.

  Args:
    name: 'default' (one device), 'mirrored' (all local GPUs, or the CPU),
      'multi_worker' (MultiWorkerMirroredStrategy; workers from TF_CONFIG),
      'tpu' (TPUStrategy on ``tpu_address``).
    tpu_address: 'local' for the TPU attached to this VM (TPU VMs), else
      the TPU's name (pod slices, remote TPUs) or a grpc://host:port
      address. An empty string would send TensorFlow's resolver to the
      Cloud TPU API, which needs a TPU name or a TPU environment variable
      and fails on a plain TPU VM.

  Raises:
    ValueError: an unknown name, or strategy 'tpu' with no TPU address.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    if not tpu_address:
      raise ValueError("config.distribution.tpu must be 'local' (a TPU VM), a TPU "
                       "name or a grpc:// address for strategy 'tpu', got ''")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


_TPU_STRATEGIES = (tf.distribute.TPUStrategy,
                   tf.distribute.experimental.TPUStrategy)


def evaluates_on_host(strategy: tf.distribute.Strategy) -> bool:
  """True where ``train_and_eval`` evaluates a host copy of the model.

  Under TPUStrategy the evaluation images (each of its own size) would
  compile the TPU program once per size; under MultiWorkerMirroredStrategy
  the chief evaluates alone, and a collective all-reduce would wait for
  workers that are training. Both evaluate a copy of the weights on the
  chief's host CPU instead: the same model, the same confusion matrix.
  """
  return isinstance(strategy, _TPU_STRATEGIES + (
      tf.distribute.MultiWorkerMirroredStrategy,))


def host_cpu(strategy: tf.distribute.Strategy) -> str:
  """The CPU device of the host that runs this program's first replica."""
  try:
    devices = strategy.extended.worker_devices
  except RuntimeError:  # The default strategy has none: this process's CPU.
    devices = ()
  if not devices:
    return "/device:CPU:0"
  return tf.DeviceSpec.from_string(devices[0]).replace(
      device_type="CPU", device_index=0).to_string()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the worker that writes checkpoints and summaries."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                  "chief" not in resolver.cluster_spec().as_dict())
