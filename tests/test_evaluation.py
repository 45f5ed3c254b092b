"""mIoU from confusion matrices, multi-scale/flip inference, any image size."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import inference
from deeplab import metrics as metrics_lib
from deeplab import model as model_lib
from deeplab.tasks import segmentation


def numpy_miou(labels, predictions, num_classes, ignore_label):
  """The textbook definition, one class at a time."""
  keep = labels != ignore_label
  labels, predictions = labels[keep], predictions[keep]
  ious = []
  for c in range(num_classes):
    union = np.sum((labels == c) | (predictions == c))
    if union:
      ious.append(np.sum((labels == c) & (predictions == c)) / union)
  return np.mean(ious), np.mean(labels == predictions)


def test_confusion_matrix_miou_equals_numpy_with_ignored_pixels():
  rng = np.random.RandomState(0)
  labels = rng.randint(0, 6, (4, 37, 53))
  labels[rng.rand(*labels.shape) < 0.2] = 255
  # Predictions right 60% of the time, so IoUs are far from 0 and 1.
  predictions = np.where(rng.rand(*labels.shape) < 0.6, labels,
                         rng.randint(0, 6, labels.shape))
  predictions[labels == 255] = rng.randint(0, 6, np.sum(labels == 255))
  matrix = metrics_lib.confusion_matrix(labels, predictions, 6, 255).numpy()
  assert matrix.sum() == np.sum(labels != 255)
  metrics = metrics_lib.metrics_from_confusion(matrix, [f"c{i}" for i in range(6)])
  miou, accuracy = numpy_miou(labels, predictions, 6, 255)
  assert metrics["miou"] == pytest.approx(miou, abs=1e-12)
  assert metrics["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-12)
  assert 0.3 < miou < 0.7
  assert set(metrics["per_class_iou"]) == {f"c{i}" for i in range(6)}


def test_a_class_absent_from_truth_and_predictions_is_left_out():
  labels = np.array([0, 0, 1, 1])
  matrix = metrics_lib.confusion_matrix(labels, labels, 3, 255).numpy()
  metrics = metrics_lib.metrics_from_confusion(matrix, ["a", "b", "c"])
  assert metrics["miou"] == 1.0
  assert metrics["per_class_iou"]["c"] is None
  assert metrics["per_class_recall"]["c"] is None
  assert metrics["per_class_precision"]["c"] is None


def test_recall_and_precision_say_which_side_an_iou_lacks():
  # Truth: 4 pixels of a, 4 of b. Predicted: every b pixel and 2 a pixels
  # as b: b is found whole (recall 1) but 2 of its 6 are wrong.
  labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
  predictions = np.array([0, 0, 1, 1, 1, 1, 1, 1])
  matrix = metrics_lib.confusion_matrix(labels, predictions, 2, 255).numpy()
  metrics = metrics_lib.metrics_from_confusion(matrix, ["a", "b"])
  assert metrics["per_class_recall"] == {"a": 0.5, "b": 1.0}
  assert metrics["per_class_precision"] == {"a": 1.0, "b": pytest.approx(4 / 6)}
  assert metrics["per_class_iou"] == {"a": 0.5, "b": pytest.approx(4 / 6)}


@pytest.fixture(scope="module")
def small_model():
  keras.utils.set_random_seed(1)
  model = model_lib.DeepLab(num_classes=4, backbone="mobilenet_v2",
                            depth_multiplier=0.5, output_stride=16,
                            atrous_rates=(), decoder_filters=32)
  # Random moving statistics so inference-mode outputs are not near-constant.
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.moving_mean.assign(np.random.RandomState(2).normal(
          0, 0.1, layer.moving_mean.shape))
  # Sharper logits: a fresh head predicts nearly uniform probabilities.
  logits = model.get_layer("logits.semantic")
  logits.kernel.assign(logits.kernel * 200.0)
  return model


def test_one_scale_without_flip_is_the_plain_forward_pass(small_model):
  images = tf.random.uniform([2, 65, 97, 3], -1, 1, seed=3)
  plain = tf.nn.softmax(small_model(images, training=False))
  got = inference.predict_probabilities(small_model, images, (1.0,), False)
  np.testing.assert_allclose(got, plain, atol=1e-6)
  # The same call with more scales or flipping does change the result, so the
  # equality above is not vacuous.
  multi = inference.predict_probabilities(small_model, images, (0.75, 1.0), True)
  assert np.abs(multi - plain).max() > 1e-2


def test_flipping_averages_the_mirrored_prediction(small_model):
  images = tf.random.uniform([1, 65, 65, 3], -1, 1, seed=4)
  both = inference.predict_probabilities(small_model, images, (1.0,), True)
  mirrored = inference.predict_probabilities(small_model, tf.reverse(images, [2]),
                                             (1.0,), True)
  np.testing.assert_allclose(both, tf.reverse(mirrored, [2]), atol=1e-6)


@pytest.mark.parametrize("height, width", [(50, 70), (33, 33), (1, 1)])
def test_any_image_size_gets_a_full_resolution_prediction(small_model, height, width):
  images = tf.random.uniform([1, height, width, 3], -1, 1, seed=5)
  probabilities = inference.predict_probabilities(
      small_model, images, (0.5, 1.0, 1.5), True)
  assert probabilities.shape == (1, height, width, 4)
  np.testing.assert_allclose(tf.reduce_sum(probabilities, -1), 1.0, atol=1e-5)


def test_evaluate_sums_the_confusion_matrix_over_the_dataset(small_model):
  images = tf.random.uniform([3, 33, 49, 3], -1, 1, seed=6)
  labels = tf.random.uniform([3, 33, 49], 0, 4, dtype=tf.int32, seed=7)
  dataset = tf.data.Dataset.from_tensor_slices(
      {"image": images, "label": labels}).batch(1)
  total = segmentation.confusion_over_dataset(
      small_model, dataset, tf.distribute.get_strategy(), 4, 255)
  predictions = tf.argmax(inference.predict_probabilities(small_model, images), -1)
  expected = metrics_lib.confusion_matrix(labels, predictions, 4, 255).numpy()
  np.testing.assert_array_equal(total, expected)
  assert total.sum() == 3 * 33 * 49


class MeanModel:
  """Stand-in network: logits (mean of channel 0 over the whole input, 0)
  at every pixel, so its softmax shows which area the input covered; it
  also records the input sizes it was given."""

  def __init__(self):
    self.sizes = []

  def __call__(self, images, training=False):
    del training
    self.sizes.append(tuple(int(d) for d in images.shape[1:3]))
    mean = tf.reduce_mean(images[..., :1], axis=[1, 2], keepdims=True)
    mean = tf.broadcast_to(mean, tf.shape(images[..., :1]))
    return tf.concat([mean, tf.zeros_like(mean)], -1)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


@pytest.mark.parametrize("height, width, crop, stride, padded_area", [
    (10, 12, (17, 17), 8, 17 * 17),   # Padded to the crop, as the original.
    (20, 12, (17, 17), 8, 25 * 17),   # Taller than the crop: 8 * 3 + 1 rows.
    (10, 12, None, 4, 13 * 13),       # No crop: stride-aligned only.
    (10, 12, (1, 1), 4, 13 * 13),     # (1, 1): the same.
])
def test_images_are_padded_to_the_eval_crop_with_the_mean_pixel(
    height, width, crop, stride, padded_area):
  images = tf.ones([1, height, width, 3])  # Padding is 0, the mean pixel.
  model = MeanModel()
  probabilities = inference.predict_probabilities(
      model, images, output_stride=stride, crop_size=crop)
  # The padded area the network saw, from the image's pixel sum alone.
  expected = sigmoid(height * width / padded_area)
  assert probabilities.shape == (1, height, width, 2)
  np.testing.assert_allclose(probabilities[..., 0], expected, rtol=1e-6)


def test_eval_crop_size_defaults_per_dataset_and_is_validated():
  from deeplab import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config()
  assert config_lib.eval_crop_size(config) == (513, 513)  # VOC.
  config.dataset.name, config.dataset.num_classes = "cityscapes", 19
  assert config_lib.eval_crop_size(config) == (1025, 2049)
  config.dataset.name, config.dataset.num_classes = "camvid", 11
  config.dataset.ignore_label = 11
  assert config_lib.eval_crop_size(config) is None
  config.eval.crop_size = (257, 257)
  assert config_lib.eval_crop_size(config) == (257, 257)
  config_lib.validate(config)
  config.eval.crop_size = (256, 256)
  with pytest.raises(ValueError, match=r"config.eval.crop_size must be .*256"):
    config_lib.validate(config)


def test_scales_resize_the_padded_crop_to_the_originals_sizes():
  images = tf.ones([1, 10, 12, 3])
  model = MeanModel()
  probabilities = inference.predict_probabilities(
      model, images, scales=(0.5, 0.75, 1.0, 1.75), output_stride=8,
      crop_size=(17, 25))
  # (d - 1) * s + 1 of the padded 17x25 crop, written out by hand (the
  # image's own 10x12 would give 5x6, 7x9, 17x21 with int(d * s)).
  assert model.sizes == [(9, 13), (13, 19), (17, 25), (29, 43)]
  # Every scale saw the same padded crop, whose mean (aligned-corner
  # resizes of a bottom/right block of ones) is near 120 / 425.
  assert probabilities.shape == (1, 10, 12, 2)
  np.testing.assert_allclose(probabilities[0, 0, 0, 0],
                             sigmoid(120 / 425), atol=0.02)
