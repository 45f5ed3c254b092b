"""Backbone pretraining: the classifier, its records and input, its training
through the one loop, top-1/top-5 evaluation, its checkpoint as DeepLab's
backbone weights, and the paper's ImageNet recipe."""

import json
import logging
import re

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deeplab import backbones
from deeplab import classifier
from deeplab import config as config_lib
from deeplab import evaluation
from deeplab import model as model_lib
from deeplab import naming
from deeplab import run_dir
from deeplab import weights
from deeplab.data import builder
from deeplab.data import classification
from deeplab.data import dataset_table
from deeplab.training import loop
from deeplab.training import schedule as schedule_lib
from deeplab.training import warm_start
from deeplab_configs import imagenet_xception65
from deeplab_configs import synthetic
from deeplab_configs import synthetic_shapes
from tests import harness


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
  """The synthetic classification records (320 train, 64 val)."""
  return harness.make_synthetic_classification_records(
      tmp_path_factory.mktemp("shapes"))


@pytest.mark.parametrize("backbone, kwargs, head", [
    ("mobilenet_v2", dict(depth_multiplier=0.25),
     ["MobilenetV2/Conv_1/weights"] +
     [f"MobilenetV2/Conv_1/BatchNorm/{v}"
      for v in ("gamma", "beta", "moving_mean", "moving_variance")] +
     ["MobilenetV2/Logits/Conv2d_1c_1x1/weights",
      "MobilenetV2/Logits/Conv2d_1c_1x1/biases"]),
    ("resnet_50", dict(multi_grid=(1, 2, 4)),
     ["resnet_v1_50/logits/weights", "resnet_v1_50/logits/biases"]),
    ("xception_41", {}, ["xception_41/logits/weights",
                         "xception_41/logits/biases"]),
])
def test_the_classifier_head_has_the_original_imagenet_names(backbone, kwargs, head):
  model = classifier.Classifier(num_classes=7, backbone=backbone,
                                output_stride=32, **kwargs)
  names = naming.original_names(model)
  beyond_the_backbone = sorted(
      n for n in names if not backbones.get(backbone).is_backbone_weight(n))
  assert beyond_the_backbone == sorted(head)
  assert names[head[-1]].shape == (7,)  # The logits' biases.
  logits = model(harness.random_images((2, 40, 40, 3)), training=False)
  assert logits.shape == (2, 7) and logits.dtype == "float32"


def test_classifier_config_round_trip_and_task_errors():
  model = classifier.Classifier(num_classes=3, backbone="mobilenet_v2",
                                depth_multiplier=0.25, output_stride=32)
  rebuilt = classifier.Classifier.from_config(model.get_config())
  assert rebuilt.args == model.args and rebuilt.args.task == "classification"
  with pytest.raises(ValueError, match="task must be 'segmentation'"):
    model_lib.DeepLab(model.args)
  config = synthetic_shapes.get_config()
  config.model.task = "detection"
  with pytest.raises(ValueError, match="config.model.task must be one of"):
    config_lib.validate(config)


def test_a_released_imagenet_checkpoint_loads_into_the_classifier(tmp_path):
  """A slim ImageNet checkpoint (1001 logits, global_step) loads whole."""
  model = classifier.Classifier(num_classes=1001, backbone="mobilenet_v2",
                                depth_multiplier=0.25, output_stride=32)
  arrays = {n: np.asarray(v) + 0.5 for n, v in naming.original_names(model).items()}
  arrays["global_step"] = np.array(7, np.int64)
  harness.write_tf1_checkpoint(tmp_path / "model.ckpt", arrays)
  target = classifier.Classifier(model.args)
  report = warm_start.initialize(target, str(tmp_path / "model.ckpt"),
                                 initialize_last_layer=True)
  assert not report.missing and not report.mismatched
  assert report.unused == ["global_step"]
  for name, variable in naming.original_names(target).items():
    np.testing.assert_array_equal(np.asarray(variable), arrays[name])


