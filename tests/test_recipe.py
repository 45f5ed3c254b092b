"""The original's training recipe in its details: each test
checks one rule against numbers it computes itself on a hand-made case."""

import math
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import inference
from deeplab import kernels
from deeplab import loss as loss_lib
from deeplab import model as model_lib
from deeplab import naming
from deeplab.data import augment
from deeplab.training import schedule as schedule_lib
from deeplab.training import trainer as trainer_lib
from deeplab.training import warm_start
from tests import harness


def test_fine_tune_batch_norm_false_trains_gamma_and_beta_on_moving_statistics():
  inputs = keras.Input((2, 2, 1))
  norm = kernels.FusedBatchNorm(epsilon=1e-3, momentum=0.9, name="bn")
  model = keras.Model(inputs, norm(inputs))
  norm.set_weights([np.array([2.0]), np.array([0.5]), np.array([1.0]),
                    np.array([4.0])])  # gamma, beta, moving mean, variance.
  trainer_lib.batch_norm_in_inference_mode(model)
  x = np.array([0.0, 1.0, 3.0, 6.0], np.float32).reshape(1, 2, 2, 1)
  with tf.GradientTape() as tape:
    y = model(x, training=True)
    loss = tf.reduce_sum(y)
  grads = tape.gradient(loss, model.trainable_variables)
  normalized = (x - 1.0) / np.sqrt(4.0 + 1e-3)  # The moving statistics.
  np.testing.assert_allclose(y, 2.0 * normalized + 0.5, rtol=1e-5)
  assert [v.name for v in model.trainable_variables] == ["gamma", "beta"]
  np.testing.assert_allclose(grads[0], [normalized.sum()], rtol=1e-5)
  np.testing.assert_allclose(grads[1], [4.0], rtol=1e-6)
  np.testing.assert_array_equal(norm.moving_mean, [1.0])
  np.testing.assert_array_equal(norm.moving_variance, [4.0])


def test_every_batch_norm_of_the_model_keeps_gamma_and_beta_trainable():
  model = harness.small_model("mobilenet_v2")
  trainable = len(model.trainable_variables)
  trainer_lib.batch_norm_in_inference_mode(model)
  assert len(model.trainable_variables) == trainable
  norms = [l for l in model.layers
           if isinstance(l, keras.layers.BatchNormalization)]
  assert norms and all(l.inference_statistics for l in norms)
  before = [np.array(l.moving_mean) for l in norms]
  model(harness.random_images((1, 33, 33, 3)), training=True)
  assert all(np.array_equal(b, l.moving_mean) for b, l in zip(before, norms))


@pytest.mark.parametrize("logits_only", [False, True])
def test_initialize_last_layer_false_leaves_the_originals_last_layers(
    tmp_path, logits_only):
  keras.utils.set_random_seed(0)
  source = harness.small_model("mobilenet_v2", atrous_rates=(1,))
  source.save(tmp_path / "source.keras")
  keras.utils.set_random_seed(1)
  target = harness.small_model("mobilenet_v2", atrous_rates=(1,))
  report = warm_start.initialize(target, str(tmp_path / "source.keras"),
                                 initialize_last_layer=False,
                                 last_layers_contain_logits_only=logits_only)
  loaded = set(report.loaded)
  # The original's get_extra_layer_scopes, written out: logits alone, or
  # logits, image pooling, ASPP, concat projection and decoder.
  fresh = {"logits/semantic/weights", "logits/semantic/biases"}
  if not logits_only:
    fresh |= {"image_pooling/weights", "aspp0/weights",
              "aspp1_depthwise/depthwise_weights", "aspp1_pointwise/weights",
              "concat_projection/weights",
              "decoder/feature_projection0/weights",
              "decoder/decoder_conv0_depthwise/depthwise_weights",
              "decoder/decoder_conv1_pointwise/BatchNorm/gamma"}
  assert not fresh & loaded
  kept = {"MobilenetV2/Conv/weights",
          "MobilenetV2/expanded_conv_16/project/BatchNorm/beta"}
  if logits_only:
    kept |= {"aspp0/weights", "decoder/feature_projection0/weights"}
  assert kept <= loaded
  names = naming.original_names(target)
  source_names = naming.original_names(source)
  for name in names:  # Batch norm and biases start equal (ones, zeros).
    if "BatchNorm" not in name and not name.endswith("biases"):
      same = np.array_equal(names[name], source_names[name])
      assert same == (name in loaded), name


