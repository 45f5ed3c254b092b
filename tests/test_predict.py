"""deeplab-predict: batches, folders, globs and lists, videos, and every model
kind (run folder, .tflite, .onnx) through the one Predictor interface.

One model serves every test: the synthetic config's, untrained, with batch
norm statistics gathered from its images (so labels vary from pixel to
pixel), saved as a run.
"""

import dataclasses
import pathlib

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deeplab import export
from deeplab import inference
from deeplab import model as model_lib
from deeplab import predict
from deeplab import run_dir
from deeplab.data import augment
from deeplab_datasets import make_synthetic
from tests import harness
from tests.conftest import shared_path


@dataclasses.dataclass
class Run:
  root: pathlib.Path  # w/ (the run), images/ (PNGs of two sizes)
  config: object
  model: object


def _images(root: pathlib.Path) -> np.ndarray:
  """Five synthetic images (81x81) and, in root/images, three 65x81 and two
  70x66 crops of them."""
  images = np.stack([make_synthetic.generate(i, 0, 81)[0] for i in range(5)])
  folder = root / "images"
  folder.mkdir()
  for i, image in enumerate(images):
    crop = image[:65, :81] if i % 2 == 0 else image[3:73, 5:71]
    Image.fromarray(crop).save(folder / f"{i:02d}.png")
  return images


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("predict")
  config = harness.config_with(root / "records")  # No records are read.
  keras.utils.set_random_seed(0)
  model = model_lib.build_model(config)
  images = augment.normalize(tf.constant(_images(root), tf.float32))
  for _ in range(20):  # Moving statistics converge to these images'.
    model(images, training=True)
  run_dir.save_model(model, config, str(root / "w"))
  return Run(root, config, model)


@pytest.fixture(scope="module")
def predictor(run):
  return predict.load_predictor(workdir=str(run.root / "w"), config=run.config)


class Counting:
  """A predictor that records the batch shapes it is given."""

  def __init__(self, inner):
    self.inner, self.info, self.shapes = inner, inner.info, []

  def labels(self, images):
    self.shapes.append(images.shape[:3])
    return self.inner.labels(images)


def _ids(folder: pathlib.Path) -> dict:
  return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*_ids.png"))}


def test_batches_of_one_size_give_the_labels_of_one_by_one(run, predictor, tmp_path):
  paths = predict.list_inputs(str(run.root / "images"))
  assert len(paths) == 5
  predict.predict_files(paths, predictor, str(tmp_path / "one"))
  counting = Counting(predictor)
  assert predict.predict_files(paths, counting, str(tmp_path / "batched"), batch_size=2) == []
  # Images of one size share a batch; the other size waits for its own.
  assert sorted(counting.shapes) == [(1, 65, 81), (2, 65, 81), (2, 70, 66)]
  one, batched = _ids(tmp_path / "one"), _ids(tmp_path / "batched")
  assert sorted(one) == sorted(batched) and len(one) == 5
  for name, ids in one.items():
    assert np.mean(batched[name] == ids) >= 0.999, name
  assert len(np.unique(np.concatenate([i.ravel() for i in one.values()]))) > 1


def _write_clip(path, frames, rate=12):
  av = pytest.importorskip("av")
  with av.open(str(path), mode="w") as container:
    stream = container.add_stream("mpeg4", rate=rate)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = "yuv420p"
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def _read_clip(path):
  av = pytest.importorskip("av")
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], stream.average_rate


def test_a_folder_a_glob_and_a_comma_list_name_images_and_videos(run, tmp_path):
  folder = run.root / "images"
  (tmp_path / "clip.mp4").write_bytes(b"")
  (tmp_path / "notes.txt").write_text("not an image")
  assert predict.list_inputs(str(folder)) == [str(p) for p in sorted(folder.glob("*.png"))]
  assert predict.list_inputs(f"{folder}/0[02].png") == [str(folder / "00.png"),
                                                       str(folder / "02.png")]
  assert predict.list_inputs(str(tmp_path)) == [str(tmp_path / "clip.mp4")]
  both = predict.list_inputs(f"{tmp_path / 'clip.mp4'},{folder}/01.png")
  assert both == [str(tmp_path / "clip.mp4"), str(folder / "01.png")]
  with pytest.raises(FileNotFoundError, match="absent.png"):
    predict.list_inputs(f"{folder}/01.png,{folder}/absent.png")
  with pytest.raises(FileNotFoundError, match="--tflite=.*nothing.tflite: no such file"):
    predict.load_predictor(tflite=str(tmp_path / "nothing.tflite"))
  with pytest.raises(ValueError, match="give one model"):
    predict.load_predictor(tflite="a", onnx="b")


def test_a_video_gives_an_overlay_video_of_its_frames_and_rate(predictor, tmp_path):
  rng = np.random.default_rng(0)
  frames = [np.repeat(np.repeat(rng.integers(0, 256, (12, 16, 3), np.uint8), 4, 0), 4, 1)
            for _ in range(6)]  # 48x64, blocks that survive compression.
  _write_clip(tmp_path / "clip.mp4", frames)
  decoded, _ = _read_clip(tmp_path / "clip.mp4")
  out = tmp_path / "out"
  assert predict.predict_files([str(tmp_path / "clip.mp4")], predictor, str(out),
                               batch_size=4, frame_ids=True) == []
  overlay, rate = _read_clip(out / "clip_overlay.mp4")
  assert len(overlay) == 6 and rate == 12
  assert all(frame.shape == (48, 64, 3) for frame in overlay)
  ids = sorted((out / "clip_frames").glob("*_ids.png"))
  assert [p.name for p in ids] == [f"{i:06d}_ids.png" for i in range(6)]
  expected = predictor.labels(np.stack(decoded))
  for path, labels in zip(ids, expected):
    assert np.mean(np.asarray(Image.open(path)) == labels) >= 0.999


