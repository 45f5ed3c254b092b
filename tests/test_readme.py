"""Every command block of README.md runs, on tiny data.

The commands run as written, in a folder that holds tiny copies of the raw
datasets in their distribution layouts (tests/harness.py's
fake_raw_datasets), a few photos, and links to the checkout's CLIs. Small
overrides are appended where a command as written would take hours or needs
a full dataset; they are all here:

- dataset builders: ``--check_split_sizes=false`` (3 images per split are
  not the dataset table's counts); ``build_folder``'s ``--num_classes=N``
  becomes 5;
- ``train.py``: 2 steps of batch 2 on 65x65 crops, and for the
  Xception-65 experiments (VOC, and the ImageNet pretraining on two class
  folders) a MobileNetV2 x0.25 backbone (an Xception-65 step takes
  minutes on a 2-core CPU);
- ``export.py``: a 65x65 TFLite input and 2 calibration images;
- ``make demo``: a demo folder in the test's temporary folder and a
  4-step training run.

The ```python blocks run as they are, each in a fresh interpreter.

Not run here: ``make test`` (CI runs it; it would run itself), the
``pip install .`` block (tests/test_wheel.py runs it against a built
wheel) and the cluster block (it needs a TPU, several machines and Cloud
Storage; its strategies run on logical CPU devices in
tests/test_distribution.py) and the model-zoo download (it needs the
network; tests/test_zoo.py converts a tarball in the zoo's layout offline). The block with Google's released model runs
only when ../shared is beside the checkout.
"""

import os
import pathlib
import subprocess
import sys

from PIL import Image
import pytest

from tests import harness
from tests.conftest import REPO

TINY_TRAIN = ["--config.train.steps=2", "--config.train.batch_size=2",
              "--config.checkpoint.every=2", "--config.train.steps_per_loop=1",
              "--config.data.crop_size=(65,65)", "--config.data.shuffle_buffer=4",
              "--config.eval.num_summary_images=0"]
SMALL_BACKBONE = ["--config.model.backbone=mobilenet_v2",
                  "--config.model.depth_multiplier=0.25"]


def overrides(command):
  """The flags appended to ``command`` (see the module docstring)."""
  text = " ".join(command)
  if "datasets.build_" in text:
    return ["--check_split_sizes=false"]
  if command[1:2] == ["train.py"]:
    return TINY_TRAIN + (SMALL_BACKBONE if "xception65" in text else [])
  if command[1:2] == ["export.py"]:
    return ["--tflite_size=65,65", "--representative_count=2"]
  return []


def classify(block):
  text = " ".join(" ".join(c) for c in block)
  if block[0][0] == "make":
    return "make"
  if block[0][0] == "pip":
    return "install"
  if "datasets.build_" in text:
    return "datasets"
  if "deeplab.convert --source=" in text:
    return "zoo"
  if "deeplab.convert" in text:
    return "released"
  if "gs://" in text:
    return "cluster"
  return "main"


def blocks(kind):
  return [b for b in harness.readme_command_blocks() if classify(b) == kind]


def run_block(block, cwd):
  for command in block:
    command = [word.replace("--num_classes=N", "--num_classes=5") for word in command]
    if command[0] == "python":
      command[0] = sys.executable
    full = command + overrides(command)
    result = subprocess.run(full, cwd=cwd, capture_output=True, text=True,
                            timeout=900,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, (full, result.stdout[-2000:], result.stderr[-3000:])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
  """A folder with the raw datasets, photos, the CLIs, and the records the
  README's dataset block builds."""
  root = tmp_path_factory.mktemp("readme")
  harness.fake_raw_datasets(root)
  for name in ("train.py", "eval.py", "export.py", "configs", "datasets", "deeplab"):
    (root / name).symlink_to(REPO / name)
  (root / "photos").mkdir()
  for i, path in enumerate(sorted((root / "imgs").iterdir())[:2]):
    Image.open(path).convert("RGB").save(root / "photos" / f"photo_{i}.jpg")
  (datasets_block,) = blocks("datasets")
  run_block(datasets_block, root)
  return root


def test_the_readme_has_the_blocks_this_test_knows():
  kinds = [classify(b) for b in harness.readme_command_blocks()]
  assert kinds[0] == "make" and kinds.count("install") == 1
  assert {"datasets", "released", "main", "cluster", "zoo"} <= set(kinds)
  assert [c[:2] for c in harness.readme_command_blocks()[0]] == [
      ["make", "demo"], ["make", "test"]]


@pytest.mark.slow
def test_the_readme_commands_run(sandbox):
  for block in blocks("main"):
    run_block(block, sandbox)
  assert (sandbox / "runs" / "voc" / "eval" / "metrics.json").exists()
  for run in ("shapes", "imagenet"):  # Backbone pretraining.
    metrics = (sandbox / "runs" / run / "eval" / "metrics.json").read_text()
    assert "top_5_accuracy" in metrics, run
  assert (sandbox / "runs" / "voc_from_imagenet" / "checkpoints" / "checkpoint").exists()
  assert (sandbox / "serving" / "voc" / "1" / "saved_model.pb").exists()
  assert (sandbox / "voc.tflite").exists()
  assert sorted(p.name for p in (sandbox / "out").iterdir())[:3] == [
      "photo_0_color.png", "photo_0_ids.png", "photo_0_overlay.png"]


@pytest.mark.slow
def test_the_readme_commands_with_the_released_model_run(sandbox):
  (sandbox / "deeplabv3_257_mv_gpu.tflite").symlink_to(harness.released_tflite())
  (block,) = blocks("released")
  run_block(block, sandbox)
  assert (sandbox / "runs" / "camvid" / "checkpoints" / "checkpoint").exists()


@pytest.mark.slow
def test_make_demo_runs(tmp_path):
  (block,) = blocks("make")
  assert block[0] == ["make", "demo"]
  demo = tmp_path / "demo_output"
  # -o: use the installed environment as it is (never reinstall mid-suite).
  result = subprocess.run(
      ["make", "-o", ".venv/.installed", "demo", f"PY={sys.executable}",
       f"DEMO={demo}", "DEMO_FLAGS=--config.train.steps=4 "
       "--config.checkpoint.every=4 --config.eval.num_summary_images=0"],
      cwd=REPO, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Demo finished" in result.stdout
  assert len(list((demo / "predictions").glob("*_overlay.png"))) == 8
  assert pathlib.Path(demo / "run" / "eval" / "metrics.json").exists()


@pytest.mark.parametrize("index", range(len(harness.readme_code_blocks("python"))))
def test_the_readme_python_blocks_run(index, tmp_path):
  code = harness.readme_code_blocks("python")[index]
  result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert result.returncode == 0, (code, result.stderr[-3000:])
