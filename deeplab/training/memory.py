"""The memory a training step is predicted to need, and the warning at
start when a run's configuration is predicted over its device's memory.

The prediction per replica is ``state + fixed + per_pixel * images *
height * width``: ``state`` the weights and the optimizer's slots,
``fixed`` and ``per_pixel`` the least-squares fit of the peak memory of
one training step (``bench/train_memory.py``: forward, backward, weight
decay and update of ``Trainer``'s step, peak resident memory over the
process's memory after the build, on a CPU) per backbone, precision and
output stride, over crops of 321, 513 and 769 and batches of 1 and 4.
``images`` are those one replica holds at once: one micro-batch,
``batch_size / replicas / accumulation_steps``. A CPU's figure is a proxy
for a GPU's (another allocator, cuDNN's workspaces; docs/training.md).
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

from absl import logging

from deeplab import runtime

MIB = 2**20
GIB = 2**30

# A configuration fits when its prediction is at most this share of the
# device's memory: room for fragmentation and the fit's error.
HEADROOM = 0.9

# Resident memory of the training process besides the model on a CPU
# (Python, TensorFlow, the input pipeline), MiB: bench/train_memory.json's
# baselines less the weights and slots are 627-781 MiB over its 35
# measured settings (median 690), rounded to 700.
HOST_RUNTIME_MB = 700.0


@dataclasses.dataclass(frozen=True)
class Coefficients:
  """A fit of one backbone, precision and output stride (MiB)."""
  state_mb: float  # Weights and optimizer slots (SGD with momentum).
  fixed_mb: float  # Step memory that does not grow with the batch.
  per_megapixel_mb: float  # Step memory per megapixel of the micro-batch.


# (backbone, "float32" or "mixed", output stride) -> the fit of
# `python bench/train_memory.py` (bench/train_memory.json; its table and
# errors in docs/training.md). "Estimated from": output stride 8, not
# measured; the output stride 16 fit scaled by the forward graphs' tensor
# bytes.
COEFFICIENTS = {
    ("mobilenet_v2", "float32", 8): Coefficients(21, 212, 4369.5),  # Estimated from mobilenet_v2 OS 16 float32.
    ("mobilenet_v2", "float32", 16): Coefficients(21, 212, 2241.7),
    ("mobilenet_v2", "mixed", 8): Coefficients(21, 218, 2466.1),  # Estimated from mobilenet_v2 OS 16 mixed_bfloat16.
    ("mobilenet_v2", "mixed", 16): Coefficients(21, 218, 1370.9),
    ("resnet_101", "float32", 8): Coefficients(350, 785, 11624.0),  # Estimated from resnet_101 OS 16 float32.
    ("resnet_101", "float32", 16): Coefficients(350, 785, 4511.1),
    ("resnet_101", "mixed", 8): Coefficients(350, 826, 5953.3),  # Estimated from resnet_101 OS 16 mixed_bfloat16.
    ("resnet_101", "mixed", 16): Coefficients(350, 826, 2384.1),
    ("xception_65", "float32", 8): Coefficients(314, 771, 21013.0),  # Estimated from xception_65 OS 16 float32.
    ("xception_65", "float32", 16): Coefficients(314, 771, 7055.4),
    ("xception_65", "mixed", 8): Coefficients(314, 881, 11508.4),  # Estimated from xception_65 OS 16 mixed_bfloat16.
    ("xception_65", "mixed", 16): Coefficients(314, 881, 3875.0),
}


def precision(dtype_policy: str) -> str:
  """``float32``, or ``mixed`` for mixed_float16 and mixed_bfloat16 (both
  keep activations in two bytes)."""
  return "float32" if dtype_policy == "float32" else "mixed"


def coefficients(backbone: str, dtype_policy: str,
                 output_stride: int) -> Optional[Coefficients]:
  """The fit for this setting, or None where none was measured."""
  return COEFFICIENTS.get((backbone, precision(dtype_policy), output_stride))


def predict_mb(backbone: str, crop_size: Tuple[int, int], images: int,
               dtype_policy: str, output_stride: int,
               depth_multiplier: float = 1.0) -> Optional[float]:
  """MiB one replica's training step is predicted to need with ``images``
  images a micro-batch; None for a backbone, precision, output stride or
  depth multiplier (the fit's is 1.0) the fit does not cover.

  Example:
    >>> round(predict_mb("xception_65", (513, 513), 4, "float32", 16))  # doctest: +SKIP
  """
  fit = coefficients(backbone, dtype_policy, output_stride)
  if fit is None or depth_multiplier != 1.0:
    return None
  megapixels = images * crop_size[0] * crop_size[1] / 1e6
  return fit.state_mb + fit.fixed_mb + fit.per_megapixel_mb * megapixels


def host_memory(cgroup_root: str = runtime.CGROUP_ROOT,
                meminfo: str = "/proc/meminfo") -> Optional[int]:
  """Bytes of memory this process's host grants: the smaller of the
  machine's (``MemTotal``) and the container's limit; None where neither
  can be read."""
  limits = []
  try:
    with open(meminfo) as f:
      for line in f:
        if line.startswith("MemTotal:"):
          limits.append(int(line.split()[1]) * 1024)
  except OSError:
    pass
  cgroup = runtime.cgroup_memory_limit(cgroup_root)
  if cgroup:
    limits.append(cgroup)
  return min(limits) if limits else None


def device_memory(strategy) -> Optional[Tuple[int, str, int]]:
  """``(bytes, device, replicas sharing it)`` of the memory one replica of
  ``strategy`` trains in: the first GPU's (what TensorFlow may allocate on
  it), else the host's, shared by the replicas on this host. None on TPUs
  and where nothing can be read."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  devices = [d.upper() for d in getattr(strategy.extended, "worker_devices", ())]
  if any("TPU" in d for d in devices):
    return None
  if tf.config.list_physical_devices("GPU"):
    from tensorflow.python.client import device_lib  # pylint: disable=g-import-not-at-top
    try:
      gpus = [d for d in device_lib.list_local_devices() if d.device_type == "GPU"]
    except Exception:  # pylint: disable=broad-except
      return None
    return (gpus[0].memory_limit, "GPU:0", 1) if gpus else None
  host = host_memory()
  if host is None:
    return None
  return host, "host", max(1, len(devices))


