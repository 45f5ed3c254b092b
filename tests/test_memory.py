"""The predicted memory of a training step and the warning at start."""

import logging

import pytest
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import runtime
from deeplab.training import memory as memory_lib
from deeplab.training import trainer as trainer_lib
from tests.harness import config_with

GIB = 2**30


def recipe(**fields):
  """The paper's PASCAL VOC recipe (Xception-65, batch 16, 513 crops,
  float32, output stride 16), with ``fields`` (``"train.batch_size"``)
  changed."""
  config = config_lib.base_config()
  config.model.backbone = "xception_65"
  config.model.output_stride = 16
  config.data.crop_size = (513, 513)
  config.train.batch_size = 16
  for key, value in fields.items():
    config_lib.set_field(config, key, value)
  return config


@pytest.fixture
def gpu_of(monkeypatch):
  """Makes the device report ``gib`` GiB (a GPU, one replica)."""
  def report(gib):
    monkeypatch.setattr(memory_lib, "device_memory", lambda strategy: (gib * GIB, "GPU:0", 1))
  return report


def test_the_recipe_over_a_gpus_memory_warns_naming_the_figures(gpu_of):
  gpu_of(16)
  config = recipe()
  predicted = memory_lib.predict_mb("xception_65", (513, 513), 16, "float32", 16)
  message = memory_lib.over_memory_warning(config, tf.distribute.get_strategy())
  assert f"about {predicted / 1024:.1f} GiB per replica" in message
  assert "over the 16.0 GiB GPU:0 reports" in message
  assert "config.train.batch_size=16 / 1 replica(s) / config.train.accumulation_steps=1" in message
  steps = next(k for k in (2, 4, 8, 16)
               if memory_lib.predict_mb("xception_65", (513, 513), 16 // k, "float32", 16)
               <= 0.9 * 16 * 1024)
  assert f"config.train.accumulation_steps={steps} ({16 // steps} image(s) per replica" in message
  assert "the batch of 16 stays" in message


def test_a_configuration_that_fits_is_silent(gpu_of):
  gpu_of(80)
  config = recipe(**{"train.batch_size": 4, "model.dtype_policy": "mixed_bfloat16"})
  assert memory_lib.over_memory_warning(config, tf.distribute.get_strategy()) == ""


def test_where_only_a_smaller_crop_fits_it_is_advised(gpu_of):
  gpu_of(2)
  config = recipe(**{"data.crop_size": (769, 769), "model.dtype_policy": "mixed_bfloat16"})
  message = memory_lib.over_memory_warning(config, tf.distribute.get_strategy())
  assert "Predicted to fit: config.data.crop_size=(" in message
  assert "config.train.accumulation_steps=16 (one image at a time" in message


def test_where_nothing_near_fits_a_smaller_backbone_is_advised(gpu_of):
  gpu_of(1)
  config = recipe(**{"data.crop_size": (769, 769), "model.dtype_policy": "mixed_bfloat16"})
  message = memory_lib.over_memory_warning(config, tf.distribute.get_strategy())
  assert "Nothing near this configuration is predicted to fit" in message


def test_mixed_precision_advice_names_the_devices_policy(monkeypatch, gpu_of):
  """mixed_float16 on a GPU; mixed_bfloat16 on a CPU only where bfloat16 is
  in hardware (``runtime.bf16_warning`` advises against it elsewhere)."""
  config = recipe(**{"train.batch_size": 8})
  strategy = tf.distribute.get_strategy()
  gpu_of(16)
  message = memory_lib.over_memory_warning(config, strategy)
  assert "config.model.dtype_policy='mixed_float16'" in message
  assert "bfloat16" not in message
  monkeypatch.setattr(memory_lib, "device_memory", lambda strategy: (16 * GIB, "host", 1))
  for flags, expected in ((frozenset({"avx2", "fma"}), None),
                          (frozenset({"avx2", "fma", "avx512_bf16"}), "mixed_bfloat16")):
    monkeypatch.setattr(runtime, "this_cpu", lambda flags=flags: runtime.Cpu("test CPU", flags, 2))
    message = memory_lib.over_memory_warning(config, strategy)
    assert "predicted to need about" in message
    if expected:
      assert f"config.model.dtype_policy='{expected}'" in message
    else:
      assert "config.model.dtype_policy=" not in message


@pytest.mark.parametrize("fields", [{"model.backbone": "xception_41"},
                                    {"model.depth_multiplier": 0.5, "model.backbone": "mobilenet_v2"}],
                         ids=["unmeasured_backbone", "depth_multiplier"])
def test_a_setting_the_fit_does_not_cover_is_silent(gpu_of, fields):
  gpu_of(1)
  config = recipe(**fields)
  assert memory_lib.over_memory_warning(config, tf.distribute.get_strategy()) == ""


def test_a_device_that_reports_nothing_and_a_broken_strategy_never_stop_a_run(monkeypatch):
  monkeypatch.setattr(memory_lib, "device_memory", lambda strategy: None)
  assert memory_lib.over_memory_warning(recipe(), tf.distribute.get_strategy()) == ""

  class Broken:
    num_replicas_in_sync = 0  # Divides by zero.

  assert memory_lib.over_memory_warning(recipe(), Broken()) == ""


def test_the_host_memory_is_the_containers_limit_where_lower(tmp_path):
  meminfo = tmp_path / "meminfo"
  meminfo.write_text("MemTotal:       16384000 kB\nMemFree: 1 kB\n")
  (tmp_path / "memory.max").write_text("4294967296\n")
  assert memory_lib.host_memory(str(tmp_path), str(meminfo)) == 4 * GIB
  (tmp_path / "memory.max").write_text("max\n")
  assert memory_lib.host_memory(str(tmp_path), str(meminfo)) == 16384000 * 1024
  (tmp_path / "memory").mkdir()  # cgroup v1; its "no limit" is a huge number.
  (tmp_path / "memory" / "memory.limit_in_bytes").write_text("2147483648\n")
  assert memory_lib.host_memory(str(tmp_path), str(meminfo)) == 2 * GIB
  (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
  assert memory_lib.host_memory(str(tmp_path), str(meminfo)) == 16384000 * 1024
  assert memory_lib.host_memory(str(tmp_path / "none"), str(tmp_path / "none")) is None


def test_the_trainer_warns_at_start(monkeypatch, tmp_path, caplog):
  monkeypatch.setattr(memory_lib, "device_memory", lambda strategy: (GIB, "GPU:0", 1))
  monkeypatch.setattr(memory_lib, "predict_mb", lambda *args: 4096.0)
  with caplog.at_level(logging.WARNING, logger="absl"):
    trainer_lib.Trainer(config_with("unused"), str(tmp_path), tf.distribute.get_strategy())
  assert "predicted to need about 4.0 GiB per replica" in caplog.text
  assert "over the 1.0 GiB GPU:0 reports" in caplog.text