@pytest.mark.parametrize("backbone, root, decay", [
    # The original's values: feature_extractor.py (Xception 0.9997, ResNet
    # 0.95) and mobilenet's training_scope (bn_decay=0.997).
    ("xception_41", "xception_41/", 0.9997),
    ("resnet_50", "resnet_v1_50/", 0.95),
    ("mobilenet_v2", "MobilenetV2/", 0.997),
])
def test_batch_norm_decay_is_the_originals_per_network(backbone, root, decay):
  model = harness.small_model(backbone)
  norms = [l for l in model.layers
           if isinstance(l, keras.layers.BatchNormalization)]
  backbone_norms = [l for l in norms
                    if naming.original_scope(l.name).startswith(root)]
  head_norms = [l for l in norms if l not in backbone_norms]
  assert backbone_norms and head_norms
  assert {l.momentum for l in backbone_norms} == {decay}
  assert {l.momentum for l in head_norms} == {0.9997}
  # One training call moves the statistics by (1 - decay) of the way.
  layer = backbone_norms[0]
  before = np.array(layer.moving_mean)
  probe = keras.Model(model.input, layer.input)
  x = harness.random_images((1, 33, 33, 3))
  batch_mean = np.asarray(probe(x, training=False)).mean(axis=(0, 1, 2))
  model(x, training=True)
  np.testing.assert_allclose(layer.moving_mean,
                             decay * before + (1 - decay) * batch_mean,
                             rtol=1e-4, atol=1e-6)
  overridden = harness.small_model(backbone, backbone_batch_norm_momentum=0.9)
  assert {l.momentum for l in overridden.layers
          if naming.original_scope(l.name).startswith(root) and
          isinstance(l, keras.layers.BatchNormalization)} == {0.9}


def log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def test_the_loss_divides_weighted_losses_by_the_labelled_pixel_count():
  logits = np.array([[[[2.0, 0.0], [0.0, 2.0]], [[1.0, 3.0], [0.5, 0.0]]]],
                    np.float32)  # [1, 2, 2, 2]
  labels = np.array([[[0, 1], [255, 0]]])
  weights = (1.0, 3.0)
  losses, labelled = loss_lib.pixel_losses(logits, labels, 2, 255, weights)
  total, count = loss_lib.loss_sum_and_count(losses, labelled)
  ce = -log_softmax(logits)
  # Labelled pixels: (0,0) class 0, (0,1) class 1 (weight 3), (1,1) class 0.
  expected_sum = ce[0, 0, 0, 0] + 3 * ce[0, 0, 1, 1] + ce[0, 1, 1, 0]
  assert float(count) == 3  # Not 1 + 3 + 1, the sum of the weights.
  assert float(total) / float(count) == pytest.approx(expected_sum / 3, rel=1e-6)


