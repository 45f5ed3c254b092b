"""The model harness over every backbone, plus full-size parameter counts."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab import inference
from deeplab import kernels
from deeplab import layers
from deeplab import model as model_lib
from tests import harness

BACKBONES = ["xception_41", "xception_65", "xception_71", "resnet_50",
             "resnet_101", "mobilenet_v2"]


@pytest.mark.parametrize("backbone, output_stride", [
    (b, 16) for b in BACKBONES] + [
        (b, s) for b in ("xception_65", "mobilenet_v2") for s in (8, 32)])
def test_output_shapes_at_strides_and_odd_sizes(backbone, output_stride):
  # Every backbone at every stride is covered feature by feature in
  # test_backbones.py; here the whole model, head included.
  model = harness.small_model(backbone, output_stride)
  for height, width in [(65, 65), (37, 50)]:
    harness.check_forward_shape(model, height, width)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_config_round_trip(backbone):
  harness.check_config_round_trip(harness.small_model(backbone))


@pytest.mark.parametrize("backbone", ["xception_65", "resnet_50", "mobilenet_v2"])
def test_save_and_reload(backbone, tmp_path):
  harness.check_save_reload(harness.small_model(backbone), tmp_path / "model.keras")


@pytest.mark.parametrize("backbone", BACKBONES)
def test_one_training_step(backbone):
  harness.check_training_step(harness.small_model(backbone))


@pytest.mark.parametrize("variant", [
    dict(use_decoder=False),
    dict(atrous_rates=(), use_decoder=False),
    dict(aspp_separable=False, decoder_separable=False),
    dict(image_pooling=False),
    dict(decoder_output_strides=(4, 2)),
    dict(decoder_output_strides=(8, 4), decoder_separable=False),
])
def test_head_variants(variant):
  model = harness.small_model("mobilenet_v2", **variant)
  harness.check_forward_shape(model, 49, 49)
  harness.check_config_round_trip(model)


def test_align_corners_round_trips_and_leaves_the_weights_alone():
  """Every bilinear resize follows ModelArgs.align_corners; the weights are
  the same, so one model's weights run under the other mapping."""
  aligned = harness.small_model("mobilenet_v2")
  unaligned = harness.small_model("mobilenet_v2", align_corners=False)
  harness.check_config_round_trip(unaligned)
  assert unaligned.get_config()["align_corners"] is False
  assert aligned.args.align_corners is True
  assert unaligned.args.weight_signature() == aligned.args.weight_signature()
  assert not aligned.args.differences(unaligned.args)
  assert [w.path for w in unaligned.weights] == [w.path for w in aligned.weights]
  resizes = [layer for layer in unaligned.layers
             if isinstance(layer, layers.ResizeBilinear)]
  assert sorted(layer.name for layer in resizes) == [
      "decoder.upsample", "image_pooling.upsample", "logits.upsample"]
  assert all(layer.align_corners is False for layer in resizes)
  assert all(layer.align_corners is True for layer in aligned.layers
             if isinstance(layer, layers.ResizeBilinear))
  unaligned.set_weights(aligned.get_weights())
  harness.check_forward_shape(unaligned, 64, 48)
  x = harness.random_images((1, 64, 64, 3), seed=3)
  ours = np.asarray(unaligned(x, training=False))
  theirs = np.asarray(aligned(x, training=False))
  assert np.abs(ours - theirs).max() > 1e-2 * np.abs(theirs).max()


