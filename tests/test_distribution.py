"""Ready for GPU clusters and TPUs, checked on a CPU.

Several replicas run on logical CPU devices in a subprocess (the split must
happen before TensorFlow starts); XLA (``jit_compile=True``) on the CPU
stands in for a TPU compiler, which rejects the same dynamic shapes and
strings.
"""

import io
import logging
import os
import re

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deeplab import config as config_lib
from deeplab import evaluation
from deeplab import model as model_lib
from deeplab import naming
from deeplab import predict
from deeplab import weights
from deeplab.data import audit
from deeplab.data import builder
from deeplab.data import pipeline
from deeplab.data import records
from deeplab.tasks import segmentation
from deeplab.training import strategy as strategy_lib
from deeplab.training import trainer as trainer_lib
from tests.harness import config_with
from tests.harness import randomize_batch_norm
from tests.harness import run_cli
from tests.harness import small_model

# Splits the CPU into argv[1] logical devices, then runs the test's code.
LOGICAL_CPUS = """
import sys
import numpy as np, tensorflow as tf, keras
replicas = int(sys.argv[1])
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
"""


def _run_script(body, *args, timeout=600):
  result = run_cli("-c", LOGICAL_CPUS + body, *map(str, args), timeout=timeout)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  return result.stdout


# --- 1. The TPU address. ---


def test_tpu_default_is_the_attached_tpu_of_a_tpu_vm(monkeypatch):
  assert config_lib.base_config().distribution.tpu == "local"
  seen = []

  class Resolver:  # Stands in for the Cloud TPU client; records its input.
    def __init__(self, tpu):
      seen.append(tpu)
      raise RuntimeError("no TPU here")

  monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver",
                      Resolver)
  with pytest.raises(RuntimeError, match="no TPU here"):
    strategy_lib.make_strategy("tpu")
  with pytest.raises(RuntimeError, match="no TPU here"):
    strategy_lib.make_strategy("tpu", "my-pod")
  assert seen == ["local", "my-pod"]


def test_an_empty_tpu_address_is_refused_naming_the_field():
  config = config_lib.base_config()
  config.distribution.strategy = "tpu"
  config.distribution.tpu = ""
  with pytest.raises(ValueError, match="config.distribution.tpu"):
    config_lib.validate(config)
  with pytest.raises(ValueError, match="config.distribution.tpu"):
    strategy_lib.make_strategy("tpu", "")


# --- 3. Resuming with several replicas per input pipeline. ---

RESUMED_RECORDS = """
from deeplab.data import pipeline
from tests.harness import config_with
from tests.harness import randomize_batch_norm
config = config_with(sys.argv[2], **{"train.batch_size": str(2 * replicas)})

def batches(start_step, steps):
  dataset = strategy.distribute_datasets_from_function(
      lambda context: pipeline.train_dataset(config, context,
                                             start_step=start_step))
  iterator = iter(dataset)
  out = []
  for _ in range(steps):
    _, labels = next(iterator)
    out.append(np.concatenate(
        [t.numpy() for t in strategy.experimental_local_results(labels)]))
  return out

straight = batches(0, 5)
resumed = batches(3, 2)
print("same_records", all(np.array_equal(a, b)
                          for a, b in zip(straight[3:], resumed)))
"""


@pytest.mark.parametrize("replicas", [2, 4])
def test_resumed_pipeline_continues_with_the_next_records(records, replicas):
  output = _run_script(RESUMED_RECORDS, replicas, records, timeout=300)
  assert "same_records True" in output, output


RESUMED_WEIGHTS = """
import os, signal
from deeplab import naming, run_dir
from deeplab.training import loop, trainer as trainer_lib
from tests.harness import config_with
from tests.harness import randomize_batch_norm
records, root = sys.argv[2], sys.argv[3]
config = config_with(records, **{"train.steps": "4", "checkpoint.every": "2",
                                 "train.steps_per_loop": "2"})
save = trainer_lib.Trainer.save

def save_then_stop(self):  # As a preempted job: SIGTERM after step 2's save.
  path = save(self)
  if self.step == 2:
    os.kill(os.getpid(), signal.SIGTERM)
  return path

loop.train(config, f"{root}/straight", strategy)
trainer_lib.Trainer.save = save_then_stop
first = loop.train(config, f"{root}/resumed", strategy)
trainer_lib.Trainer.save = save
second = loop.train(config, f"{root}/resumed", strategy)
print("stops", first["step"], first["stopped"], second["step"])

def weights(workdir):
  model, _ = run_dir.restore_model(config, workdir)
  return {n: np.asarray(v) for n, v in naming.original_names(model).items()}

expected, got = weights(f"{root}/straight"), weights(f"{root}/resumed")
print("max_abs_diff", max(float(np.abs(expected[n] - got[n]).max())
                          for n in expected))
"""


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [2])  # 4 works too, in twice the time.
def test_resume_with_several_replicas_matches_an_uninterrupted_run(
    records, tmp_path, replicas):
  # About a minute per training run on 2 cores (three runs): the records
  # test above covers 2 and 4 replicas in seconds; this one checks that the
  # weights follow.
  output = _run_script(RESUMED_WEIGHTS, replicas, records, tmp_path)
  assert "stops 2 SIGTERM 4" in output, output
  diff = float(re.search(r"max_abs_diff (\S+)", output).group(1))
  # Float reduction order only (see test_training's resume test); skipping
  # too few records trains steps 3-4 on other images: differences ~1e-2.
  assert diff < 1e-4, output


