"""Record format, builders on real CamVid files, shard safety, bad input."""

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deeplab.data import builder
from deeplab.data import records
from deeplab_datasets import build_camvid
from tests.conftest import REPO
from tests.conftest import shared_path


def png(array, mode=None):
  buffer = io.BytesIO()
  Image.fromarray(array, mode=mode).save(buffer, format="PNG")
  return buffer.getvalue()


def write(path, array, mode=None, fmt=None):
  Image.fromarray(array, mode=mode).save(path, format=fmt)
  return str(path)


def test_a_record_written_by_hand_with_the_original_keys_loads(tmp_path):
  image = np.random.default_rng(0).integers(0, 255, (7, 9, 3), dtype=np.uint8)
  label = np.random.default_rng(1).integers(0, 21, (7, 9), dtype=np.uint8)
  # As the original build_voc2012_data.py writes them (no builder of ours).
  feature = {
      "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png(image)])),
      "image/filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"2007_000032"])),
      "image/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"png"])),
      "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
      "image/width": tf.train.Feature(int64_list=tf.train.Int64List(value=[9])),
      "image/channels": tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
      "image/segmentation/class/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png(label)])),
      "image/segmentation/class/format": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"png"])),
  }
  serialized = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
  parsed = records.parse(serialized)
  np.testing.assert_array_equal(parsed["image"], image)
  np.testing.assert_array_equal(parsed["label"][..., 0], label)
  assert parsed["filename"].numpy() == b"2007_000032"


def test_an_unlabelled_record_gets_the_ignore_label():
  image = np.zeros((4, 5, 3), np.uint8)
  example = records.make_example(png(image), "png", "x", 4, 5)
  parsed = records.parse(example.SerializeToString(), ignore_label=11)
  assert parsed["label"].shape == (4, 5, 1)
  assert np.all(parsed["label"].numpy() == 11)


@pytest.fixture(scope="module")
def camvid_sample(tmp_path_factory):
  """Four train and two val CamVid pairs, copied into the CamVid layout."""
  source = shared_path("camvid")
  root = tmp_path_factory.mktemp("camvid")
  for split, count in (("train", 4), ("val", 2)):
    names = sorted(os.listdir(source / split))[:count]
    for folder in (split, split + "annot"):
      (root / folder).mkdir()
      for name in names:
        shutil.copy(source / folder / name, root / folder / name)
  return root


def test_camvid_builder_cli_round_trips_pixels_and_ids(camvid_sample, tmp_path):
  out = tmp_path / "records"
  subprocess.run([sys.executable, "-m", "deeplab.cli", "build-camvid",
                  f"--camvid_root={camvid_sample}", f"--output_dir={out}",
                  "--num_shards=2"], cwd=REPO, check=False,
                 capture_output=True, text=True)
  # Split sizes differ from the table (a sample), so the exit code is 1 and
  # the table mismatch is reported; the records are still all written.
  assert sorted(os.listdir(out)) == [
      "dataset.json",
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
      "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"]
  for split in ("train", "val"):
    examples = list(records.iterate_examples(records.existing_shards(str(out), split)))
    names = sorted(os.listdir(camvid_sample / split))
    assert [e["filename"].decode() for e in examples] == [n[:-4] for n in names]
    for example, name in zip(examples, names):
      image = np.asarray(Image.open(camvid_sample / split / name).convert("RGB"))
      ids = np.asarray(Image.open(camvid_sample / (split + "annot") / name))
      np.testing.assert_array_equal(example["image"], image)
      np.testing.assert_array_equal(example["label"][..., 0], ids)
      assert example["image"].shape == (360, 480, 3)


def test_camvid_builder_reports_table_mismatch(camvid_sample, tmp_path):
  result = subprocess.run([sys.executable, "-m", "deeplab.cli", "build-camvid",
                           f"--camvid_root={camvid_sample}",
                           f"--output_dir={tmp_path}"], cwd=REPO,
                          capture_output=True, text=True)
  assert result.returncode == 1
  assert "split 'train' has 4 records but the dataset table says 367" in result.stdout