def test_resize_bilinear_maps_pixels_as_tensorflow_does():
  features = tf.random.stateless_normal((1, 4, 5, 2), seed=(0, 1))
  reference = tf.zeros((1, 16, 20, 1))
  for align_corners in (True, False):
    got = layers.ResizeBilinear(align_corners)(features, reference)
    expected = tf.compat.v1.image.resize_bilinear(
        features, (16, 20), align_corners=align_corners)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_inference_pads_to_the_mappings_aligned_sizes():
  assert inference.padded_size(500, 16) == 513
  assert inference.padded_size(500, 16, align_corners=False) == 512
  assert inference.target_size(600, 16, 512, align_corners=False) == 608
  assert inference.target_size(500, 16, 512, align_corners=False) == 512
  model = harness.small_model("mobilenet_v2", align_corners=False,
                              use_decoder=False)
  images = harness.random_images((1, 40, 40, 3))
  probabilities = inference.predict_probabilities(model, images, scales=(0.5, 1.0))
  assert tuple(probabilities.shape) == (1, 40, 40, 3)
  # Padded to 48 (16 * 3), not 49: as the model's own mapping at 48x48.
  padded = tf.pad(images, [[0, 0], [0, 8], [0, 8], [0, 0]])
  single = inference.predict_probabilities(model, images)
  np.testing.assert_allclose(
      single, tf.nn.softmax(model(padded, training=False))[:, :40, :40],
      atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_builds_runs_and_trains(policy):
  model = harness.small_model("mobilenet_v2", dtype_policy=policy)
  conv = model.get_layer("MobilenetV2.Conv")
  assert conv.compute_dtype == policy.split("_")[1]
  assert conv.variable_dtype == "float32"
  harness.check_forward_shape(model, 33, 33)
  harness.check_training_step(model)
  assert keras.config.dtype_policy().name == "float32"  # global left alone


def test_sync_batch_norm_flag_reaches_every_batch_norm():
  model = harness.small_model("mobilenet_v2", sync_batch_norm=True)
  norms = [l for l in model.layers
           if isinstance(l, keras.layers.BatchNormalization)]
  assert norms and all(isinstance(l, kernels.TwoPassSyncBatchNorm) for l in norms)
  plain = harness.small_model("mobilenet_v2", sync_batch_norm=False)
  assert not any(isinstance(l, kernels.TwoPassSyncBatchNorm) for l in plain.layers)


def test_injected_batch_norm_factory_is_used():
  made = []

  def factory(name, epsilon, momentum):
    made.append(name)
    return keras.layers.BatchNormalization(name=name, epsilon=epsilon,
                                           momentum=momentum, center=True)

  model = harness.small_model("mobilenet_v2", batch_norm_factory=factory)
  norms = [l.name for l in model.layers
           if isinstance(l, keras.layers.BatchNormalization)]
  assert sorted(made) == sorted(norms)


def test_batch_norm_defaults_follow_the_original():
  model = model_lib.DeepLab(num_classes=21, backbone="xception_65")
  assert model.get_layer("xception_65.entry_flow.conv1_1.BatchNorm").epsilon == 1e-3
  assert model.get_layer("aspp0.BatchNorm").epsilon == 1e-5
  assert model.get_layer("aspp0.BatchNorm").momentum == 0.9997


def test_dropout_only_in_training():
  model = harness.small_model("mobilenet_v2", dropout_rate=0.5)
  x = harness.random_images((1, 33, 33, 3))
  np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
  assert not np.allclose(model(x, training=True), model(x, training=True))


@pytest.mark.parametrize("bad, message", [
    (dict(num_classes=0), "num_classes must be an integer >= 1, got 0"),
    (dict(output_stride=12), "output_stride must be one of (8, 16, 32), got 12"),
    (dict(atrous_rates=(6, -12)), "atrous_rates must be a sequence of positive integers, got (6, -12)"),
    (dict(backbone="vgg16"), "backbone must be one of"),
    (dict(multi_grid=(1, 2)), "multi_grid must be 3 rates for xception_65"),
    (dict(dtype_policy="float64"), "dtype_policy must be one of"),
    (dict(input_shape=(None, None, 4)), "input_shape must be (height, width, 3)"),
    (dict(decoder_output_strides=(2, 4)),
     "decoder_output_strides must be a non-empty decreasing sequence of (2, 4, 8), got (2, 4)"),
    (dict(decoder_output_strides=()), "decoder_output_strides must be a non-empty decreasing"),
    (dict(decoder_output_strides=(8, 4), output_stride=8),
     "decoder_output_strides must be strides below the output stride 8, got (8, 4)"),
])
def test_bad_arguments_name_field_and_value(bad, message):
  kwargs = dict(num_classes=21, backbone="xception_65")
  kwargs.update(bad)
  with pytest.raises(ValueError) as error:
    model_lib.DeepLab(**kwargs)
  assert message in str(error.value)


def test_xception65_deeplabv3plus_parameter_count():
  # A faithful port of the released Xception-65 DeepLabv3+ (separable ASPP
  # and decoder, 21 classes) holds 41,258,213 parameters with batch norm
  # statistics (bench/README.md's model table lists it).
  model = model_lib.DeepLab(num_classes=21, backbone="xception_65")
  assert model.count_params() == 41_258_213


def test_mobilenetv2_deeplabv3_parameter_count():
  # DeepLabv3 MobileNetV2 x1.0 (pascal_voc_mobilenetv2): backbone to
  # expanded_conv_16, image pooling + aspp0, no decoder, 21 classes. The
  # x0.5 variant's count is checked against the released TFLite file in
  # test_naming_and_weights.py; this pins the x1.0 count computed by
  # `deeplab-summary --config=configs/pascal_voc_mobilenetv2.py`.
  model = model_lib.DeepLab(num_classes=21, backbone="mobilenet_v2",
                            atrous_rates=(), use_decoder=False)
  assert model.count_params() == 2_146_645


@pytest.mark.parametrize("training", [False, True])
def test_fused_batch_norm_equals_keras_batch_norm(training):
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(2, 5, 7, 6)) * 3 + 10).astype("float32")
  initial = [rng.uniform(0.5, 2, 6).astype("float32") for _ in range(4)]
  layers_made = []
  for cls in (keras.layers.BatchNormalization, kernels.FusedBatchNorm):
    layer = cls(momentum=0.9, epsilon=1e-5)
    layer.build(x.shape)
    layer.set_weights(initial)
    layers_made.append(layer)
  fused = tf.function(lambda v: layers_made[1](v, training=training))
  ops = {op.type for op in fused.get_concrete_function(x).graph.get_operations()}
  assert "FusedBatchNormV3" in ops  # the fused kernel, not the Keras path
  weights = rng.normal(size=x.shape).astype("float32")
  results = []
  for layer in layers_made:
    with tf.GradientTape() as tape:
      y = layer(x, training=training)
      loss = tf.reduce_sum(y * weights)
    grads = tape.gradient(loss, layer.trainable_variables)
    results.append((y.numpy(), [g.numpy() for g in grads], layer.get_weights()))
  (y0, g0, w0), (y1, g1, w1) = results
  np.testing.assert_allclose(y1, y0, atol=2e-5)
  for a, b in zip(g1, g0):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  for a, b in zip(w1, w0):  # moving statistics updated alike (or untouched)
    np.testing.assert_allclose(a, b, rtol=1e-5)
  assert np.allclose(w1[2], initial[2]) != training  # moving mean


