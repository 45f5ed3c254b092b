"""Masks as people have them (deeplab.data.masks) and EXIF orientation, in
the folder builder and in predict."""

import json

import numpy as np
from PIL import Image
import pytest

from deeplab import inference
from deeplab import predict
from deeplab.data import dataset_table
from deeplab.data import image_files
from deeplab.data import records
from deeplab_datasets import build_folder
from deeplab_datasets import common
from tests import harness

# Ids of a 6x8 mask: every class of three, and the ignore label.
IDS = np.array([[0, 0, 1, 1, 2, 2, 255, 0]] * 3 + [[2, 2, 2, 1, 1, 0, 0, 0]] * 3,
               np.uint8)
PASCAL = dataset_table.pascal_colormap(256)
ORIENTATION_6 = 6  # Stored turned 90 degrees counter-clockwise; shown turned back.


def build(tmp_path, write_mask, image_written=False, num_classes=3, **spec):
  """Builds a folder of one image (a black ``images/a.png`` unless
  ``image_written``) and the mask ``write_mask(masks/a.png)`` writes (there
  or beside); returns (report, the records by file stem)."""
  images, masks = tmp_path / "images", tmp_path / "masks"
  images.mkdir(parents=True, exist_ok=True)
  masks.mkdir(parents=True, exist_ok=True)
  if not image_written:
    harness.save_image(images / "a.png", np.zeros(IDS.shape + (3,), np.uint8))
  write_mask(masks / "a.png")
  label_spec = build_folder.label_spec(num_classes=num_classes, **spec)
  (report,) = build_folder.build(str(images), str(masks), str(tmp_path / "out"),
                                 label_spec, options=common.BuildOptions(workers=1))
  written = {e["filename"].decode(): e
             for e in records.iterate_examples(report.shards)}
  return report, written


def rgb_masks(table):
  colors = np.array(table, np.uint8)[np.where(IDS == 255, 0, IDS)]
  colors[IDS == 255] = (224, 224, 192)
  return colors


@pytest.mark.parametrize("form", ["palette", "grey", "rgb_named", "rgb_json",
                                  "rgb_text", "rgb_palette_png",
                                  "rgb_from_a_shuffled_palette", "id16"])
def test_each_mask_form_gives_the_intended_ids(form, tmp_path):
  table = [(10, 20, 30), (200, 0, 0), (0, 200, 0)]
  spec = {}
  if form == "palette":
    writer = lambda p: harness.save_image(p, IDS, "P", PASCAL)
  elif form == "grey":
    writer = lambda p: harness.save_image(p, IDS, "L")
  elif form == "id16":
    writer = lambda p: harness.save_image(p, IDS.astype(np.uint16))
  elif form == "rgb_named":
    table = PASCAL[:3]
    writer = lambda p: harness.save_image(p, rgb_masks(table))
    spec = {"colormap": "pascal", "ignore_color": (224, 224, 192)}
  else:
    writer = lambda p: harness.save_image(p, rgb_masks(table))
    spec = {"ignore_color": (224, 224, 192)}
    if form == "rgb_json":
      (tmp_path / "colors.json").write_text(json.dumps(table))
    elif form == "rgb_text":
      (tmp_path / "colors.txt").write_text(
          "# r g b name\n10 20 30 background\n200,0,0 cat\n#00c800 dog\n")
    else:
      harness.save_image(tmp_path / "colors.png", np.zeros((1, 1), np.uint8), "P",
                         table + [(0, 0, 0)] * 253)
    spec["colormap"] = str(next(tmp_path.glob("colors.*")))
    if form == "rgb_from_a_shuffled_palette":
      # A palette whose indices are not the classes: its colours are.
      order = np.array([7, 3, 5] + [0] * 253, np.uint8)
      palette = [(0, 0, 0)] * 256
      for class_id, index in enumerate(order[:3]):
        palette[index] = table[class_id]
      palette[9] = (224, 224, 192)
      indices = np.where(IDS == 255, 9, order[np.where(IDS == 255, 0, IDS)])
      writer = lambda p: harness.save_image(p, indices.astype(np.uint8), "P", palette)
      spec["mask_format"] = "rgb"
  report, written = build(tmp_path, writer, **spec)
  assert report.problems == []
  np.testing.assert_array_equal(written["a"]["label"][..., 0], IDS)