def test_the_recipe_config_is_the_papers_imagenet_pretraining():
  """DeepLabv3+ section 4.1: ImageNet-1k, 299x299, (Nesterov) momentum 0.9,
  learning rate 0.05 decayed by 0.94 every 2 epochs, weight decay 4e-5,
  50 GPUs x batch 32."""
  config = imagenet_xception65.get_config()
  config_lib.validate(config)
  assert config.model.task == "classification"
  assert config.model.backbone == "xception_65"
  assert config.dataset.name == "imagenet" and config.dataset.num_classes == 1001
  assert tuple(config.data.crop_size) == (299, 299)
  assert config.optimizer.momentum == 0.9 and config.optimizer.nesterov
  assert config.schedule.name == "exponential"
  assert config.schedule.base_learning_rate == 0.05
  assert config.schedule.decay_rate == 0.94 and config.schedule.decay_epochs == 2.0
  assert config.optimizer.weight_decay == 4e-5
  assert config.train.batch_size == 50 * 32
  assert config.schedule.epoch_examples == 1281167
  assert dataset_table.DATASETS["imagenet"].splits["train"] == 1281167
  assert config.model.dropout_rate == 0.5  # core/xception.py keep_prob 0.5.
  assert config.data.label_offset == 0 and config.data.central_crop == 0.875
  # Every setting the file makes is named in its docstring.
  source = imagenet_xception65.__doc__
  for key in re.findall(r"config\.(\w+\.\w+) = ",
                        open(imagenet_xception65.__file__).read()):
    assert key.split(".")[1] in source, key
  schedule = schedule_lib.from_config(config.schedule, config.train.batch_size, config.train.steps)
  steps_per_2_epochs = int(1281167 * 2 / 1600)
  assert schedule.decay_steps == steps_per_2_epochs
  np.testing.assert_allclose(
      [float(schedule(s)) for s in (0, steps_per_2_epochs - 1,
                                    steps_per_2_epochs, 10 * steps_per_2_epochs)],
      [0.05, 0.05, 0.05 * 0.94, 0.05 * 0.94 ** 10], rtol=1e-6)
  rebuilt = schedule_lib.StaircaseExponentialDecay.from_config(schedule.get_config())
  assert rebuilt.get_config() == schedule.get_config()


def test_exponential_schedule_needs_the_epoch_size():
  config = synthetic_shapes.get_config()
  config.schedule.name = "exponential"
  with pytest.raises(ValueError, match="config.schedule.epoch_examples"):
    config_lib.validate(config)


def test_input_augmentation_and_central_crop():
  image = tf.constant(np.random.default_rng(0).integers(
      0, 256, (60, 80, 3)), tf.uint8)
  seed = tf.constant([1, 2], tf.int64)
  first = classification.random_crop_and_flip(image, (32, 32), seed=seed)
  assert first.shape == (32, 32, 3)
  np.testing.assert_array_equal(
      first, classification.random_crop_and_flip(image, (32, 32), seed=seed))
  # The evaluation crop is the central 0.875 of each side, resized.
  ramp = tf.constant(np.tile(np.arange(80, dtype=np.uint8)[None, :, None],
                             (64, 1, 3)))
  crop = classification.central_crop(ramp, (56, 70), 0.875)
  np.testing.assert_allclose(crop[0, :, 0], np.arange(5, 75), atol=1e-4)


def test_a_folder_of_class_folders_becomes_shuffled_labelled_records(tmp_path):
  rng = np.random.default_rng(0)
  for name in ("cat", "dog"):
    (tmp_path / "images" / name).mkdir(parents=True)
    for i in range(4):
      Image.fromarray(rng.integers(0, 256, (20, 30), np.uint8)).save(
          tmp_path / "images" / name / f"{i}.png")  # Gray: converted to RGB.
  samples, classes = builder.list_class_folders(str(tmp_path / "images"),
                                                first_label=1)
  assert classes == ("cat", "dog")
  report = builder.build_classification_split(
      samples, str(tmp_path / "out"), "train", num_shards=2, workers=1)
  assert report.written == 8 and not report.problems
  config = synthetic_shapes.get_config()
  config.dataset.name, config.dataset.num_classes = "pets", 2
  config.data.label_offset = -1
  config.data.eval_pattern = str(tmp_path / "out" / "train-*")
  batches = list(classification.eval_dataset(config))
  labels = np.concatenate([b["label"].numpy() for b in batches])
  assert sorted(labels.tolist()) == [0] * 4 + [1] * 4
  assert labels.tolist() != sorted(labels.tolist())  # Shuffled.
  assert batches[0]["image"].shape[1:] == (48, 48, 3)


def test_a_label_outside_the_classes_stops_the_pipeline(shapes):
  config = synthetic_shapes.get_config()
  config.data.eval_pattern = str(shapes / "val-*")
  config.data.label_offset = 3  # Labels 0..3 become 3..6 of 4 classes.
  with pytest.raises(tf.errors.InvalidArgumentError, match="label_offset"):
    list(classification.eval_dataset(config))