# --- 4. float16 overflow on one replica only. ---

FLOAT16_OVERFLOW = """
from deeplab.training import trainer as trainer_lib
keras.mixed_precision.set_global_policy("mixed_float16")
with strategy.scope():
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
  inner = keras.optimizers.SGD(0.1)
  optimizer = (trainer_lib.ReplicaAgreeingLossScaleOptimizer(inner)
               if sys.argv[2] == "agreeing" else
               keras.optimizers.LossScaleOptimizer(inner))
  optimizer.build(model.trainable_variables)
before = [np.array(w) for w in model.trainable_variables]
# Replica 1 gets inputs whose scaled gradient (x * 2**15) exceeds float16's
# 65504; replica 0's are small. Both losses are finite.
x = np.array([[0.01] * 4, [1000.0] * 4], np.float32)
dataset = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices(x).batch(2))

def step(batch):
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.cast(model(batch), tf.float32))
    scaled = optimizer.scale_loss(loss)
  grads = tape.gradient(scaled, model.trainable_variables)
  optimizer.apply(grads, model.trainable_variables)

tf.function(lambda b: strategy.run(step, args=(b,)))(next(iter(dataset)))
after = [np.array(w) for w in model.trainable_variables]
print("weights_finite", all(np.isfinite(w).all() for w in after))
print("weights_unchanged", all(np.array_equal(a, b) for a, b in zip(before, after)))
print("scale", float(optimizer.dynamic_scale.numpy()))
"""


def test_a_float16_overflow_on_one_replica_is_skipped_by_all():
  output = _run_script(FLOAT16_OVERFLOW, 2, "agreeing", timeout=300)
  assert "weights_finite True" in output, output
  assert "weights_unchanged True" in output, output
  assert "scale 16384.0" in output, output  # Halved from 2**15.


def test_keras_loss_scaling_alone_lets_another_replicas_overflow_through():
  # The failure the agreeing optimizer exists for: replica 0 sees finite
  # gradients and applies the all-reduced sum, Inf included.
  output = _run_script(FLOAT16_OVERFLOW, 2, "keras", timeout=300)
  assert "weights_finite False" in output, output


# --- 6. Every user path through tf.io.gfile (ram:// stands in for gs://). ---