def test_binary_masks_are_read_as_0_1_when_255_cannot_be_ignore_or_when_told(tmp_path):
  mask = np.where(IDS == 1, 255, 0).astype(np.uint8)
  expected = (IDS == 1).astype(np.uint8)
  report, written = build(tmp_path / "a", lambda p: harness.save_image(p, mask, "L"),
                          num_classes=2, ignore_label=254)
  assert report.notes["0/255 binary mask read as 0/1"] == 1
  np.testing.assert_array_equal(written["a"]["label"][..., 0], expected)
  report, written = build(tmp_path / "b", lambda p: harness.save_image(p, mask, "L"),
                          num_classes=2, mask_format="binary")
  np.testing.assert_array_equal(written["a"]["label"][..., 0], expected)
  # A 1-bit image is 0/1 already.
  report, written = build(tmp_path / "c", lambda p: Image.fromarray(mask).convert("1").save(p),
                          num_classes=2)
  np.testing.assert_array_equal(written["a"]["label"][..., 0], expected)


def test_0_255_masks_with_ignore_label_255_are_ambiguous_and_refused(tmp_path):
  mask = np.where(IDS == 1, 255, 0).astype(np.uint8)
  report, written = build(tmp_path / "a", lambda p: harness.save_image(p, mask, "L"), num_classes=2)
  assert written == {}
  (problem,) = report.problems
  assert "a.png: values exactly 0 and 255" in problem
  assert "--mask_format=binary" in problem and "--mask_format=grey" in problem
  # Told that 255 is unlabelled: 0 stays, 255 is the ignore label.
  report, written = build(tmp_path / "b", lambda p: harness.save_image(p, mask, "L"),
                          num_classes=2, mask_format="grey")
  np.testing.assert_array_equal(written["a"]["label"][..., 0], mask)


def test_colors_not_in_the_table_are_named_with_their_pixel_counts(tmp_path):
  colors = rgb_masks(PASCAL[:3])
  colors[0, :2] = (1, 2, 3)
  report, written = build(tmp_path, lambda p: harness.save_image(p, colors), colormap="pascal")
  (problem,) = report.problems
  assert "a.png: colors not in the color table: (224, 224, 192) in 3 pixels, " \
         "(1, 2, 3) in 2 pixels; set to ignore" in problem
  assert np.all(written["a"]["label"][0, :2, 0] == 255)


def test_ids_out_of_range_are_named_with_values_and_counts(tmp_path):
  ids = IDS.astype(np.uint16)
  ids[0, :2] = 1000
  report, written = build(tmp_path, lambda p: harness.save_image(p, ids))
  (problem,) = report.problems
  assert "a.png: values [1000] are neither class ids (0..2) nor the ignore label 255" in problem
  assert "1000 (2 px)" in problem and "16-bit ids" in problem
  assert np.all(written["a"]["label"][0, :2, 0] == 255)


def test_unreadable_forms_are_refused_with_advice(tmp_path):
  report, written = build(tmp_path / "jpeg", lambda p: harness.save_image(
      p.with_suffix(".jpg"), np.repeat(IDS[..., None], 3, -1), format="JPEG"))
  assert written == {} and "a.jpg: a JPEG mask: lossy compression" in report.problems[0]
  noisy = np.random.default_rng(0).integers(0, 255, IDS.shape + (3,), dtype=np.uint8)
  report, written = build(tmp_path / "rgb", lambda p: harness.save_image(p, noisy))
  assert written == {}
  assert "a.png: RGB color mask, but no color-to-id table" in report.problems[0]
  assert "in 1 pixels" in report.problems[0]  # The colours found.
  report, written = build(tmp_path / "mode", lambda p: harness.save_image(p, IDS, "L"),
                          mask_format="palette")
  assert "a.png: --mask_format=palette reads modes P, PA, but this mask is mode L" \
         in report.problems[0]


@pytest.mark.parametrize("spec, message", [
    ({"mask_format": "binary"}, "needs --num_classes=2, got 3"),
    ({"mask_format": "rgb"}, "--mask_format=rgb needs the colour table"),
    ({"colormap": "nowhere.json"}, "is neither a dataset of the table"),
    ({"colormap": "pascal", "ignore_color": (128, 0, 0)}, "is the colour of class 1"),
])
def test_label_specs_that_cannot_work_are_refused(spec, message):
  with pytest.raises(ValueError, match=message):
    build_folder.label_spec(num_classes=3, **spec)


