"""The model zoo table and ``deeplab.convert`` from zoo names, addresses,
tarballs and prefixes, offline: the tarballs are built here in the zoo's
layout (a folder holding model.ckpt.* under the original names)."""

import hashlib
import io
import os
import pathlib
import tarfile

import keras
import numpy as np
import pytest

import deeplab
from deeplab import backbones
from deeplab import config as config_lib
from deeplab import convert
from deeplab import model as model_lib
from deeplab import naming
from deeplab import pretrained
from deeplab import run_dir
from deeplab import weights
from deeplab import zoo
from deeplab.training import warm_start
from deeplab_configs import synthetic
from tests import harness


def random_arrays(config, seed=0):
  """``{original_name: array}`` of the config's model, values from ``seed``."""
  keras.utils.set_random_seed(5)
  model = model_lib.build_model(config)
  rng = np.random.default_rng(seed)
  arrays = {n: rng.normal(size=v.shape).astype(np.float32)
            for n, v in naming.original_names(model).items()}
  # Batch norm variances are positive, as in any trained checkpoint (a
  # frozen batch norm of a negative one gives NaN).
  return {n: np.abs(a) + 0.5 if n.endswith("moving_variance") else a
          for n, a in arrays.items()}


def write_zoo_tarball(path, arrays):
  """Writes ``path`` (``<name>.tar.gz``) in the zoo's layout: a folder
  ``<name>`` holding ``model.ckpt.*`` (``arrays`` and a global_step under
  the original names) and a frozen graph nothing reads."""
  path = pathlib.Path(path)
  folder = path.parent / path.name[:-len(".tar.gz")]
  folder.mkdir()
  harness.write_tf1_checkpoint(
      folder / "model.ckpt", {**arrays, "global_step": np.int64(30000)})
  (folder / "frozen_inference_graph.pb").write_bytes(b"not read")
  with tarfile.open(path, "w:gz") as tar:
    tar.add(folder, arcname=folder.name)
  return path


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
  """(path, arrays): a zoo-layout tarball of the synthetic config's model
  with values the test chose, plus what the zoo's files hold besides."""
  root = tmp_path_factory.mktemp("zoo")
  arrays = random_arrays(synthetic.get_config())
  return write_zoo_tarball(
      root / "deeplabv3_synthetic_train_2026_01_01.tar.gz", arrays), arrays