def test_camvid_builder_splits_by_recording(tmp_path):
  root = tmp_path / "CamVid"
  frames = {"train": ["0001TP_006690", "0006R0_f01800", "0016E5_00390"],
            "val": ["0006R0_f02400", "0016E5_07959"]}
  rng = np.random.default_rng(0)
  for split, stems in frames.items():
    for folder in (split, split + "annot"):
      (root / folder).mkdir(parents=True)
    for stem in stems:
      write(root / split / f"{stem}.png", rng.integers(0, 255, (6, 8, 3), np.uint8))
      write(root / (split + "annot") / f"{stem}.png", rng.integers(0, 12, (6, 8), np.uint8))
  out = tmp_path / "records"
  result = subprocess.run([sys.executable, "-m", "deeplab.cli", "build-camvid",
                           f"--camvid_root={root}", f"--output_dir={out}",
                           "--num_shards=1", "--val_sequences=0006R0"], cwd=REPO,
                          capture_output=True, text=True)
  # Split sizes are not checked against the table's SegNet split.
  assert result.returncode == 0, result.stderr
  stems = {split: sorted(e["filename"].decode() for e in records.iterate_examples(
      records.existing_shards(str(out), split))) for split in ("train", "val")}
  assert stems == {"train": ["0001TP_006690", "0016E5_00390", "0016E5_07959"],
                   "val": ["0006R0_f01800", "0006R0_f02400"]}
  description = json.loads((out / "dataset.json").read_text())
  assert {k: v["records"] for k, v in description["splits"].items()} == {"train": 3, "val": 2}

  unknown = subprocess.run([sys.executable, "-m", "deeplab.cli", "build-camvid",
                            f"--camvid_root={root}", f"--output_dir={tmp_path / 'x'}",
                            "--val_sequences=0006R1"], cwd=REPO,
                           capture_output=True, text=True)
  assert unknown.returncode == 1
  assert ("no train or val frame of 0006R1; the frames are of 0001TP (1), "
          "0006R0 (2), 0016E5 (2)") in unknown.stderr
  assert not (tmp_path / "x").exists()

  found, _ = build_camvid.splits(str(root))
  with pytest.raises(ValueError, match="leaves no frame to train on"):
    build_camvid.split_by_sequence(found, ["0001TP", "0006R0", "0016E5"])
  test = [builder.Sample("test/0001TP_008550.png", None)]
  assert build_camvid.split_by_sequence({**found, "test": test}, ["0006R0"])["test"] == test
  with pytest.raises(ValueError, match="val/ has no valannot/ folder"):
    build_camvid.split_by_sequence(found, ["0006R0"], unlabelled=["val"])


