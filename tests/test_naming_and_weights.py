"""The original-name table, the weights reader, backbone weight loading, and
the TFLite check."""

import numpy as np
import pytest

from deeplab import model as model_lib
from deeplab import naming
from deeplab import run_dir
from deeplab import weights
from deeplab_configs import synthetic
from tests import harness
from tests.conftest import shared_path


def mobilenet_dm05(**kwargs):
  return model_lib.DeepLab(num_classes=21, backbone="mobilenet_v2",
                           output_stride=8, atrous_rates=(), use_decoder=False,
                           depth_multiplier=0.5, **kwargs)


@pytest.mark.parametrize("backbone, expected", [
    ("xception_65", [
        "xception_65/entry_flow/conv1_1/weights",
        "xception_65/entry_flow/conv1_1/BatchNorm/moving_variance",
        "xception_65/entry_flow/block1/unit_1/xception_module/separable_conv1_depthwise/depthwise_weights",
        "xception_65/entry_flow/block1/unit_1/xception_module/separable_conv1_pointwise/BatchNorm/gamma",
        "xception_65/entry_flow/block1/unit_1/xception_module/shortcut/weights",
        "xception_65/middle_flow/block1/unit_16/xception_module/separable_conv3_pointwise/weights",
        "xception_65/exit_flow/block2/unit_1/xception_module/separable_conv3_pointwise/weights",
        "aspp1_depthwise/depthwise_weights", "aspp3_pointwise/weights",
        "decoder/decoder_conv1_pointwise/BatchNorm/beta",
    ]),
    ("resnet_101", [
        "resnet_v1_101/conv1_3/weights",
        "resnet_v1_101/block3/unit_23/bottleneck_v1/conv2/weights",
        "resnet_v1_101/block1/unit_1/bottleneck_v1/shortcut/weights",
    ]),
    ("mobilenet_v2", [
        "MobilenetV2/Conv/weights",
        "MobilenetV2/expanded_conv/depthwise/depthwise_weights",
        "MobilenetV2/expanded_conv_1/depthwise/depthwise_weights",
        "MobilenetV2/expanded_conv_16/project/BatchNorm/gamma",
    ]),
])
def test_original_names(backbone, expected):
  model = model_lib.DeepLab(num_classes=21, backbone=backbone,
                            multi_grid=(1, 2, 4))
  names = naming.original_names(model)
  assert len(names) == len(model.weights)
  head = ["aspp0/weights", "image_pooling/weights",
          "concat_projection/BatchNorm/gamma",
          "decoder/feature_projection0/weights", "logits/semantic/weights",
          "logits/semantic/biases"]
  missing = [n for n in expected + head if n not in names]
  assert not missing


def test_mobilenet_dm05_matches_the_released_tflite_tensors():
  """Every weight tensor of the released file has our twin, shape for shape."""
  path = shared_path("pretrained", "deeplabv3_257_mv_gpu.tflite")
  interpreter = weights.tflite_interpreter(str(path))
  tensors = {d["name"]: tuple(d["shape"]) for d in interpreter.get_tensor_details()}
  names = naming.original_names(mobilenet_dm05())
  released = {n: s for n, s in tensors.items()
              if n.endswith(("/weights", "/depthwise_weights"))}
  assert len(released) == 55  # stem, 17 units (16 with expand), 4 head convs
  for name, shape in released.items():
    ours = tuple(names[name].shape)  # KeyError: a released tensor we lack.
    # TFLite stores conv kernels [out, h, w, in] and depthwise [1, h, w, c].
    assert ours == shape[1:] + shape[:1], name
  ours_kernels = [n for n in names if n.endswith("weights")]
  assert sorted(ours_kernels) == sorted(released)


def test_backbone_weights_from_an_original_checkpoint(tmp_path):
  source = mobilenet_dm05()
  arrays = {n: np.asarray(v) + 0.5 for n, v in naming.original_names(source).items()
            if n.startswith("MobilenetV2/")}
  arrays["global_step"] = np.array(100, np.int64)
  arrays["MobilenetV2/Logits/Conv2d_1c_1x1/weights"] = np.zeros((1, 1, 160, 1001), "float32")
  prefix = tmp_path / "model.ckpt"
  harness.write_tf1_checkpoint(prefix, arrays)

  target = mobilenet_dm05()
  head_before = np.asarray(target.get_layer("aspp0").kernel)
  report = weights.load_backbone_weights(target, str(prefix))
  names = naming.original_names(target)
  for name, value in arrays.items():
    if name in names:
      np.testing.assert_array_equal(np.asarray(names[name]), value)
  assert len(report.loaded) == len(arrays) - 2
  assert report.unused == ["MobilenetV2/Logits/Conv2d_1c_1x1/weights", "global_step"]
  np.testing.assert_array_equal(target.get_layer("aspp0").kernel, head_before)


def test_backbone_weights_of_another_width_are_refused(tmp_path):
  wide = model_lib.DeepLab(num_classes=21, backbone="mobilenet_v2",
                           atrous_rates=(), use_decoder=False)
  arrays = {n: np.asarray(v) for n, v in naming.original_names(wide).items()}
  prefix = tmp_path / "wide.ckpt"
  harness.write_tf1_checkpoint(prefix, arrays)
  with pytest.raises(ValueError, match="shape mismatches"):
    weights.load_backbone_weights(mobilenet_dm05(), str(prefix))


def test_backbone_weights_from_a_keras_file(tmp_path):
  source = mobilenet_dm05()
  path = tmp_path / "source.keras"
  source.save(path)
  target = mobilenet_dm05()
  weights.load_backbone_weights(target, str(path))
  np.testing.assert_array_equal(
      target.get_layer("MobilenetV2.Conv").kernel,
      source.get_layer("MobilenetV2.Conv").kernel)


def test_missing_backbone_weights_file():
  with pytest.raises(FileNotFoundError, match="nowhere/model.ckpt"):
    weights.load_backbone_weights(mobilenet_dm05(), "/nowhere/model.ckpt")


def test_backbone_weights_and_all_weights_from_a_run_folder(tmp_path):
  config = synthetic.get_config()
  source = model_lib.build_model(config)
  for variable in source.weights:
    variable.assign(np.asarray(variable) + 0.5)
  run_dir.save_model(source, config, str(tmp_path / "run"), step=3)
  arrays = weights.read_weights(str(tmp_path / "run"))
  expected = naming.original_names(source)
  assert set(arrays) == set(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(arrays[name], value, err_msg=name)
  target = model_lib.build_model(config)
  report = weights.load_backbone_weights(target, str(tmp_path / "run"))
  assert report.loaded and all(n.startswith("MobilenetV2/") for n in report.loaded)
  assert "logits/semantic/weights" in report.unused
  with pytest.raises(FileNotFoundError, match="not a run folder"):
    weights.read_weights(str(tmp_path))


def test_a_tflite_source_needs_the_model_and_unknown_sources_are_named(tmp_path):
  path = tmp_path / "model.tflite"
  path.write_bytes(b"not read")
  with pytest.raises(ValueError, match="needs the model"):
    weights.read_weights(str(path))
  with pytest.raises(FileNotFoundError, match="nowhere.tflite"):
    weights.read_weights("/nowhere.tflite", mobilenet_dm05())
  with pytest.raises(FileNotFoundError, match=r"nowhere.tar.gz"):
    weights.read_weights("/nowhere.tar.gz")
  with pytest.raises(FileNotFoundError, match=r"neither a run folder.*'/nowhere/model.ckpt.index'"):
    weights.read_weights("/nowhere/model.ckpt")
