"""Keras-native training: ``DeepLab`` with ``compile``/``fit``/``evaluate`` on
the input pipeline, with ``deeplab.SegmentationLoss`` and
``deeplab.MeanIoU``, which agree with the custom loop's loss and with
evaluation's mIoU."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import deeplab
from deeplab import evaluation
from deeplab import loss as loss_lib
from deeplab import metrics as metrics_lib
from deeplab import model as model_lib
from deeplab import run_dir
from deeplab.data import pipeline
from tests import harness


@pytest.fixture(scope="module")
def small_records(tmp_path_factory):
  """Synthetic records at 65x65: 32 train, 8 val images."""
  return harness.make_synthetic_records(tmp_path_factory.mktemp("fit"),
                                        train_size=32, val_size=8, image_size=65)


def _labels_and_logits(seed=0, size=9, classes=4):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, (2, size, size)).astype("int32")
  labels[0, :3] = 255
  logits = rng.normal(0, 2, (2, size, size, classes)).astype("float32")
  return labels, logits


def test_the_loss_is_the_custom_loops_pixel_loss():
  labels, logits = _labels_and_logits()
  weights = (1.0, 2.0, 0.5, 3.0)
  losses, labelled = loss_lib.pixel_losses(logits, labels, 4, 255, weights)
  expected = float(tf.reduce_sum(losses) / tf.reduce_sum(labelled))
  loss = deeplab.SegmentationLoss(num_classes=4, class_weights=weights)
  assert float(loss(labels, logits)) == pytest.approx(expected, rel=1e-6)
  # float16 logits (mixed precision) give the float32 loss.
  assert float(loss(labels, logits.astype("float16"))) == pytest.approx(expected, rel=1e-3)
  # Logits at another size are resized to the labels' first.
  small = tf.raw_ops.ResizeBilinear(images=logits, size=[5, 5], align_corners=True)
  resized = tf.raw_ops.ResizeBilinear(images=small, size=[9, 9], align_corners=True)
  np.testing.assert_allclose(float(loss(labels, small)),
                             float(loss(labels, resized)), rtol=1e-6)


def test_the_metric_is_evaluations_miou_and_both_serialize():
  labels, logits = _labels_and_logits(seed=1)
  metric = deeplab.MeanIoU(num_classes=4)
  metric.update_state(labels[:1], logits[:1])
  metric.update_state(labels[1:], logits[1:])
  matrix = metrics_lib.confusion_matrix(labels, np.argmax(logits, -1), 4, 255)
  expected = metrics_lib.metrics_from_confusion(matrix, list("abcd"))["miou"]
  assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
  metric.reset_state()
  assert float(metric.result()) == 0.0
  # An in-range ignore label is no class, as in evaluation.
  in_range = deeplab.MeanIoU(num_classes=4, ignore_label=3)
  in_range.update_state(labels, logits)
  matrix = metrics_lib.confusion_matrix(labels, np.argmax(logits, -1), 4, 3)
  assert float(in_range.result()) == pytest.approx(metrics_lib.metrics_from_confusion(
      matrix, list("abcd"), (0, 1, 2))["miou"], abs=1e-6)
  for made in (deeplab.SegmentationLoss(num_classes=4, ignore_label=3,
                                        class_weights=(1, 2, 3, 4),
                                        align_corners=False),
               deeplab.MeanIoU(num_classes=4, ignore_label=3, align_corners=False)):
    rebuilt = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(made))
    assert type(rebuilt) is type(made)
    assert rebuilt.get_config() == made.get_config()
  with pytest.raises(ValueError, match="class_weights must have num_classes=4"):
    deeplab.SegmentationLoss(num_classes=4, class_weights=(1.0, 2.0))


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # evaluate: records of unknown count
def test_compile_fit_learns_and_evaluate_matches_eval(small_records, tmp_path):
  config = harness.config_with(small_records, **{"eval.crop_size": "(65,65)"})
  keras.utils.set_random_seed(0)
  model = model_lib.build_model(config)
  model.compile(keras.optimizers.SGD(0.02, momentum=0.9),
                loss=deeplab.SegmentationLoss(num_classes=5),
                metrics=[deeplab.MeanIoU(num_classes=5)])
  val = deeplab.image_label_pairs(pipeline.eval_dataset(config))
  before = model.evaluate(val, return_dict=True, verbose=0)
  history = model.fit(pipeline.train_dataset(config), epochs=3,
                      steps_per_epoch=10, verbose=0).history
  assert history["loss"][-1] < history["loss"][0], history
  after = model.evaluate(val, return_dict=True, verbose=0)
  assert after["miou"] > before["miou"] + 0.1, (before, after)
  # eval.py's evaluation of the same weights: restored, batch norm folded.
  run_dir.save_model(model, config, str(tmp_path), step=30)
  metrics = evaluation.evaluate_checkpoint(config, str(tmp_path))
  assert metrics["miou"] == pytest.approx(after["miou"], abs=1e-4)