@pytest.fixture
def messy_folder(tmp_path):
  """Images and masks with every kind of problem the builders handle."""
  images, masks = tmp_path / "images", tmp_path / "masks"
  images.mkdir()
  masks.mkdir()
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 255, (8, 10, 3), dtype=np.uint8)
  ids = rng.integers(0, 3, (8, 10), dtype=np.uint8)
  write(images / "good.jpg", rgb, fmt="JPEG")
  write(masks / "good.png", ids)
  write(images / "rgba.png", np.dstack([rgb, np.full((8, 10), 128, np.uint8)]))
  write(masks / "rgba.png", ids)
  write(images / "gray.png", rgb[..., 0])
  write(masks / "gray.png", ids)
  Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(images / "deep.png")
  write(masks / "deep.png", ids)
  write(images / "nomask.png", rgb)
  write(images / "badsize.png", rgb)
  write(masks / "badsize.png", ids[:4])
  write(images / "badvalues.png", rgb)
  bad = ids.copy()
  bad[0, :3] = 7
  write(masks / "badvalues.png", bad)
  write(images / "truncated.png", rgb)
  data = (images / "truncated.png").read_bytes()
  (images / "truncated.png").write_bytes(data[: len(data) // 2])
  write(masks / "truncated.png", ids)
  return images, masks, rgb, ids


def test_builder_converts_and_reports_every_problem(messy_folder, tmp_path):
  images, masks, rgb, ids = messy_folder
  samples = builder.pair_by_stem(str(images), str(masks))
  report = builder.build_split(samples, builder.LabelSpec(3, 255),
                               str(tmp_path / "out"), "train", 2, workers=2)
  text = "\n".join(report.problems)
  assert "nomask.png: no mask found" in text
  assert "badsize.png: mask is 10x4 but its image is 10x8" in text
  assert "badvalues.png: values [7] are neither class ids" in text
  assert "truncated.png: unreadable or truncated image" in text
  assert len(report.problems) == 4
  assert report.notes == {"alpha channel dropped": 1,
                          "grayscale replicated to RGB": 1,
                          "16-bit image scaled to 8 bits (value / 257)": 1}
  written = {e["filename"].decode(): e
             for e in records.iterate_examples(report.shards)}
  assert sorted(written) == ["badvalues", "deep", "good", "gray", "rgba"]
  np.testing.assert_array_equal(written["rgba"]["image"], rgb)
  np.testing.assert_array_equal(written["gray"]["image"],
                                np.dstack([rgb[..., 0]] * 3))
  np.testing.assert_array_equal(written["deep"]["image"][..., 0], rgb[..., 0])
  assert np.all(written["badvalues"]["label"][0, :3, 0] == 255)
  np.testing.assert_array_equal(written["good"]["label"][..., 0], ids)


def test_strict_mode_stops_and_leaves_no_shard(messy_folder, tmp_path):
  images, masks, _, _ = messy_folder
  out = tmp_path / "out"
  samples = builder.pair_by_stem(str(images), str(masks))
  with pytest.raises(builder.BuildError, match=r"\.png"):
    builder.build_split(samples, builder.LabelSpec(3, 255), str(out), "train",
                        2, strict=True, workers=1)
  assert os.listdir(out) == []


def test_interrupted_build_leaves_no_whole_looking_shard(tmp_path, monkeypatch):
  rgb = np.zeros((6, 6, 3), np.uint8)
  samples = [builder.Sample(f"img{i}.png", f"m{i}.png", image_data=png(rgb),
                            mask_data=png(np.zeros((6, 6), np.uint8)))
             for i in range(6)]
  out = tmp_path / "out"
  builder.build_split(samples, builder.LabelSpec(2, 255), str(out), "train", 3,
                      workers=1)
  before = sorted(os.listdir(out))
  calls = []

  def explode(self, shard, serialized):
    calls.append(shard)
    if len(calls) == 4:
      raise KeyboardInterrupt
    self.writers[shard].write(serialized)

  monkeypatch.setattr(records.ShardWriter, "write", explode)
  with pytest.raises(KeyboardInterrupt):
    builder.build_split(samples, builder.LabelSpec(2, 255), str(out), "train",
                        2, workers=1)
  assert sorted(os.listdir(out)) == before  # Old build intact, no temp files.
  monkeypatch.undo()
  builder.build_split(samples, builder.LabelSpec(2, 255), str(out), "train", 2,
                      workers=1)
  assert sorted(os.listdir(out)) == ["train-00000-of-00002.tfrecord",
                                     "train-00001-of-00002.tfrecord"]


def test_folder_builder_reads_palette_and_rgb_masks(tmp_path):
  images, masks, rgb_masks = (tmp_path / d for d in ("i", "m", "c"))
  for d in (images, masks, rgb_masks):
    d.mkdir()
  ids = np.array([[0, 1, 2, 255]] * 4, np.uint8)
  write(images / "a.png", np.zeros((4, 4, 3), np.uint8))
  palette = Image.fromarray(ids, mode="P")
  palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253)
  palette.save(masks / "a.png")
  from deeplab.data import dataset_table  # pylint: disable=g-import-not-at-top
  colors = dataset_table.pascal_colormap(256)[ids]
  colors[:, 3] = (224, 224, 192)
  write(rgb_masks / "a_mask.png", colors)
  for mask_dir, extra in ((masks, []),
                          (rgb_masks, ["--colormap=pascal_voc_seg",
                                       "--ignore_color=224,224,192",
                                       "--mask_suffix=_mask"])):
    out = tmp_path / ("out_" + mask_dir.name)
    subprocess.run([sys.executable, "-m", "deeplab.cli", "build-folder",
                    f"--images={images}", f"--masks={mask_dir}",
                    f"--output_dir={out}", "--split=train", "--num_classes=3",
                    *extra], cwd=REPO, check=True, capture_output=True)
    (example,) = records.iterate_examples(records.existing_shards(str(out), "train"))
    np.testing.assert_array_equal(example["label"][..., 0], ids)


def test_rgb_masks_without_color_table_are_refused(tmp_path):
  sample = builder.Sample("a.png", "a_mask.png",
                          image_data=png(np.zeros((4, 4, 3), np.uint8)),
                          mask_data=png(np.random.default_rng(0).integers(
                              0, 255, (4, 4, 3), dtype=np.uint8)))
  report = builder.build_split([sample], builder.LabelSpec(3, 255),
                               str(tmp_path), "train", 1, workers=1)
  assert "RGB color mask, but no color-to-id table" in report.problems[0]
  assert report.written == 0