def test_a_color_table_file_with_a_bad_line_or_a_shared_color_is_refused(tmp_path):
  (tmp_path / "bad.txt").write_text("0 0 0\n1 2\n")
  with pytest.raises(ValueError, match="line 2: a colour must be three values"):
    build_folder.label_spec(num_classes=3, colormap=str(tmp_path / "bad.txt"))
  (tmp_path / "twice.json").write_text(json.dumps({"0": [1, 1, 1], "1": [1, 1, 1]}))
  with pytest.raises(ValueError, match="classes 0 and 1 share the colour"):
    build_folder.label_spec(num_classes=3, colormap=str(tmp_path / "twice.json"))


def picture(height=24, width=40):
  """A picture whose every turn or mirror differs: coloured blocks."""
  image = np.zeros((height, width, 3), np.uint8)
  image[: height // 2, : width // 4] = (250, 20, 20)
  image[height // 2:, width // 2:] = (20, 250, 20)
  image[:, -8:] = (20, 20, 250)
  return image


def test_exif_turned_images_and_masks_pair_upright(tmp_path):
  upright = picture()
  ids = np.zeros(upright.shape[:2], np.uint8)
  ids[: upright.shape[0] // 2, : upright.shape[1] // 4] = 1
  ids[:, -8:] = 2
  # A phone photo stored turned, with a mask drawn upright in a tool that
  # shows the photo upright.
  (tmp_path / "images").mkdir()
  harness.save_image(tmp_path / "images" / "a.jpg", np.rot90(upright), orientation=ORIENTATION_6,
                     format="JPEG", quality=95)
  report, written = build(tmp_path, lambda p: harness.save_image(p, ids), image_written=True)
  assert report.problems == []
  assert report.notes["EXIF orientation turned upright (stored as PNG)"] == 1
  np.testing.assert_array_equal(written["a"]["label"][..., 0], ids)
  assert np.abs(written["a"]["image"].astype(int) - upright).mean() < 4
  # The reverse, with different tags: an upright-stored image turned 180
  # degrees by its tag, and a mask stored turned (tag 6).
  other = tmp_path / "other"
  (other / "images").mkdir(parents=True)
  harness.save_image(other / "images" / "a.png", np.rot90(upright, 2), orientation=3)
  report, written = build(other, lambda p: harness.save_image(p, np.rot90(ids), orientation=ORIENTATION_6),
                          image_written=True)
  assert report.problems == []
  np.testing.assert_array_equal(written["a"]["label"][..., 0], ids)
  np.testing.assert_array_equal(written["a"]["image"], upright)


def test_predict_turns_exif_images_upright(tmp_path):
  upright = np.kron(picture(), np.ones((3, 2, 1), np.uint8))  # 72x80
  inputs = tmp_path / "in"
  inputs.mkdir()
  harness.save_image(inputs / "turned.png", np.rot90(upright), orientation=ORIENTATION_6)
  harness.save_image(inputs / "upright.png", upright)
  np.testing.assert_array_equal(image_files.read_rgb(str(inputs / "turned.png")), upright)
  model = harness.small_model("mobilenet_v2")
  info = dataset_table.get("three", num_classes=3)
  predictor = predict.FunctionPredictor(
      info, lambda images: inference.predict_labels(model, images)[0].numpy())
  out = tmp_path / "out"
  assert predict.predict_files(predict.list_inputs(str(inputs)), predictor, str(out)) == []
  for output in ("ids", "overlay"):
    turned = np.asarray(Image.open(out / f"turned_{output}.png"))
    assert turned.shape[:2] == upright.shape[:2]
    np.testing.assert_array_equal(turned, np.asarray(Image.open(out / f"upright_{output}.png")))


@pytest.mark.slow
def test_the_tool_takes_the_mask_format(tmp_path):
  (tmp_path / "images").mkdir()
  (tmp_path / "masks").mkdir()
  harness.save_image(tmp_path / "images" / "a.jpg", picture(6, 8), format="JPEG")
  harness.save_image(tmp_path / "masks" / "a.png", np.where(IDS == 1, 255, 0).astype(np.uint8))
  result = harness.run_cli("-m", "deeplab.cli", "build-folder", f"--images={tmp_path / 'images'}",
                           f"--masks={tmp_path / 'masks'}", f"--output_dir={tmp_path / 'out'}",
                           "--num_classes=2", "--mask_format=binary", "--workers=1")
  assert result.returncode == 0, result.stderr[-3000:]
  (example,) = records.iterate_examples(records.existing_shards(str(tmp_path / "out"), "train"))
  np.testing.assert_array_equal(example["label"][..., 0], IDS == 1)
