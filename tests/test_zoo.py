"""The model zoo table and ``deeplab.convert`` from zoo names, addresses,
tarballs and prefixes, offline: the tarballs are built here in the zoo's
layout (a folder holding model.ckpt.* under the original names)."""

import hashlib
import io
import os
import tarfile

import keras
import numpy as np
import pytest

from deeplab import convert
from deeplab import model as model_lib
from deeplab import naming
from deeplab import run_dir
from deeplab import zoo
from deeplab_configs import synthetic
from tests import harness


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
  """(path, arrays): a zoo-layout tarball of the synthetic config's model
  with values the test chose, plus what the zoo's files hold besides."""
  root = tmp_path_factory.mktemp("zoo")
  keras.utils.set_random_seed(5)
  model = model_lib.build_model(synthetic.get_config())
  rng = np.random.default_rng(0)
  arrays = {n: rng.normal(size=v.shape).astype(np.float32)
            for n, v in naming.original_names(model).items()}
  folder = root / "deeplabv3_synthetic_train_2026_01_01"
  folder.mkdir()
  harness.write_tf1_checkpoint(
      folder / "model.ckpt", {**arrays, "global_step": np.int64(30000)})
  (folder / "frozen_inference_graph.pb").write_bytes(b"not read")
  path = root / "deeplabv3_synthetic_train_2026_01_01.tar.gz"
  with tarfile.open(path, "w:gz") as tar:
    tar.add(folder, arcname=folder.name)
  return path, arrays


def check_run(workdir, arrays):
  model, step = run_dir.restore_model(run_dir.read_config(str(workdir)),
                                      str(workdir))
  assert step == 0
  names = naming.original_names(model)
  assert set(names) == set(arrays)
  for name, value in arrays.items():
    np.testing.assert_array_equal(names[name], value, err_msg=name)


def test_a_zoo_tarball_and_its_unpacked_prefix_convert_exactly(tarball, tmp_path):
  path, arrays = tarball
  report = convert.convert(synthetic.get_config(), str(path), str(tmp_path / "a"))
  assert report.unused == ["global_step"]
  check_run(tmp_path / "a", arrays)
  with tarfile.open(path) as tar:
    tar.extractall(tmp_path / "unpacked")
  prefix = tmp_path / "unpacked" / "deeplabv3_synthetic_train_2026_01_01" / "model.ckpt"
  convert.convert(synthetic.get_config(), str(prefix), str(tmp_path / "b"))
  check_run(tmp_path / "b", arrays)


def test_a_zoo_name_downloads_once_into_the_keras_cache_with_its_checksum(
    tarball, tmp_path, monkeypatch):
  path, arrays = tarball
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  entry = zoo.ZooModel("synthetic_test", path.as_uri(), "mobilenet_v2", 16,
                       "synthetic", "configs.synthetic", "n/a", digest)
  monkeypatch.setattr(zoo, "CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setitem(zoo.MODELS, entry.name, entry)
  convert.convert(None, entry.name, str(tmp_path / "w"))  # The zoo's config.
  check_run(tmp_path / "w", arrays)
  cached = tmp_path / "cache" / zoo.CACHE_SUBDIR / path.name
  assert cached.read_bytes() == path.read_bytes()
  # An address converts too; a wrong checksum is refused.
  convert.convert(synthetic.get_config(), path.as_uri(), str(tmp_path / "u"))
  check_run(tmp_path / "u", arrays)
  monkeypatch.setitem(zoo.MODELS, entry.name,
                      zoo.ZooModel(**{**entry.__dict__, "sha256": "0" * 64}))
  cached.unlink()
  with pytest.raises(ValueError, match="(?i)corrupt|hash"):
    convert.convert(None, entry.name, str(tmp_path / "bad"))


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupted_tarball_is_refused_with_the_reason(tarball, tmp_path, damage):
  path, _ = tarball
  data = path.read_bytes()
  broken = tmp_path / path.name
  broken.write_bytes(data[:len(data) // 2] if damage == "truncated"
                     else b"<html>404 Not Found</html>" * 40)
  with pytest.raises(ValueError, match="is not a readable tar archive.*"
                     "corrupted or partial download"):
    convert.convert(synthetic.get_config(), str(broken), str(tmp_path / "w"))
  assert not (tmp_path / "w" / "config.json").exists()


def test_a_tarball_without_a_checkpoint_names_its_files(tmp_path):
  path = tmp_path / "empty.tar.gz"
  with tarfile.open(path, "w:gz") as tar:
    info = tarfile.TarInfo("model/frozen_inference_graph.pb")
    info.size = 3
    tar.addfile(info, io.BytesIO(b"abc"))
  with pytest.raises(ValueError, match=r"no checkpoint \(\*.index\).*"
                     "frozen_inference_graph.pb"):
    convert.convert(synthetic.get_config(), str(path), str(tmp_path / "w"))


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
    config = entry.get_config()
    assert config.model.backbone == entry.backbone, entry.name
    assert config.dataset.name == entry.dataset, entry.name
    assert config.model.output_stride == entry.output_stride, entry.name
    assert entry.url.startswith(zoo.DOWNLOAD_ROOT) and zoo.is_archive(entry.url)
  with pytest.raises(ValueError, match="not a model zoo name"):
    convert.convert(None, "xception_coco_voc_trainaug_typo", "/nowhere")
  assert os.path.basename(voc.url) == "deeplabv3_pascal_train_aug_2018_01_04.tar.gz"


def test_the_convert_cli_takes_a_tarball(tarball, tmp_path):
  path, arrays = tarball
  result = harness.run_cli("-m", "deeplab.cli", "convert",
                           "--config=configs/synthetic.py", f"--source={path}",
                           f"--workdir={tmp_path / 'w'}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "unused from the source" in result.stdout
  check_run(tmp_path / "w", arrays)