def test_hard_pixel_mining_takes_the_top_k_of_the_whole_batch_with_a_ramp():
  # Two images of 4 pixels: the first has all the hard pixels.
  losses = tf.constant([[[4.0, 3.0], [2.0, 1.5]], [[0.4, 0.3], [0.0, 0.1]]])
  labelled = tf.constant([[[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]]])
  total, count = loss_lib.loss_sum_and_count(losses, labelled, 0.5)
  # k = int(0.5 * 8) = 4 over the batch: all of the first image (per image
  # it would be 4 + 3 + 0.4 + 0.3).
  assert float(total) == pytest.approx(4 + 3 + 2 + 1.5)
  assert float(count) == 4
  # Ramp over 100 steps, at step 50: (0.5 * 0.25 + 0.5) of 8 pixels -> 5.
  total, count = loss_lib.loss_sum_and_count(losses, labelled, 0.25, 50, 100)
  assert float(total) == pytest.approx(4 + 3 + 2 + 1.5 + 0.4)
  assert float(count) == 5
  # From step 100 on: int(0.25 * 8) = 2; at step 0 every pixel, and the
  # zero loss of the ignored one is not counted.
  total, count = loss_lib.loss_sum_and_count(losses, labelled, 0.25, 300, 100)
  assert (float(total), float(count)) == (7.0, 2.0)
  total, count = loss_lib.loss_sum_and_count(losses, labelled, 0.25, 0, 100)
  assert float(count) == 7 and float(total) == pytest.approx(11.3)


def test_slow_start_holds_its_rate_by_default_or_ramps_linearly():
  base, slow, total, warm, power = 0.01, 0.001, 110, 10, 0.9

  def original(step, burnin):
    """The original's get_model_learning_rate ('poly'), by hand."""
    if step < warm:
      if burnin == "linear":
        return slow + (base - slow) * step / warm
      return slow
    return base * (1 - min(step - warm, total - warm) / (total - warm)) ** power

  for burnin in ("none", "linear"):
    schedule = schedule_lib.PolyWithWarmup(
        base, total, power=power, warmup_steps=warm,
        warmup_learning_rate=slow, warmup_type=burnin)
    for step in (0, 3, 9, 10, 11, 60, 109, 110, 200):
      assert float(schedule(step)) == pytest.approx(
          original(step, burnin), rel=1e-5, abs=1e-9), (burnin, step)
  default = schedule_lib.PolyWithWarmup(base, total, warmup_steps=warm,
                                        warmup_learning_rate=slow)
  assert float(default(9)) == pytest.approx(slow)
  with pytest.raises(ValueError, match="warmup_type must be one of"):
    schedule_lib.PolyWithWarmup(base, total, warmup_type="cosine")


@pytest.mark.parametrize("logits_only", [False, True])
def test_gradient_multipliers_double_biases_and_scale_the_last_layers(
    logits_only):
  model = harness.small_model("mobilenet_v2", atrous_rates=(1,))
  multipliers = trainer_lib.gradient_multipliers(model, 10.0, logits_only)
  by_name = {n: multipliers[i] for i, v in enumerate(model.trainable_variables)
             for n, w in naming.original_names(model).items() if w is v}
  assert len(by_name) == len(multipliers)
  head = 1.0 if logits_only else 10.0
  expected = {
      "logits/semantic/biases": 20.0, "logits/semantic/weights": 10.0,
      "aspp0/weights": head, "aspp1_depthwise/BatchNorm/gamma": head,
      "image_pooling/BatchNorm/beta": head,
      "decoder/decoder_conv1_pointwise/weights": head,
      "concat_projection/weights": head,
      "MobilenetV2/Conv/weights": 1.0,
      "MobilenetV2/expanded_conv_3/project/BatchNorm/gamma": 1.0}
  assert {n: by_name[n] for n in expected} == expected
  # Any other bias is doubled (folded models carry one per convolution).
  folded = harness.small_model("mobilenet_v2", fold_batch_norm=True)
  plain = trainer_lib.gradient_multipliers(folded)
  names = {id(v): n for n, v in naming.original_names(folded).items()}
  assert all(m == (2.0 if names[id(v)].endswith("biases") else 1.0)
             for m, v in zip(plain, folded.trainable_variables))


@pytest.mark.parametrize("multiplier, first_channels", [
    # int(32 * m + 0.5) (divisible_by=1 off 1.0), by hand.
    (0.35, 11), (0.5, 16), (1.0, 32), (1.4, 45)])