def mixed_policy(device: str) -> Optional[str]:
  """The mixed precision to suggest on ``device`` (``GPU:0`` or ``host``):
  ``mixed_float16`` on a GPU, ``mixed_bfloat16`` on a CPU with bfloat16 in
  hardware, None on other CPUs (``runtime.bf16_warning``: emulated
  bfloat16 is slower there)."""
  if device != "host":
    return "mixed_float16"
  return "mixed_bfloat16" if runtime.this_cpu().native_bf16 else None


def fitting_settings(config, per_replica: int, budget_mb: float,
                     mixed: Optional[str] = None) -> List[str]:
  """Changes to ``config`` predicted to fit ``budget_mb`` per replica:
  more micro-batches (same batch), the precision ``mixed`` (a policy, None
  for none), a smaller crop."""
  model, train = config.model, config.train
  crop = tuple(config.data.crop_size)

  def predict(images, crop_size=crop, dtype_policy=model.dtype_policy):
    return predict_mb(model.backbone, crop_size, images, dtype_policy, model.output_stride,
                      model.depth_multiplier)

  settings = []
  for steps in range(train.accumulation_steps + 1, per_replica + 1):
    images = per_replica // steps
    if per_replica % steps == 0 and predict(images) <= budget_mb:
      settings.append(f"config.train.accumulation_steps={steps} ({images} image(s) per "
                      f"replica at a time, about {predict(images) / 1024:.1f} GiB; the "
                      f"batch of {train.batch_size} stays)")
      break
  images = per_replica // train.accumulation_steps
  if mixed and model.dtype_policy == "float32" and predict(images, dtype_policy=mixed) <= budget_mb:
    settings.append(f"config.model.dtype_policy='{mixed}' (about "
                    f"{predict(images, dtype_policy=mixed) / 1024:.1f} GiB)")
  if not settings:
    offset = 1 if model.align_corners else 0
    for k in range((min(crop) - offset) // model.output_stride - 1, 0, -1):
      side = model.output_stride * k + offset
      if predict(1, (side, side)) <= budget_mb:
        settings.append(f"config.data.crop_size=({side}, {side}) with "
                        f"config.train.accumulation_steps={per_replica} (one image at a "
                        f"time, about {predict(1, (side, side)) / 1024:.1f} GiB)")
        break
  return settings


def over_memory_warning(config, strategy) -> str:
  """The warning for a configuration predicted over its device's memory,
  naming the prediction, the device's figure and settings that fit; ''
  when it fits or cannot be predicted (a backbone, precision or output
  stride the fit does not cover, a device that reports nothing, an error:
  advice must not stop a run)."""
  try:
    return _over_memory_warning(config, strategy)
  except Exception as e:  # pylint: disable=broad-except
    logging.info("No memory prediction: %s", e)
    return ""


def _over_memory_warning(config, strategy) -> str:
  model, train = config.model, config.train
  per_replica = train.batch_size // strategy.num_replicas_in_sync
  images = per_replica // train.accumulation_steps
  predicted = predict_mb(model.backbone, tuple(config.data.crop_size), images,
                         model.dtype_policy, model.output_stride, model.depth_multiplier)
  if predicted is None:
    logging.info("No memory prediction for %s (%s, output stride %d)", model.backbone,
                 model.dtype_policy, model.output_stride)
    return ""
  device = device_memory(strategy)
  if device is None:
    return ""
  available, name, sharing = device
  if name == "host":
    predicted += HOST_RUNTIME_MB
  budget_mb = HEADROOM * available / MIB / sharing
  if predicted <= budget_mb:
    return ""
  crop = "x".join(map(str, config.data.crop_size))
  shared = f", shared by {sharing} replicas" if sharing > 1 else ""
  fits = fitting_settings(config, per_replica, budget_mb - (
      HOST_RUNTIME_MB if name == "host" else 0.0), mixed_policy(name))
  advice = ("Predicted to fit: " + "; or ".join(fits) + "." if fits else
            "Nothing near this configuration is predicted to fit; choose a smaller backbone.")
  return (
      f"Training is predicted to need about {predicted / 1024:.1f} GiB per replica "
      f"({model.backbone}, {crop} crops, {images} image(s) per replica at a time = "
      f"config.train.batch_size={train.batch_size} / {strategy.num_replicas_in_sync} "
      f"replica(s) / config.train.accumulation_steps={train.accumulation_steps}, "
      f"{model.dtype_policy}, output stride {model.output_stride}), over the "
      f"{available / GIB:.1f} GiB {name} reports{shared} ({HEADROOM:.0%} of it usable). "
      f"{advice} The prediction is bench/train_memory.py's fit (docs/training.md).")