def test_fused_batch_norm_runs_in_bfloat16():
  layer = kernels.FusedBatchNorm(dtype="mixed_bfloat16")
  x = tf.random.normal((2, 4, 4, 3), 5.0)
  y = layer(x, training=True)
  assert y.dtype == tf.bfloat16
  np.testing.assert_allclose(tf.reduce_mean(tf.cast(y, tf.float32), [0, 1, 2]), 0,
                             atol=0.05)


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "xception_65", "resnet_50"])
def test_decoder_stages_refine_at_their_strides(backbone):
  # (8, 4, 2): three stages, the original's names with a stage suffix, each
  # fed the backbone's features of its stride; the last one sets the
  # resolution of the logits before their upsampling.
  model = harness.small_model(backbone, decoder_output_strides=(8, 4, 2),
                              input_shape=(65, 65, 3))
  for suffix, size in (("", 9), ("_1", 17), ("_2", 33)):
    projection = model.get_layer("decoder.feature_projection0" + suffix)
    assert projection.output.shape[1:3] == (size, size), suffix
    conv = model.get_layer("decoder.decoder_conv1" + suffix + "_pointwise")
    assert conv.output.shape[1:3] == (size, size), suffix
  logits = model.get_layer("logits.semantic")
  assert logits.output.shape[1:3] == (33, 33)
  assert model(np.zeros((1, 65, 65, 3), "float32")).shape == (1, 65, 65, 3)


def test_mobilenet_decoder_end_points_are_the_originals():
  # The original's DECODER_END_POINTS for mobilenet_v2: the depthwise
  # outputs (after batch norm and ReLU6) of layer_4 at stride 4 and layer_7
  # at stride 8; ours at stride 2 is layer_2's. layer_N is the unit
  # expanded_conv_{N-2} (layer_2: expanded_conv).
  model = model_lib.DeepLab(num_classes=3, backbone="mobilenet_v2",
                            decoder_output_strides=(8, 4, 2))
  for suffix, unit in (("", "expanded_conv_5"), ("_1", "expanded_conv_2"),
                       ("_2", "expanded_conv")):
    projection = model.get_layer("decoder.feature_projection0" + suffix)
    source = projection.input._keras_history.operation
    assert source.name == f"MobilenetV2.{unit}.depthwise.relu6", suffix