def _write_png(path, array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(buffer.getvalue())


def test_records_are_built_audited_and_listed_on_a_cloud_filesystem():
  root = "ram://deeplab_test_build"
  rng = np.random.default_rng(0)
  for i in range(3):
    _write_png(f"{root}/images/img{i}.png",
               rng.integers(0, 255, (9, 11, 3), dtype=np.uint8))
    _write_png(f"{root}/masks/img{i}.png",
               rng.integers(0, 3, (9, 11), dtype=np.uint8))
  samples = builder.pair_by_stem(f"{root}/images", f"{root}/masks")
  assert [s.mask_path for s in samples] == [
      f"{root}/masks/img{i}.png" for i in range(3)]
  assert predict.list_inputs(f"{root}/images") == [s.image_path for s in samples]
  assert len(predict.list_inputs(f"{root}/images/img1.*")) == 1
  report = builder.build_split(samples, builder.LabelSpec(3, 255),
                               f"{root}/out", "train", num_shards=2, workers=1)
  assert report.written == 3 and not report.problems, report.summary()
  assert records.existing_shards(f"{root}/out", "train") == report.shards
  audited = audit.audit_path(f"{root}/out")
  assert sum(audited.pixels.values()) == 3 * 9 * 11
  with pytest.raises(FileNotFoundError, match="does not exist"):
    builder.pair_by_stem(f"{root}/nothing", None)


def test_backbone_weights_load_from_a_cloud_path(tmp_path):
  source = small_model("mobilenet_v2")
  source.save(tmp_path / "backbone.keras")
  remote = "ram://deeplab_test_weights/backbone.keras"
  tf.io.gfile.makedirs(os.path.dirname(remote))
  tf.io.gfile.copy(str(tmp_path / "backbone.keras"), remote, overwrite=True)
  target = small_model("mobilenet_v2")
  report = weights.load_backbone_weights(target, remote)
  assert report.loaded
  name = "MobilenetV2/Conv/weights"
  np.testing.assert_array_equal(naming.original_names(target)[name],
                                naming.original_names(source)[name])
  with pytest.raises(FileNotFoundError, match="missing.keras"):
    weights.load_backbone_weights(target, "ram://deeplab_test_weights/missing.keras")


# --- 2 and 7. Evaluation: XLA-compatible, traced once, on the host for TPUs. ---


@pytest.fixture(scope="module")
def synthetic_model(records):
  config = config_with(records, **{"model.dropout_rate": "0.0"})
  # Batch norm statistics as after training: an initialized model's logits
  # are ~1e-6 apart, and any change of float order flips its argmax.
  model = randomize_batch_norm(model_lib.build_model(config),
                               np.random.default_rng(0))
  return config, model


def _eval_batches(config):
  return pipeline.eval_dataset(config).map(
      lambda b: {"image": b["image"], "label": b["label"]})


def test_the_evaluation_step_compiles_with_xla(synthetic_model):
  config, model = synthetic_model
  strategy = tf.distribute.get_strategy()
  plain = segmentation.confusion_over_dataset(
      model, _eval_batches(config), strategy, 5, 255, max_batches=4)
  compiled = segmentation.confusion_over_dataset(
      model, _eval_batches(config), strategy, 5, 255, max_batches=4,
      jit_compile=True)
  assert compiled.sum() == plain.sum() > 0
  # XLA's float order differs from oneDNN's: at most a few near-ties flip.
  assert np.abs(compiled - plain).sum() <= 1e-3 * plain.sum()


def test_the_evaluation_function_is_traced_once_across_evaluations(
    synthetic_model):
  config, model = synthetic_model
  strategy = tf.distribute.get_strategy()
  for _ in range(3):
    segmentation.confusion_over_dataset(model, _eval_batches(config), strategy,
                                        5, 255, max_batches=2)
  step = segmentation.eval_step(model, strategy, 5, 255)
  assert step.experimental_get_tracing_count() == 1
  assert segmentation.eval_step(model, strategy, 5, 255, flip=True) is not step


def test_the_training_step_compiles_with_xla_at_the_recipe_crop(records, tmp_path):
  # configs/synthetic.py's crop (129x129) and batch; XLA refuses dynamic
  # shapes and strings as a TPU does.
  config = config_with(records, **{"data.crop_size": "(129,129)",
                                   "train.batch_size": "2"})
  trainer = trainer_lib.Trainer(config, str(tmp_path),
                                tf.distribute.get_strategy())
  loop = trainer.make_train_loop(jit_compile=True)
  iterator = iter(pipeline.train_dataset(config))
  loss = float(loop(iterator, tf.constant(2)))
  assert np.isfinite(loss) and trainer.step == 2


def test_tpu_and_multi_worker_jobs_evaluate_on_the_host():
  tpu = tf.distribute.TPUStrategy.__new__(tf.distribute.TPUStrategy)
  assert strategy_lib.evaluates_on_host(tpu)
  multi = tf.distribute.MultiWorkerMirroredStrategy.__new__(
      tf.distribute.MultiWorkerMirroredStrategy)
  assert strategy_lib.evaluates_on_host(multi)
  assert not strategy_lib.evaluates_on_host(tf.distribute.get_strategy())
  assert not strategy_lib.evaluates_on_host(
      tf.distribute.MirroredStrategy(["/cpu:0"]))


def test_host_evaluation_gives_the_live_models_metrics(records, tmp_path,
                                                       monkeypatch):
  config = config_with(records, **{"eval.num_summary_images": "0"})
  trainer = trainer_lib.Trainer(config, str(tmp_path),
                                tf.distribute.get_strategy())
  loop = trainer.make_train_loop()
  loop(iter(pipeline.train_dataset(config)), tf.constant(2))
  live, strategy = trainer.evaluation_model()
  assert live is trainer.model
  expected = evaluation.evaluate_model(config, live, str(tmp_path / "a"), 2,
                                       strategy)
  monkeypatch.setattr(strategy_lib, "evaluates_on_host", lambda s: True)
  host, host_strategy = trainer.evaluation_model()
  assert host is not trainer.model
  got = evaluation.evaluate_model(config, host, str(tmp_path / "b"), 2,
                                  host_strategy)
  assert got == expected
  loop(iter(pipeline.train_dataset(config)), tf.constant(1))
  again, _ = trainer.evaluation_model()  # The same copy, new weights.
  assert again is host
  np.testing.assert_array_equal(again.get_weights()[0],
                                trainer.model.get_weights()[0])


# --- 7. Shard counts for clusters. ---


def test_default_shard_counts_serve_clusters():
  assert builder.default_num_shards(10) == 10
  assert builder.default_num_shards(1449) == 32  # VOC val.
  assert builder.default_num_shards(10582) == 106  # VOC train_aug.
  assert builder.default_num_shards(10**6) == 1024
  with pytest.raises(ValueError, match="num_shards must be >= 1.*got 0"):
    builder.build_split([builder.Sample("a.png", None)],
                        builder.LabelSpec(3, 255), "unused", "train", 0)


def test_a_pattern_with_fewer_files_than_pipelines_warns(records, caplog):
  config = config_with(records)  # One train shard.
  context = tf.distribute.InputContext(num_input_pipelines=2,
                                       input_pipeline_id=0,
                                       num_replicas_in_sync=2)
  with caplog.at_level(logging.WARNING):
    pipeline.train_dataset(config, context)
  assert "config.data.train_pattern matches 1 files for 2 input pipelines" \
      in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    pipeline.train_dataset(config, tf.distribute.InputContext())
  assert "input pipelines" not in caplog.text
