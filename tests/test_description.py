"""Records describe themselves (dataset.json), and runs take their classes
from it: builders, resolution against a config, class weights, the
starting config for one's own data."""

import json
import logging
import os
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from datasets import build_class_folders
from datasets import build_folder
from datasets import common
from datasets import label_audit
from datasets import make_synthetic
from deeplab import config as config_lib
from deeplab import model as model_lib
from deeplab import zoo
from deeplab.data import builder
from deeplab.data import dataset_table
from deeplab.data import description
from deeplab.training import loop
from tests.conftest import shared_path

NAMES = ("background", "road", "car", "tree", "sky")
OPTIONS = common.BuildOptions(num_shards=1, workers=1)


def _folder(root, count, seed):
  """``count`` 65x81 images with masks of horizontal bands of ids 0..4
  (and some ignored pixels)."""
  rng = np.random.default_rng(seed)
  images, masks = root / "imgs", root / "masks"
  images.mkdir(parents=True)
  masks.mkdir(parents=True)
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (65, 81, 3), np.uint8)).save(images / f"{i}.png")
    bands = np.array([0, 1, 2, 3, 4, 0, 255], np.uint8)[np.arange(65) * 7 // 65]
    Image.fromarray(np.repeat(bands[:, None], 81, axis=1)).save(masks / f"{i}.png")
  return str(images), str(masks)


@pytest.fixture(scope="module")
def five_classes(tmp_path_factory):
  """A 5-class folder dataset with its own names, train (4) and val (2)
  built in two calls into one folder."""
  root = tmp_path_factory.mktemp("five")
  out = root / "records"
  spec = build_folder.label_spec(num_classes=5)
  for split, count in (("train", 4), ("val", 2)):
    images, masks = _folder(root / split, count, seed=count)
    build_folder.build(images, masks, str(out), spec, split, options=OPTIONS,
                       class_names=NAMES)
  return out


def _tiny(config, out, **fields):
  """``config`` set for a one-step run on ``out`` at 65x65."""
  values = {"data.train_pattern": f"{out}/train-*.tfrecord",
            "data.eval_pattern": f"{out}/val-*.tfrecord",
            "data.crop_size": (65, 65), "data.min_resize_value": 0,
            "data.max_resize_value": 0, "train.batch_size": 2,
            "train.steps": 1, "train.steps_per_loop": 1,
            "checkpoint.every": 1, "eval.num_summary_images": 0,
            "init.checkpoint": "", "budget.max_minutes": 0.0,
            "model.backbone": "mobilenet_v2", "model.depth_multiplier": 0.5,
            "model.aspp_filters": 32, "model.decoder_filters": 32,
            "model.low_level_filters": 16,
            **fields}
  for path, value in values.items():
    config_lib.set_field(config, path, value)
  return config


def test_folder_builds_describe_their_splits_in_one_file(five_classes):
  values = json.loads((five_classes / "dataset.json").read_text())
  assert values["format_version"] == description.FORMAT_VERSION
  assert (values["task"], values["num_classes"], values["ignore_label"]) == (
      "segmentation", 5, 255)
  assert tuple(values["class_names"]) == NAMES
  assert values["colormap"] is None  # Id masks carry no colors.
  assert {s: v["records"] for s, v in values["splits"].items()} == {"train": 4, "val": 2}
  train = values["splits"]["train"]
  assert sum(train["class_pixels"]) + train["ignored_pixels"] == 4 * 65 * 81
  assert train["class_masks"] == [4] * 5
  assert train["class_mask_pixels"] == [4 * 65 * 81] * 5
  # Records of other classes are refused before a shard is written.
  images, masks = _folder(five_classes.parent / "other", 1, seed=0)
  with pytest.raises(ValueError, match=r"num_classes=7 vs 5"):
    build_folder.build(images, masks, str(five_classes),
                       build_folder.label_spec(num_classes=7), "test",
                       options=OPTIONS)
  assert not list(five_classes.glob("test-*"))


def test_the_label_audit_takes_the_classes_of_a_cloud_folder(five_classes):
  remote = "ram://deeplab_test_description/records"
  tf.io.gfile.makedirs(remote)
  for path in five_classes.iterdir():
    tf.io.gfile.copy(str(path), f"{remote}/{path.name}", overwrite=True)
  text, warnings = label_audit.audit(remote)
  assert not [w for w in warnings if "num_classes not given" in w], warnings
  assert " road " in text and "class_5" not in text


@pytest.mark.slow  # The one end-to-end run: a training step (~45 s on 2 cores).
def test_five_classes_train_with_their_names_without_dataset_flags(five_classes, tmp_path):
  config = _tiny(config_lib.shipped_config("custom"), five_classes)
  resolved = config_lib.resolve_dataset(config)
  assert resolved.dataset.num_classes == 5
  assert resolved.dataset.class_names == NAMES
  assert resolved.dataset.name == description.DEFAULT_NAME
  assert len(resolved.loss.class_weights) == 5  # 'auto_sqrt' computed.
  assert config.dataset.num_classes == 21  # The input is left as it was.
  workdir = tmp_path / "run"
  assert loop.train(config, str(workdir))["step"] == 1
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["dataset"]["num_classes"] == 5
  assert tuple(saved["dataset"]["class_names"]) == NAMES
  assert isinstance(saved["loss"]["class_weights"], list)
  info = dataset_table.from_config(config_lib.from_dict(saved))
  assert info.class_names == NAMES


@pytest.mark.parametrize("path, value, message", [
    ("dataset.num_classes", 7, "config.dataset.num_classes=7 contradicts the "
     "records: .*dataset.json .* says num_classes=5"),
    ("dataset.ignore_label", 0, "config.dataset.ignore_label=0 .* says ignore_label=255"),
    ("dataset.class_names", ("a", "b", "c", "d", "e"),
     "config.dataset.class_names=.*'a'.* says class_names=.*'background'"),
    ("model.task", "classification", "config.model.task='classification' "
     "contradicts the records: .* holds segmentation records"),
    ("dataset.name", "camvid", "config.dataset.name='camvid' \\(11 classes\\) "
     "contradicts the records: .* name='custom', num_classes=5"),
])
def test_a_config_that_contradicts_the_records_is_refused(five_classes, path, value,
                                                          message):
  config = _tiny(config_lib.base_config(), five_classes)
  config_lib.set_field(config, path, value)
  with pytest.raises(ValueError, match=message):
    config_lib.resolve_dataset(config)


def test_records_without_a_description_warn_and_keep_the_config(five_classes, tmp_path,
                                                                caplog):
  bare = tmp_path / "bare"
  bare.mkdir()
  for shard in five_classes.glob("*.tfrecord"):
    shutil.copy(shard, bare / shard.name)
  config = _tiny(config_lib.base_config(), bare)
  with caplog.at_level(logging.WARNING):
    resolved = config_lib.resolve_dataset(config)
  assert (f"no dataset.json beside {bare}/train-*.tfrecord; assuming "
          "num_classes=21 (pascal_voc_seg), ignore_label=255") in caplog.text
  assert resolved.to_dict() == config.to_dict()
  config_lib.set_field(config, "loss.class_weights", "auto")
  with pytest.raises(ValueError, match="class_weights='auto' computes weights .* "
                     "and there is none"):
    config_lib.resolve_dataset(config)


def test_auto_class_weights_are_median_frequency_and_its_square_root(five_classes):
  described = description.read(str(five_classes / "dataset.json"))
  train = described.splits["train"]
  freq = np.array(train["class_pixels"]) / np.array(train["class_mask_pixels"])
  expected = np.median(freq) / freq
  weights = {}
  for choice in ("auto", "auto_sqrt"):
    config = _tiny(config_lib.base_config(), five_classes,
                   **{"loss.class_weights": choice})
    weights[choice] = np.array(config_lib.resolve_dataset(config).loss.class_weights)
  np.testing.assert_allclose(weights["auto"], expected)
  np.testing.assert_allclose(weights["auto_sqrt"], np.sqrt(expected))
  config = config_lib.base_config()
  config_lib.set_field(config, "loss.class_weights", "median")
  with pytest.raises(ValueError, match="config.loss.class_weights must be .* or "
                     "one of 'auto', 'auto_sqrt', got 'median'"):
    config_lib.validate(config)


def test_the_synthetic_builder_describes_both_tasks(tmp_path):
  make_synthetic.build(str(tmp_path / "seg"), train_size=3, val_size=2,
                       image_size=33, options=OPTIONS)
  seg = description.read(str(tmp_path / "seg" / "dataset.json"))
  info = dataset_table.DATASETS["synthetic"]
  assert (seg.name, seg.num_classes, seg.class_names) == (
      "synthetic", 5, info.class_names)
  assert np.array_equal(np.array(seg.colormap), info.colormap)
  assert sum(seg.splits["val"]["class_pixels"]) == 2 * 33 * 33
  make_synthetic.build(str(tmp_path / "cls"), train_size=3, val_size=2,
                       task="classification", options=OPTIONS)
  cls = description.read(str(tmp_path / "cls" / "dataset.json"))
  assert (cls.task, cls.num_classes, cls.ignore_label) == ("classification", 4, None)
  assert cls.splits == {"train": {"records": 3}, "val": {"records": 2}}
  # The synthetic_shapes config agrees with them.
  config = config_lib.shipped_config("synthetic_shapes")
  config_lib.set_field(config, "data.train_pattern", f"{tmp_path}/cls/train-*")
  assert config_lib.resolve_dataset(config).dataset.num_classes == 4


def test_class_folders_describe_their_classes_from_first_label(tmp_path):
  for name in ("cat", "dog"):
    (tmp_path / "in" / name).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in" / name / "a.png")
  build_class_folders.build(str(tmp_path / "in"), str(tmp_path / "out"),
                            first_label=1, options=OPTIONS)
  described = description.read(str(tmp_path / "out" / "dataset.json"))
  assert described.class_names == ("class_0", "cat", "dog")
  config = config_lib.base_config()
  for path, value in (("model.task", "classification"), ("data.label_offset", -1),
                      ("data.train_pattern", f"{tmp_path}/out/train-*")):
    config_lib.set_field(config, path, value)
  resolved = config_lib.resolve_dataset(config)
  assert (resolved.dataset.num_classes, resolved.dataset.class_names) == (2, ("cat", "dog"))
  # Class folders of some of a config's classes (part of ImageNet) fit it.
  config = config_lib.shipped_config("imagenet_xception65")
  config_lib.set_field(config, "data.train_pattern", f"{tmp_path}/out/train-*")
  assert config_lib.resolve_dataset(config).dataset.num_classes == 1001


def test_camvid_records_describe_the_table_entry(tmp_path):
  source = shared_path("camvid")
  root = tmp_path / "camvid"
  for folder in ("train", "trainannot"):
    (root / folder).mkdir(parents=True)
    name = sorted(os.listdir(source / "train"))[0]
    shutil.copy(source / folder / name, root / folder / name)
  from datasets import build_camvid  # pylint: disable=g-import-not-at-top
  build_camvid.build(str(root), str(tmp_path / "out"), OPTIONS)
  described = description.read(str(tmp_path / "out" / "dataset.json"))
  info = dataset_table.DATASETS["camvid"]
  assert (described.name, described.num_classes, described.ignore_label) == (
      "camvid", 11, 11)
  assert described.class_names == info.class_names
  assert np.array_equal(np.array(described.colormap), info.colormap)
  split = described.splits["train"]
  assert sum(split["class_pixels"]) + split["ignored_pixels"] == 360 * 480
  # The shipped CamVid recipe names its classes on purpose and agrees.
  config = config_lib.shipped_config("camvid_finetune")
  config_lib.set_field(config, "data.train_pattern", f"{tmp_path}/out/train-*")
  assert config_lib.resolve_dataset(config).dataset.name == "camvid"


def test_builders_of_the_table_use_its_names(tmp_path):
  spec = builder.LabelSpec(19, 255)
  described = common.segmentation_description(spec, "cityscapes")
  assert described.class_names[0] == "road" and described.colormap[0] == (128, 64, 128)
  with pytest.raises(ValueError, match=r"2 class names \('a', 'b'\) for num_classes=19"):
    common.segmentation_description(spec, class_names=("a", "b"))


def test_the_custom_config_builds_its_model():
  config = config_lib.shipped_config("custom")
  config_lib.validate(config)
  assert config.loss.class_weights == "auto_sqrt"
  assert config.init.checkpoint in zoo.MODELS
  model_lib.build_model(config)