def test_mobilenet_v2_first_unit_never_expands(multiplier, first_channels):
  model = model_lib.DeepLab(num_classes=3, backbone="mobilenet_v2",
                            depth_multiplier=multiplier, atrous_rates=(),
                            use_decoder=False)
  names = set(naming.original_names(model))
  assert "MobilenetV2/expanded_conv/depthwise/depthwise_weights" in names
  assert not any(n.startswith("MobilenetV2/expanded_conv/expand/")
                 for n in names)
  depthwise = model.get_layer("MobilenetV2.expanded_conv.depthwise")
  assert depthwise.kernel.shape[2] == first_channels
  # The second unit still rounds its expansion (6x) to a multiple of 8.
  expand = model.get_layer("MobilenetV2.expanded_conv_1.expand")
  out = model.get_layer("MobilenetV2.expanded_conv.project").kernel.shape[-1]
  assert expand.kernel.shape[-1] % 8 == 0
  assert expand.kernel.shape[-1] >= 0.9 * 6 * out


def truncated_normal_std(stddev):
  """Standard deviation of N(0, stddev^2) cut at +-2 stddev (TF1's and
  Keras' truncated normal), from the normal density and distribution."""
  density = math.exp(-2.0) / math.sqrt(2 * math.pi)
  mass = math.erf(2 / math.sqrt(2))
  return stddev * math.sqrt(1 - 2 * 2 * density / mass)


def check_truncated_normal(kernel, stddev):
  kernel = np.asarray(kernel)
  assert np.abs(kernel).max() <= 2 * stddev + 1e-7
  assert kernel.std() == pytest.approx(truncated_normal_std(stddev), rel=0.12)


def check_glorot_uniform(kernel):
  kernel = np.asarray(kernel)
  receptive = int(np.prod(kernel.shape[:-2]))
  fan_in, fan_out = receptive * kernel.shape[-2], receptive * kernel.shape[-1]
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  assert np.abs(kernel).max() <= limit + 1e-7
  assert kernel.std() == pytest.approx(limit / math.sqrt(3), rel=0.12)


def test_initializers_are_the_originals():
  keras.utils.set_random_seed(0)
  model = model_lib.DeepLab(num_classes=3, backbone="mobilenet_v2",
                            depth_multiplier=0.5, atrous_rates=(2,),
                            output_stride=16)
  kernel = lambda name: model.get_layer(name).kernel
  # MobileNetV2: mobilenet's training_scope, truncated normal 0.09.
  for name in ("MobilenetV2.Conv", "MobilenetV2.expanded_conv_5.expand",
               "MobilenetV2.expanded_conv_5.depthwise",
               "MobilenetV2.expanded_conv_16.project"):
    check_truncated_normal(kernel(name), 0.09)
  # Head: split_separable_conv2d's 0.33 / 0.06, slim's xavier elsewhere,
  # 0.01 for the logits.
  for name in ("aspp1_depthwise", "decoder.decoder_conv0_depthwise"):
    check_truncated_normal(kernel(name), 0.33)
  for name in ("aspp1_pointwise", "decoder.decoder_conv1_pointwise"):
    check_truncated_normal(kernel(name), 0.06)
  for name in ("aspp0", "image_pooling", "concat_projection",
               "decoder.feature_projection0"):
    check_glorot_uniform(kernel(name))
  check_truncated_normal(kernel("logits.semantic"), 0.01)
  # Xception: xception_arg_scope, truncated normal 0.09 for every kernel.
  xception = harness.small_model("xception_41")
  for name in ("xception_41.entry_flow.conv1_1",
               "xception_41.middle_flow.block1.unit_1.xception_module."
               "separable_conv1_depthwise",
               "xception_41.exit_flow.block2.unit_1.xception_module."
               "separable_conv3_pointwise"):
    check_truncated_normal(xception.get_layer(name).kernel, 0.09)


