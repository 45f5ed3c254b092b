"""Large images in tiles: inference, evaluation, the SavedModel, the config."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import deeplab
from deeplab import config as config_lib
from deeplab import evaluation
from deeplab import folding
from deeplab import inference
from deeplab import model as model_lib
from deeplab import rules
from deeplab.data import augment
from deeplab.data import dataset_table
from deeplab.export import savedmodel
from tests import harness


@pytest.fixture(scope="module")
def tiny_model():
  keras.utils.set_random_seed(1)
  return harness.randomize_batch_norm(harness.small_model("mobilenet_v2"),
                                      np.random.default_rng(0))


def smooth_images(shape, seed=0):
  """uint8 images with structure at several scales (upsampled noise)."""
  batch, height, width = shape
  coarse = np.random.default_rng(seed).uniform(0, 255, (batch, 12, 16, 3))
  return tf.cast(tf.image.resize(coarse, (height, width)), tf.uint8).numpy()


class PixelModel(keras.Model):
  """Logits of each pixel from that pixel alone: tiles must then give the
  whole image's probabilities, so this checks the windows, the sum and the
  count map (which pixel each tile's output lands on)."""

  def __init__(self):
    super().__init__()
    self.args = types.SimpleNamespace(output_stride=16, num_classes=5,
                                      align_corners=True)
    self.project = keras.layers.Dense(5)

  def call(self, images, training=False):
    rows = tf.cast(tf.range(tf.shape(images)[1]), tf.float32)[None, :, None, None]
    return self.project(tf.concat([images, images * images], -1)) + 0.0 * rows


@pytest.mark.parametrize(("size", "tile", "overlap"), [
    ((150, 200), 65, 16), ((150, 200), 97, 32), ((129, 300), 129, 0)])
def test_tiles_of_a_pixelwise_model_give_the_whole_images_probabilities(size, tile, overlap):
  keras.utils.set_random_seed(0)
  model = PixelModel()
  images = augment.normalize(tf.cast(smooth_images((2, *size)), tf.float32))
  whole = inference.predict_probabilities(model, images)
  tiled = inference.predict_probabilities(model, images, tile_size=tile,
                                          tile_overlap=overlap)
  np.testing.assert_allclose(tiled.numpy(), whole.numpy(), atol=1e-6)


def test_tile_starts_step_by_a_multiple_of_the_output_stride_to_the_edge():
  step = inference.tile_step(65, 16, 16)
  assert step == 48
  assert inference.tile_starts(200, 65, step).numpy().tolist() == [0, 48, 96, 144]
  assert inference.tile_starts(65, 65, step).numpy().tolist() == [0]
  assert inference.tile_starts(40, 65, step).numpy().tolist() == [0]


def test_a_tile_that_covers_the_image_gives_the_whole_images_labels(tiny_model):
  images = smooth_images((1, 150, 130))
  expected = inference.predict_labels(tiny_model, images, crop_size=(161, 161))
  labels, probabilities = inference.predict_labels(
      tiny_model, images, crop_size=(161, 161), tile_size=161, tile_overlap=32)
  np.testing.assert_array_equal(labels.numpy(), expected[0].numpy())
  np.testing.assert_array_equal(probabilities.numpy(), expected[1].numpy())


@pytest.mark.slow
def test_tiles_agree_with_the_whole_image_on_a_real_frame():
  """Google's released MobileNetV2 (VOC) on a 360x480 CamVid frame, in
  257-pixel tiles (2 x 3 of them) sharing 128 pixels: at least 0.99 of
  the labels of the whole frame at once."""
  model = deeplab.from_pretrained(str(harness.released_tflite()))
  frames = np.stack([frame for _, frame in harness.camvid_frames(2)])
  whole = inference.predict_labels(model, frames)[0].numpy()
  tiled = inference.predict_labels(model, frames, tile_size=257,
                                   tile_overlap=128)[0].numpy()
  assert np.mean(tiled == whole) >= 0.99, np.mean(tiled == whole)


@pytest.fixture(scope="module")
def serving(tiny_model):
  """A tiled SavedModel's module: 65-pixel tiles of at most 65 x 65 pixels
  a request, whole requests of at most 200 x 200."""
  model = folding.inference_model(tiny_model)
  module = savedmodel.ServingModule(
      model, dataset_table.get("synthetic"), max_request_pixels=65 * 65,
      tile_size=65, tile_overlap=16, max_image_pixels=200 * 200)
  return module, model


def test_the_savedmodel_takes_an_image_above_its_tile_limit_in_tiles(serving):
  """Labels only, from the bands; the probabilities where the export asks
  for them."""
  module, model = serving
  with_probabilities = savedmodel.ServingModule(
      model, dataset_table.get("synthetic"), max_request_pixels=65 * 65,
      tile_size=65, tile_overlap=16, max_image_pixels=200 * 200,
      tile_probabilities=True)
  # 30000 pixels, 4225 a tile: in tiles; 50 x 60 fits in one: whole.
  for images, tile_size in ((smooth_images((1, 150, 200)), 65),
                            (smooth_images((1, 50, 60)), 0)):
    served = module.serve(tf.constant(images))
    assert set(served) == {"labels"}
    full = with_probabilities._predict(tf.constant(images))  # Eager: no trace.
    expected = inference.predict_labels(model, images, tile_size=tile_size,
                                        tile_overlap=16)
    # The traced graph's fusions (oneDNN, Eigen) may flip argmax near-ties.
    assert served["labels"].shape == expected[0].shape
    agreement = np.mean(served["labels"].numpy() == expected[0].numpy())
    assert agreement >= 0.999, agreement
    np.testing.assert_array_equal(full["labels"].numpy(), expected[0].numpy())
    np.testing.assert_allclose(full["probabilities"].numpy(),
                               expected[1].numpy(), atol=1e-5)


@pytest.mark.parametrize(("shape", "message"), [
    ((1, 210, 210, 3), "whole-image bound of this model, 40000 "
     r"\(config.export.max_image_pixels"),
    ((2, 65, 65, 3), r"a tile of the request holds more pixels .* 4225 "
     r"\(config.export.max_request_pixels")])
def test_the_savedmodel_refuses_images_above_its_bounds(serving, shape, message):
  module, _ = serving
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    module.serve(tf.zeros(shape, tf.uint8))


def test_an_encoded_image_is_measured_against_the_whole_image_bound(serving):
  module, _ = serving
  png = tf.io.encode_png(tf.zeros((210, 210, 3), tf.uint8))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="config.export.max_image_pixels"):
    module.serve_encoded(tf.stack([png]))