@pytest.fixture
def zoo_name(tarball, tmp_path, monkeypatch):
  """(entry, arrays): a zoo entry of the synthetic config for ``tarball``,
  with its checksum, Keras' file cache in a temporary folder."""
  path, arrays = tarball
  entry = zoo.ZooModel("synthetic_test", path.as_uri(), "mobilenet_v2", 16,
                       "synthetic", "synthetic", "n/a",
                       hashlib.sha256(path.read_bytes()).hexdigest())
  monkeypatch.setattr(zoo, "CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setitem(zoo.MODELS, entry.name, entry)
  return entry, arrays


def check_model(model, arrays):
  assert isinstance(model, model_lib.DeepLab)
  names = naming.original_names(model)
  assert set(names) == set(arrays)
  for name, value in arrays.items():
    np.testing.assert_array_equal(names[name], value, err_msg=name)


def check_run(workdir, arrays):
  model, step = run_dir.restore_model(run_dir.read_config(str(workdir)),
                                      str(workdir))
  assert step == 0
  check_model(model, arrays)


def test_a_zoo_tarball_and_its_unpacked_prefix_convert_exactly(tarball, tmp_path):
  path, arrays = tarball
  report = convert.convert(str(path), str(tmp_path / "a"), synthetic.get_config())
  assert report.unused == ["global_step"]
  check_run(tmp_path / "a", arrays)
  with tarfile.open(path) as tar:
    tar.extractall(tmp_path / "unpacked")
  prefix = tmp_path / "unpacked" / "deeplabv3_synthetic_train_2026_01_01" / "model.ckpt"
  convert.convert(str(prefix), str(tmp_path / "b"), synthetic.get_config())
  check_run(tmp_path / "b", arrays)


def test_a_zoo_name_downloads_once_into_the_keras_cache_with_its_checksum(
    tarball, zoo_name, tmp_path, monkeypatch):
  path, _ = tarball
  entry, arrays = zoo_name
  convert.convert(entry.name, str(tmp_path / "w"))  # The zoo's config.
  check_run(tmp_path / "w", arrays)
  cached = tmp_path / "cache" / zoo.CACHE_SUBDIR / path.name
  assert cached.read_bytes() == path.read_bytes()
  # An address converts too; a wrong checksum is refused.
  convert.convert(path.as_uri(), str(tmp_path / "u"), synthetic.get_config())
  check_run(tmp_path / "u", arrays)
  monkeypatch.setitem(zoo.MODELS, entry.name,
                      zoo.ZooModel(**{**entry.__dict__, "sha256": "0" * 64}))
  cached.unlink()
  with pytest.raises(ValueError, match="(?i)corrupt|hash"):
    convert.convert(entry.name, str(tmp_path / "bad"))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupted_tarball_is_refused_with_the_reason(tarball, tmp_path, damage):
  path, _ = tarball
  data = path.read_bytes()
  broken = tmp_path / path.name
  broken.write_bytes(data[:len(data) // 2] if damage == "truncated"
                     else b"<html>404 Not Found</html>" * 40)
  with pytest.raises(ValueError, match="is not a readable tar archive.*"
                     "corrupted or partial download"):
    convert.convert(str(broken), str(tmp_path / "w"), synthetic.get_config())
  assert not (tmp_path / "w" / "config.json").exists()


def test_a_tarball_without_a_checkpoint_names_its_files(tmp_path):
  path = tmp_path / "empty.tar.gz"
  with tarfile.open(path, "w:gz") as tar:
    info = tarfile.TarInfo("model/frozen_inference_graph.pb")
    info.size = 3
    tar.addfile(info, io.BytesIO(b"abc"))
  with pytest.raises(ValueError, match=r"no checkpoint \(\*.index\).*"
                     "frozen_inference_graph.pb"):
    convert.convert(str(path), str(tmp_path / "w"), synthetic.get_config())


def test_the_zoo_table_holds_the_released_models():
  # Addresses and figures as g3doc/model_zoo.md gives them.
  voc = zoo.MODELS["xception_coco_voc_trainaug"]
  assert voc.url == ("http://download.tensorflow.org/models/"
                     "deeplabv3_pascal_train_aug_2018_01_04.tar.gz")
  assert "82.20%" in voc.miou and "83.58%" in voc.miou
  assert zoo.MODELS["xception_ade20k_train"].url.endswith(
      "deeplabv3_xception_ade20k_train_2018_05_29.tar.gz")
  assert len(zoo.MODELS) == 7
  for entry in zoo.MODELS.values():
    # A shipped config's name, as --config=NAME takes it (installed too).
    assert entry.config in config_lib.shipped_configs(), entry.name
    config = entry.get_config()
    assert config.model.backbone == entry.backbone, entry.name
    assert config.dataset.name == entry.dataset, entry.name
    assert config.model.output_stride == entry.output_stride, entry.name
    assert entry.url.startswith(zoo.DOWNLOAD_ROOT) and zoo.is_archive(entry.url)
  with pytest.raises(ValueError, match="not a model zoo name"):
    convert.convert("xception_coco_voc_trainaug_typo", "/nowhere")
  with pytest.raises(ValueError, match="'pascal_voc' is not a shipped config; "
                     "shipped: .*pascal_voc_xception65"):
    config_lib.shipped_config("pascal_voc")
  assert os.path.basename(voc.url) == "deeplabv3_pascal_train_aug_2018_01_04.tar.gz"


def test_the_convert_cli_takes_a_tarball(tarball, tmp_path):
  path, arrays = tarball
  result = harness.run_cli("-m", "deeplab.cli", "convert",
                           "--config=configs/synthetic.py", f"--source={path}",
                           f"--workdir={tmp_path / 'w'}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "unused from the source" in result.stdout
  check_run(tmp_path / "w", arrays)


def test_the_convert_cli_refuses_a_backbone_checkpoint_by_name(tmp_path):
  # Refused before any download: the name implies no segmentation model.
  result = harness.run_cli("-m", "deeplab.cli", "convert", "--source=xception_65",
                           f"--workdir={tmp_path / 'w'}")
  assert result.returncode != 0
  assert "config.model.backbone_weights=xception_65" in result.stderr, result.stderr[-3000:]
  assert not (tmp_path / "w").exists()


def test_the_zoo_table_holds_the_imagenet_backbone_checkpoints():
  # Names and addresses as g3doc/model_zoo.md gives them ("Checkpoints
  # pretrained on ImageNet"); MobileNetV2's is slim's, which it refers to.
  table = zoo.BACKBONE_CHECKPOINTS
  assert table["xception_65"].url == (
      "http://download.tensorflow.org/models/deeplabv3_xception_2018_01_04.tar.gz")
  assert table["resnet_v1_101_beta"].url == (
      "http://download.tensorflow.org/models/resnet_v1_101_2018_05_04.tar.gz")
  assert table["resnet_v1_50_beta"].url.endswith("resnet_v1_50_2018_05_04.tar.gz")
  assert table["xception_41"].url.endswith("xception_41_2018_05_09.tar.gz")
  assert table["xception_71"].url.endswith("xception_71_2018_05_09.tar.gz")
  assert table["mobilenet_v2_1.0_224"].url.endswith("mobilenet_v2_1.0_224.tgz")
  assert {c.backbone for c in table.values()} == set(backbones.BACKBONES)
  assert not set(table) & set(zoo.MODELS)
  for entry in table.values():
    assert zoo.is_name(entry.name) and zoo.is_archive(entry.url), entry.name
  # No segmentation model: converting one says what it is for.
  with pytest.raises(ValueError, match="backbone checkpoint.*"
                     "config.model.backbone_weights=resnet_v1_101_beta"):
    convert.convert("resnet_v1_101_beta", "/nowhere")


@pytest.fixture
def backbone_entry(tmp_path, monkeypatch):
  """(name, arrays): a backbone checkpoint entry of the synthetic config's
  backbone (MobileNetV2 x0.5) whose tarball holds its weights, a
  classifier's logits and a global_step, the cache in a temporary folder."""
  config = synthetic.get_config()
  arrays = {n: a for n, a in random_arrays(config, seed=1).items()
            if backbones.get("mobilenet_v2").is_backbone_weight(n)}
  logits = "MobilenetV2/Logits/Conv2d_1c_1x1/weights"
  path = write_zoo_tarball(tmp_path / "mobilenet_v2_0.5_224.tar.gz",
                           {**arrays, logits: np.zeros((1, 1, 8, 1001), "float32")})
  entry = zoo.BackboneCheckpoint("synthetic_backbone", path.as_uri(),
                                 "mobilenet_v2", 0.5)
  monkeypatch.setattr(zoo, "CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setitem(zoo.BACKBONE_CHECKPOINTS, entry.name, entry)
  return entry.name, arrays


def test_a_backbone_checkpoint_is_backbone_weights_by_name(backbone_entry):
  name, arrays = backbone_entry
  config = synthetic.get_config()
  config.model.backbone_weights = name
  model = model_lib.build_model(config)
  head_before = np.asarray(model.get_layer("aspp0").kernel)
  warm_start.initialize_from_config(model, config)
  names = naming.original_names(model)
  for original, value in arrays.items():
    np.testing.assert_array_equal(names[original], value, err_msg=original)
  np.testing.assert_array_equal(model.get_layer("aspp0").kernel, head_before)


def test_a_backbone_checkpoint_of_another_backbone_is_refused(backbone_entry):
  name, _ = backbone_entry
  model = model_lib.build_model(synthetic.get_config())
  # Refused before any download: the table says which backbone each holds.
  with pytest.raises(ValueError, match="backbone_weights='xception_65' holds "
                     "backbone 'xception_65'.*the model's is 'mobilenet_v2'"):
    weights.load_backbone_weights(model, "xception_65")
  with pytest.raises(ValueError, match=r"depth multiplier 1\.0\), the model's "
                     r"is 'mobilenet_v2' \(depth multiplier 0\.5\).*"
                     f"{name}"):
    weights.load_backbone_weights(model, "mobilenet_v2_1.0_224")
  with pytest.raises(ValueError, match="holds backbone 'xception_65'"):
    weights.load_backbone_weights(model, "xception_coco_voc_trainaug")


def test_from_pretrained_a_zoo_name_downloads_and_converts_once(
    zoo_name, tmp_path, monkeypatch):
  entry, arrays = zoo_name
  model = deeplab.from_pretrained(entry.name)
  check_model(model, arrays)
  images = np.zeros((1, 65, 65, 3), np.float32)
  assert model(images).shape == (1, 65, 65, 5)
  folder = pretrained.converted_folder(entry.name)
  assert folder == str(tmp_path / "cache" / zoo.CACHE_SUBDIR / "converted" / entry.name)
  assert run_dir.latest_checkpoint(folder)
  assert [p.name for p in (tmp_path / "cache" / zoo.CACHE_SUBDIR / "converted").iterdir()] == [
      entry.name]  # No partial conversion left.

  # The second call neither downloads nor converts.
  def refuse(*args, **kwargs):
    raise AssertionError(f"converted again: {args}")
  monkeypatch.setattr(convert, "convert", refuse)
  monkeypatch.setattr(zoo, "download", refuse)
  check_model(deeplab.from_pretrained(entry.name), arrays)
  # A config may change how the model runs, not its weights.
  config = synthetic.get_config()
  config.model.output_stride = 8
  config.model.atrous_rates = (4, 8)
  assert deeplab.from_pretrained(entry.name, config).args.output_stride == 8
  config.dataset.num_classes = 7
  with pytest.raises(ValueError, match="num_classes=7"):
    deeplab.from_pretrained(entry.name, config)


def test_from_pretrained_a_tarball_a_prefix_and_a_run_folder(tarball, tmp_path):
  path, arrays = tarball
  check_model(pretrained.from_pretrained(str(path), synthetic.get_config()), arrays)
  with pytest.raises(ValueError, match="not a model zoo name.*give its config"):
    pretrained.from_pretrained(str(path))
  convert.convert(str(path), str(tmp_path / "run"), synthetic.get_config())
  check_model(pretrained.from_pretrained(str(tmp_path / "run")), arrays)
  with pytest.raises(ValueError, match="backbone checkpoint"):
    pretrained.from_pretrained("xception_65")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    pretrained.from_pretrained("/nowhere/model.ckpt", synthetic.get_config())


def test_from_pretrained_a_released_tflite_file():
  config = config_lib.shipped_config("pascal_voc_mobilenetv2_dm05")
  model = deeplab.from_pretrained(str(harness.released_tflite()), config)
  assert model.args.depth_multiplier == 0.5 and model.args.num_classes == 21
  assert model(np.zeros((1, 257, 257, 3), np.float32)).shape == (1, 257, 257, 21)