@pytest.mark.slow
def test_pretraining_learns_and_initialises_a_deeplab_backbone(shapes, tmp_path,
                                                              caplog):
  """The synthetic shapes' classifier trains through train.py (the loop of
  segmentation), learns well above chance (0.25), evaluation writes top-1 and
  top-5, and its run folder initialises DeepLab's backbone by name."""
  # (The README's commands run the same path through eval.py and train.py.)
  run = tmp_path / "pretrain"
  code, output = harness.run_train(run, [
      f"--config.data.train_pattern={shapes}/train-*.tfrecord",
      f"--config.data.eval_pattern={shapes}/val-*.tfrecord",
      "--config.train.steps=200", "--config.checkpoint.every=200",
      "--config.train.steps_per_loop=10", "--config.data.deterministic=True"],
      config="configs/synthetic_shapes.py", extra_flags=["--mode=train_and_eval"])
  assert code == 0, output
  trained = json.loads((run / "eval" / "metrics.json").read_text())
  assert trained["step"] == 200 and trained["examples"] == 64
  # Well above chance (0.25): a classifier at chance gets 26 or more of the
  # 64 right with probability under 0.5%. The value differs per CPU kind
  # (kernels round differently): 0.4375 at 200 steps on an AVX2-only AMD
  # EPYC, 0.5 or more on an AVX-512 Xeon.
  assert trained["top_1_accuracy"] >= 0.4, trained
  assert (run / "train").is_dir()  # TensorBoard summaries.
  log = [json.loads(line) for line in
         (run / run_dir.LOG_FILE).read_text().splitlines()]
  assert log[-1]["val_top_1_accuracy"] == trained["top_1_accuracy"]

  # eval.py's evaluation (the README runs the CLI): the folded model.
  (run / "eval" / "metrics.json").unlink()
  evaluation.evaluate_checkpoint(run_dir.read_config(str(run)), str(run))
  metrics = json.loads((run / "eval" / "metrics.json").read_text())
  assert set(metrics) == {"top_1_accuracy", "top_5_accuracy", "examples", "step",
                          "checkpoint"}
  assert metrics["top_5_accuracy"] == 1.0  # 4 classes: top-5 is top-4.
  assert metrics["top_1_accuracy"] == pytest.approx(trained["top_1_accuracy"],
                                                    abs=0.02)

  # Every backbone weight of DeepLab comes from the classifier's checkpoint.
  pretrained, _ = run_dir.restore_model(run_dir.read_config(str(run)), str(run))
  source = {n: np.asarray(v) for n, v in naming.original_names(pretrained).items()}
  deeplab_model = model_lib.build_model(synthetic.get_config())
  backbone = [n for n in naming.original_names(deeplab_model)
              if backbones.get("mobilenet_v2").is_backbone_weight(n)]
  report = weights.load_backbone_weights(deeplab_model, str(run))
  assert sorted(report.loaded) == sorted(backbone) and not report.missing
  assert sorted(report.unused) == sorted(
      n for n in source if n.startswith(("MobilenetV2/Conv_1/", "MobilenetV2/Logits/")))
  names = naming.original_names(deeplab_model)
  for name in backbone:
    np.testing.assert_array_equal(np.asarray(names[name]), source[name])

  # Segmentation training starts from it, and says so.
  records = harness.make_synthetic_records(tmp_path / "seg", train_size=8, val_size=2)
  config = harness.config_with(records, **{"train.steps": "2",
                                           "checkpoint.every": "2"})
  config.model.backbone_weights = str(run)
  with caplog.at_level(logging.INFO, logger="absl"):
    result = loop.train(config, str(tmp_path / "segment"))
  assert result["step"] == 2
  assert f"all {len(backbone)} weights of backbone mobilenet_v2 loaded" in caplog.text

  # The classification run resumes as a segmentation run does.
  config = run_dir.read_config(str(run))
  config.train.steps = 202
  with caplog.at_level(logging.INFO, logger="absl"):
    assert loop.train(config, str(run))["step"] == 202
  assert "Resumed from" in caplog.text and "ckpt-200" in caplog.text


def test_a_tfds_classification_dataset_becomes_records(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  from deeplab_datasets import build_tfds  # pylint: disable=g-import-not-at-top
  images = [np.full((10 + i, 12, 3), 40 * i, np.uint8) for i in range(3)]

  def as_dataset(self, *args, **kwargs):
    del self, args, kwargs
    return tf.data.Dataset.from_generator(
        lambda: ({"image": im, "segmentation_mask": im[..., :1], "label": i + 3,
                  "species": 0, "file_name": "x"} for i, im in enumerate(images)),
        output_signature={
            "image": tf.TensorSpec([None, None, 3], tf.uint8),
            "segmentation_mask": tf.TensorSpec([None, None, 1], tf.uint8),
            "label": tf.TensorSpec([], tf.int64),
            "species": tf.TensorSpec([], tf.int64),
            "file_name": tf.TensorSpec([], tf.string)})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    samples = build_tfds.class_samples("oxford_iiit_pet", "train")
  assert [s.label for s in samples] == [3, 4, 5]
  assert len({s.text for s in samples}) == 3 and all(s.text for s in samples)
  report = builder.build_classification_split(samples, str(tmp_path), "train",
                                              1, workers=1)
  assert report.written == 3
  config = synthetic_shapes.get_config()
  config.dataset.name, config.dataset.num_classes = "oxford_iiit_pet", 37
  config.data.eval_pattern = report.shards[0]
  (batch,) = list(classification.eval_dataset(config))
  assert sorted(batch["label"].numpy().tolist()) == [3, 4, 5]