@pytest.mark.parametrize("size, bounds, expected", [
    # ADE20K's recipe (513, 513, 16): the long side 400 -> 513, the short
    # side ceil(300 * 513 / 400) = 385 = 16 * 24 + 1.
    ((300, 400), (513, 513, 16), (385, 513)),
    # The short side to 350 (1000 -> 438): under max 500 - 499 % 16 = 497,
    # then both up to 16k + 1: 438 + 11, 350 + 3.
    ((1000, 800), (350, 500, 16), (449, 353)),
    # Only the short side's target, no factor.
    ((200, 100), (300, 0, 0), (600, 300)),
    # Only a bound of the long side.
    ((200, 100), (0, 150, 0), (150, 75)),
])
def test_resize_to_range_gives_the_originals_sizes(size, bounds, expected):
  got = augment.resize_to_range_size(size[0], size[1], *bounds)
  assert tuple(got.numpy()) == expected
  image = tf.zeros(size + (3,), tf.uint8)
  label = tf.zeros(size + (1,), tf.uint8)
  resized, _ = augment.preprocess_eval(image, label, bounds)
  assert tuple(resized.shape[:2]) == expected


def test_the_input_pipeline_resizes_to_range_before_cropping():
  # A 300x400 image whose rows are its row index: after resize_to_range
  # (385x513) and a 513x513 crop, rows 385.. are padding (ignore label).
  image = tf.cast(tf.tile(tf.range(300)[:, None, None] % 200, [1, 400, 3]),
                  tf.uint8)
  label = tf.ones([300, 400, 1], tf.uint8)
  _, cropped = augment.preprocess_train(
      image, label, crop_size=(513, 513), scale_range=(1.0, 1.0),
      scale_step=0.0, flip=False, photometric_jitter=False, ignore_label=255,
      resize_range=(513, 513, 16), seed=tf.constant([1, 2], tf.int64))
  assert np.sum(cropped.numpy() == 1) == 385 * 513


def test_exports_resize_to_range_and_bring_the_labels_back():
  sizes = []

  def model(images, training=False):
    del training
    sizes.append(tuple(int(d) for d in images.shape[1:3]))
    # Class 1 on the right half of whatever the network sees.
    width = tf.shape(images)[2]
    right = tf.cast(tf.range(width) >= width // 2, tf.float32)
    right = tf.broadcast_to(right[None, None, :, None],
                            tf.shape(images[..., :1]))
    return tf.concat([1.0 - right, right], -1) * 10.0

  image = tf.zeros([1, 300, 400, 3], tf.uint8)
  labels, probabilities = inference.predict_labels(
      model, image, crop_size=(513, 513), resize_range=(513, 513, 16),
      output_stride=16)
  # Resized to 385x513 (16 * 24 + 1 by 16 * 32 + 1), which fits the crop.
  assert sizes == [(513, 513)]
  assert labels.shape == (1, 300, 400) and probabilities.shape == (1, 300, 400, 2)
  # The network saw the resized image padded to 513 wide, so its right
  # half starts at column 256 of 513 = column 256 * 399 / 512 of the input.
  row = labels.numpy()[0, 150]
  boundary = np.argmax(row == 1)
  assert abs(boundary - 256 * 399 / 512) <= 1


@pytest.mark.parametrize("path, value, message", [
    ("schedule.warmup_type", "cosine", "config.schedule.warmup_type must be 'none' or 'linear', got 'cosine'"),
    ("loss.hard_example_mining_step", -1, "config.loss.hard_example_mining_step must be >= 0, got -1"),
    ("optimizer.last_layer_gradient_multiplier", -2.0, "config.optimizer.last_layer_gradient_multiplier must be >= 0"),
    ("data.min_resize_value", -513, "config.data.min_resize_value must be >= 0, got -513"),
    ("data.resize_factor", -16, "config.data.resize_factor must be >= 0"),
    ("eval.crop_size", (513,), "config.eval.crop_size must be"),
    ("model.backbone_batch_norm_momentum", 1.5, "config.model.backbone_batch_norm_momentum must be None or in"),
])
def test_the_new_fields_refuse_bad_values_naming_the_field(path, value, message):
  from deeplab import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.base_config()
  config_lib.set_field(config, path, value)
  with pytest.raises(ValueError, match=re.escape(message)):
    config_lib.validate(config)