def test_a_tflite_file_is_resized_to_its_input_and_back(run, tmp_path):
  pytest.importorskip("ai_edge_litert")
  path = tmp_path / "model.tflite"
  export.export_run(run.config, str(run.root / "w"), tflite_path=str(path),
                    tflite_size=(65, 81))
  tflite = predict.load_predictor(tflite=str(path), dataset="synthetic")
  assert tflite.info.name == "synthetic" and (tflite.height, tflite.width) == (65, 81)
  images = np.stack([np.asarray(Image.open(p)) for p in
                     sorted((run.root / "images").glob("*.png"))[0::2]])  # 65x81
  expected = inference.predict_labels(run.model, images)[0].numpy()
  assert np.mean(tflite.labels(images) == expected) >= 0.999
  other = np.stack([np.asarray(Image.open(run.root / "images" / "01.png"))])  # 70x66
  assert tflite.labels(other).shape == (1, 70, 66)


@pytest.mark.parametrize(("dtype", "quantization", "expected"), [
    (np.uint8, (4.0, 3), [3, 16, 67]),  # Pixels in [0, 255] (int8_full).
    (np.uint8, (1 / 128, 128), [0, 51, 255]),  # The normalized image.
    (np.int8, (1 / 128, 0), [-128, -77, 127]),
    (np.uint8, (0.0, 0), [0, 51, 255]),  # No scale: the pixels.
    (np.int8, (0.0, 0), [-128, -77, 127]),
])
def test_an_integer_tflite_input_is_quantized_with_its_scale_and_zero_point(
    dtype, quantization, expected):
  tflite = predict.TFLitePredictor.__new__(predict.TFLitePredictor)  # No file.
  tflite.height, tflite.width = 1, 3
  tflite.input = {"dtype": dtype, "quantization": quantization}
  pixels = np.array([[[0] * 3, [51] * 3, [255] * 3]], np.uint8)
  got = tflite._input(pixels)  # pylint: disable=protected-access
  assert got.dtype == dtype and got.shape == (1, 1, 3, 3)
  assert got[0, 0, :, 0].tolist() == expected


def test_a_released_uint8_tflite_file_takes_pixels_as_they_are():
  pytest.importorskip("ai_edge_litert")
  path = shared_path("pretrained", "deeplabv3_mnv2_pascal_quant.tflite")
  tflite = predict.load_predictor(tflite=str(path), dataset="pascal_voc_seg")
  assert tflite.input["dtype"] == np.uint8
  frames = harness.camvid_frames(1)
  labels = tflite.labels(np.stack([image for _, image in frames]))
  assert labels.shape == (1, 360, 480) and labels.dtype == np.int32
  assert len(np.unique(labels)) > 1 and labels.max() < 21


def test_an_onnx_export_gives_the_run_folders_labels(run, predictor, tmp_path):
  pytest.importorskip("tf2onnx")
  pytest.importorskip("onnxruntime")
  path = tmp_path / "model.onnx"
  result = harness.run_cli("export.py", f"--workdir={run.root / 'w'}", f"--onnx={path}")
  assert result.returncode == 0, result.stderr[-3000:]
  onnx = predict.load_predictor(onnx=str(path), dataset="synthetic")
  for size in ((65, 81), (70, 66)):
    images = np.stack([np.asarray(Image.open(p)) for p in
                       sorted((run.root / "images").glob("*.png"))
                       if Image.open(p).size == size[::-1]])
    assert np.mean(onnx.labels(images) == predictor.labels(images)) >= 0.999


@pytest.mark.slow
def test_the_cli_writes_every_readable_input_and_lists_the_rest(run, tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  for path in sorted((run.root / "images").glob("*.png"))[:3]:
    (inputs / path.name).write_bytes(path.read_bytes())
  (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
  _write_clip(tmp_path / "clip.mp4", [np.full((48, 64, 3), 60 * i, np.uint8) for i in range(3)])
  out = tmp_path / "out"
  result = harness.run_cli("-m", "deeplab.cli", "predict", f"--workdir={run.root / 'w'}",
                           f"--input={inputs},{tmp_path / 'clip.mp4'}",
                           f"--output_dir={out}", "--batch_size=2")
  assert result.returncode == 1, result.stderr[-3000:]
  assert result.stderr.strip().splitlines()[-1].startswith(
      f"{inputs / 'broken.png'}: unreadable image")
  for stem in ("00", "01", "02"):
    for kind in ("ids", "color", "overlay"):
      assert (out / f"{stem}_{kind}.png").exists()
  assert len(_read_clip(out / "clip_overlay.mp4")[0]) == 3
  assert not list(out.glob("broken*"))

  result = harness.run_cli("-m", "deeplab.cli", "predict", f"--tflite={tmp_path / 'no.tflite'}",
                           f"--input={inputs}", f"--output_dir={out}")
  assert result.returncode != 0
  assert f"--tflite={tmp_path / 'no.tflite'}: no such file" in result.stderr

  result = harness.run_cli("-m", "deeplab.cli", "predict", f"--onnx={tmp_path / 'no.onnx'}",
                           "--config.eval.tile_size=65", f"--input={inputs}",
                           f"--output_dir={out}")
  assert result.returncode != 0
  assert "change a run folder's config (--workdir)" in result.stderr