@pytest.mark.slow
def test_evaluation_in_tiles_writes_its_metrics(tmp_path):
  records = harness.make_synthetic_records(tmp_path / "records", train_size=1,
                                           val_size=2)
  config = harness.config_with(records, **{"eval.tile_size": "65",
                                           "eval.tile_overlap": "16"})
  config_lib.validate(config)
  keras.utils.set_random_seed(0)
  model = model_lib.DeepLab(num_classes=5, backbone="mobilenet_v2",
                            depth_multiplier=0.35, atrous_rates=(1, 2),
                            aspp_filters=16, decoder_filters=16,
                            low_level_filters=8)
  metrics = evaluation.evaluate_model(config, model, str(tmp_path / "w"), 0)
  assert 0.0 <= metrics["miou"] <= 1.0
  assert (tmp_path / "w" / "eval" / "metrics.json").exists()


@pytest.mark.parametrize(("changes", "message"), [
    ({"eval.tile_size": 100}, r"config.eval.tile_size must be 0 \(whole "
     r"images\) or output_stride \* k \+ 1 \(k >= 1\).*got 100"),
    ({"eval.tile_size": 1}, "config.eval.tile_size must be .*got 1"),
    ({"eval.tile_size": 64, "eval.tile_overlap": 16, "model.align_corners": False,
      "data.crop_size": (64, 64)}, None),
    ({"eval.tile_size": 65, "eval.tile_overlap": 65},
     r"config.eval.tile_overlap must be in \[0, config.eval.tile_size - "
     r"config.model.output_stride\] = \[0, 49\] pixels, got 65"),
    ({"eval.tile_size": 65, "eval.tile_overlap": -1}, "got -1"),
    ({"export.max_image_pixels": 0}, "config.export.max_image_pixels must be >= 1"),
])
def test_tile_settings_are_validated_with_the_field_named(changes, message):
  config = config_lib.base_config()
  for path, value in changes.items():
    config_lib.set_field(config, path, value)
  if message is None:
    config_lib.validate(config)
  else:
    with pytest.raises(rules.RuleError, match=message):
      config_lib.validate(config)


def test_tiles_out_of_range_are_refused_by_inference(tiny_model):
  with pytest.raises(ValueError, match="tile_overlap in"):
    inference.predict_probabilities(tiny_model, tf.zeros((1, 100, 100, 3)),
                                    tile_size=65, tile_overlap=60)


@pytest.mark.parametrize(("size", "tile", "overlap"), [
    ((150, 200), 65, 16), ((129, 140), 65, 0), ((100, 120), 129, 32)])
def test_labels_in_bands_are_the_argmax_of_the_full_size_sum(tiny_model, size, tile, overlap):
  """2-4 rows of windows (the carried rows of the band) and one tile over
  the whole image: the same labels as the full-size probability sum."""
  images = augment.normalize(tf.cast(smooth_images((2, *size)), tf.float32))
  probabilities = inference.predict_probabilities(tiny_model, images, tile_size=tile,
                                                  tile_overlap=overlap)
  labels = inference.predict_label_map(tiny_model, images, tile_size=tile,
                                       tile_overlap=overlap)
  np.testing.assert_array_equal(labels.numpy(), tf.argmax(probabilities, -1).numpy())

