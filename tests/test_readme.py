"""Every command block of README.md and of the pages in docs/ runs, on tiny data.

Every fenced block of those pages is ```sh, ```python or ```text, and
every ```sh and ```python block runs here. The commands run as written,
in a folder that holds tiny copies of the raw datasets in their
distribution layouts (tests/harness.py's
fake_raw_datasets), a few photos, and links to the checkout's CLIs. Small
overrides are appended where a command as written would take hours or needs
a full dataset; they are all here:

- dataset builders: ``--check_split_sizes=false`` (3 images per split are
  not the dataset table's counts); ``deeplab-build-folder``'s ``--num_classes=N``
  becomes 5;
- ``train.py``: 2 steps of batch 2 on 65x65 crops, and for the
  Xception-65 experiments (VOC, and the ImageNet pretraining on two class
  folders) a MobileNetV2 x0.25 backbone (an Xception-65 step takes
  minutes on a 2-core CPU);
- ``export.py``: a 65x65 TFLite input and 2 calibration images;
- ``make demo``: a demo folder in the test's temporary folder and a
  4-step training run.

The ```python blocks run as they are, each in a fresh interpreter, with
Keras' file cache (``$KERAS_HOME``) in a temporary folder that holds the
zoo's ``mobilenetv2_coco_voc_trainaug`` tarball, built offline in the zoo's
layout with random weights of its config's model (``zoo_cache``): the
examples' ``deeplab.from_pretrained`` finds it there instead of
downloading it, and converts it as it would the downloaded one. Each
page's ``main`` command blocks are one test case; they run in order in one
module-scoped folder, since they read the records that the datasets page's
block builds there.

Not run here: ``make test`` (CI runs it; it would run itself), the
``pip install .`` block (tests/test_wheel.py runs it against a built
wheel) and the cluster block (it needs a TPU, several machines and Cloud
Storage; its strategies run on logical CPU devices in
tests/test_distribution.py) and the model-zoo download (it needs the
network; tests/test_zoo.py converts a tarball in the zoo's layout offline). The block with Google's released model runs
only when ../shared is beside the checkout. The walkthrough of
docs/own_data.md runs on a folder of turned JPEG photos and palette masks
written here (CamVid frames from ../shared, else synthetic ones), and its
fine-tuning starts from the zoo tarball in ``zoo_cache``.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

from PIL import Image
import pytest

from deeplab import cli
from deeplab import config as config_lib
from deeplab import zoo
from tests import harness
from tests import test_zoo
from tests.conftest import REPO

TINY_TRAIN = ["--config.train.steps=2", "--config.train.batch_size=2",
              "--config.checkpoint.every=2", "--config.train.steps_per_loop=1",
              "--config.data.crop_size=(65,65)", "--config.data.shuffle_buffer=4",
              "--config.eval.num_summary_images=0"]
# The console scripts (deeplab-*) beside the interpreter.
BIN = pathlib.Path(sys.executable).parent
SMALL_BACKBONE = ["--config.model.backbone=mobilenet_v2",
                  "--config.model.depth_multiplier=0.25"]


def overrides(command):
  """The flags appended to ``command`` (see the module docstring)."""
  text = " ".join(command)
  if "deeplab-build-" in text:
    return ["--check_split_sizes=false"]
  if command[1:2] == ["train.py"]:
    return TINY_TRAIN + (SMALL_BACKBONE if "xception65" in text else [])
  if command[1:2] == ["export.py"]:
    return ["--tflite_size=65,65", "--representative_count=2"]
  return []


def classify(block, page):
  """The kind of ``block``, a ```sh block of ``page`` (README.md or a page of
  docs/): which test runs it, and how."""
  text = " ".join(" ".join(c) for c in block)
  if block[0][0] == "make":
    return "make"
  if block[0][0] == "pip":
    return "install"
  if page == "docs/own_data.md":
    return "own_data"
  if "deeplab-build-" in text:
    return "datasets"
  if "deeplab-convert" in text and ".tflite" in text:
    return "released"
  if "deeplab-convert --source=" in text:
    return "zoo"
  if "gs://" in text:
    return "cluster"
  return "main"


PAGES = [str(page) for page in harness.readme_pages()]
RUN_LANGUAGES = ("sh", "python")  # ```text blocks are shown, not run.


def blocks(kind, pages=PAGES):
  """The ```sh blocks of ``pages`` that ``classify`` calls ``kind``, in order."""
  return [b for page in pages for b in harness.readme_command_blocks(page)
          if classify(b, page) == kind]


def pages_with(kind):
  return [page for page in PAGES if blocks(kind, [page])]


def python_blocks():
  return [(page, i) for page in PAGES
          for i in range(len(harness.readme_code_blocks("python", page)))]


def run_block(block, cwd, env=None):
  """Runs ``block``'s commands in ``cwd``; returns the last one's result."""
  for command in block:
    command = [word.replace("--num_classes=N", "--num_classes=5") for word in command]
    if command[0] == "python":
      command[0] = sys.executable
    elif command[0].startswith("deeplab-"):  # A console script of this environment.
      command[0] = str(BIN / command[0])
    full = command + overrides(command)
    result = subprocess.run(full, cwd=cwd, capture_output=True, text=True,
                            timeout=900,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})))
    assert result.returncode == 0, (full, result.stdout[-2000:], result.stderr[-3000:])
  return result


# The tests that share the sandbox run on one worker (`make test` runs
# pytest-xdist with --dist=loadgroup), so the sandbox and the README's run
# (``readme_run``) are built once.
SANDBOX_GROUP = pytest.mark.xdist_group("readme_sandbox")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
  """A folder with the raw datasets, photos, the CLIs, and the records the
  README's dataset block builds."""
  root = tmp_path_factory.mktemp("readme")
  harness.fake_raw_datasets(root)
  for name in ("train.py", "eval.py", "export.py", "configs", "deeplab"):
    (root / name).symlink_to(REPO / name)
  (root / "photos").mkdir()
  for i, path in enumerate(sorted((root / "imgs").iterdir())[:2]):
    Image.open(path).convert("RGB").save(root / "photos" / f"photo_{i}.jpg")
  (datasets_block,) = blocks("datasets")
  run_block(datasets_block, root)
  return root


def test_the_readme_has_the_blocks_this_test_knows():
  kinds = [classify(b, page) for page in PAGES for b in harness.readme_command_blocks(page)]
  assert kinds.count("make") == 1 and kinds.count("install") == 1
  assert kinds.count("datasets") == 1 and kinds.count("released") == 1
  assert {"datasets", "released", "main", "cluster", "zoo", "own_data"} <= set(kinds)
  assert harness.readme_fenced_blocks()[0][0] == "sh"
  assert [c[:2] for c in harness.readme_command_blocks()[0]] == [
      ["make", "demo"], ["make", "test"]]
  # tests/test_wheel.py runs the install block from README.md.
  assert [classify(b, "README.md") for b in harness.readme_command_blocks()].count("install") == 1


def test_the_readme_and_docs_hold_only_blocks_this_test_knows():
  """Every fenced block is ```sh or ```python (run here) or ```text."""
  assert PAGES[0] == "README.md" and len(PAGES) > 1
  for page in PAGES:
    languages = [language for language, _ in harness.readme_fenced_blocks(page)]
    assert set(languages) <= {*RUN_LANGUAGES, "text"}, (page, languages)


def test_the_readme_is_short():
  lines = (REPO / "README.md").read_text().splitlines()
  assert len(lines) < 200, len(lines)


def prose_lines(page):
  """The lines of ``page`` outside its fenced blocks."""
  inside = False
  for line in (REPO / page).read_text().splitlines():
    if line.strip().startswith("```"):
      inside = not inside
    elif not inside:
      yield line


def heading_anchors(page):
  """The anchors GitHub gives the headings of ``page``."""
  titles = [line.lstrip("#").strip().lower() for line in prose_lines(page)
            if line.startswith("#")]
  return {re.sub(r"[^a-z0-9 _-]", "", t).replace(" ", "-") for t in titles}


def test_the_readme_and_docs_links_point_at_files():
  links = 0
  for page in PAGES:
    text = "\n".join(prose_lines(page))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
      if re.match(r"[a-z]+:", target):  # http://, https://, mailto:
        continue
      path, _, anchor = target.partition("#")
      path = (REPO / page).parent / path if path else REPO / page
      assert path.resolve().exists(), (page, target)
      if anchor and path.suffix == ".md":
        assert anchor in heading_anchors(path.resolve().relative_to(REPO)), (page, target)
      links += 1
  assert links > len(PAGES)


# What each page's main blocks leave in the sandbox.
MAIN_OUTPUTS = {
    "README.md": ["runs/voc/eval/metrics.json", "serving/voc/1/saved_model.pb",
                  "voc.tflite"],
    "docs/backbone_pretraining.md": ["runs/shapes/eval/metrics.json",
                                     "runs/imagenet/eval/metrics.json",
                                     "runs/voc_from_imagenet/checkpoints/checkpoint"],
    # Predicts with the README's voc.tflite (the README's blocks run first).
    "docs/export.md": ["predictions/photo_0_overlay.png"],
}


def test_each_page_with_main_blocks_states_its_outputs():
  assert sorted(pages_with("main")) == sorted(MAIN_OUTPUTS)


@pytest.fixture(scope="module")
def readme_run(sandbox):
  """The sandbox after the README's main blocks, which the other pages'
  blocks build on (docs/export.md predicts with the README's TFLite
  export), whatever order the pages' cases run in."""
  for block in blocks("main", ["README.md"]):
    run_block(block, sandbox)
  return sandbox


@SANDBOX_GROUP
@pytest.mark.slow
@pytest.mark.parametrize("page", pages_with("main"))
def test_the_readme_commands_run(page, readme_run):
  sandbox = readme_run
  if page != "README.md":
    for block in blocks("main", [page]):
      run_block(block, sandbox)
  for output in MAIN_OUTPUTS[page]:
    assert (sandbox / output).exists(), (page, output)
  if page == "README.md":
    # out/ also holds the datasets page's folder records (dataset.json, train-*).
    assert sorted(p.name for p in (sandbox / "out").glob("photo_0_*")) == [
        "photo_0_color.png", "photo_0_ids.png", "photo_0_overlay.png"]
  if page == "docs/backbone_pretraining.md":
    for run in ("shapes", "imagenet"):
      metrics = (sandbox / "runs" / run / "eval" / "metrics.json").read_text()
      assert "top_5_accuracy" in metrics, run


@SANDBOX_GROUP
@pytest.mark.slow
def test_the_readme_commands_with_the_released_model_run(sandbox):
  (sandbox / "deeplabv3_257_mv_gpu.tflite").symlink_to(harness.released_tflite())
  (block,) = blocks("released")
  run_block(block, sandbox)
  assert (sandbox / "runs" / "released_export" / "1" / "saved_model.pb").exists()
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
      cwd=REPO, capture_output=True, text=True, timeout=900,
      env={k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")})
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Demo finished" in result.stdout
  # The tools start quiet: none of TensorFlow's start-up lines.
  noise = [line for line in (result.stdout + result.stderr).splitlines()
           if cli.startup_noise(line)]
  assert not noise, noise
  assert len(list((demo / "predictions").glob("*_overlay.png"))) == 8
  assert pathlib.Path(demo / "run" / "eval" / "metrics.json").exists()


@SANDBOX_GROUP
@pytest.mark.slow
def test_the_own_data_walkthrough_runs(sandbox, zoo_cache):
  """docs/own_data.md on a folder of turned JPEG photos and palette masks
  (harness.own_photos), fine-tuned from the zoo's PASCAL model in the
  Keras cache ``zoo_cache``."""
  photos = harness.own_photos(sandbox)
  outputs = [run_block(block, sandbox, env={"KERAS_HOME": str(zoo_cache)})
             for block in blocks("own_data")]
  names = list(harness.OWN_CLASSES)
  records = json.loads((sandbox / "my_records" / "dataset.json").read_text())
  assert (records["num_classes"], records["class_names"]) == (5, names)
  assert set(records["splits"]) == {"train", "val"}
  assert all(name in outputs[1].stdout for name in names), outputs[1].stdout
  run = json.loads((sandbox / "runs" / "mine" / "config.json").read_text())
  assert (run["dataset"]["num_classes"], list(run["dataset"]["class_names"])) == (5, names)
  metrics = json.loads((sandbox / "runs" / "mine" / "eval" / "metrics.json").read_text())
  assert metrics["checkpoint"]["selector"] == "best", metrics
  assert all(name in json.dumps(metrics) for name in names), metrics
  for path in sorted((photos / "val" / "images").iterdir()):
    overlay = Image.open(sandbox / "predictions" / "mine" / f"{path.stem}_overlay.png")
    assert overlay.size == (480, 360), (path, overlay.size)  # Upright, as the masks.


# The zoo model the ```python blocks load by name (the module docstring).
PYTHON_BLOCKS_ZOO_MODEL = "mobilenetv2_coco_voc_trainaug"


@pytest.fixture(scope="module")
def zoo_cache(tmp_path_factory):
  """A Keras home whose file cache holds ``PYTHON_BLOCKS_ZOO_MODEL``'s
  tarball, as ``deeplab.zoo.download`` would have left it."""
  home = tmp_path_factory.mktemp("keras_home")
  entry = zoo.MODELS[PYTHON_BLOCKS_ZOO_MODEL]
  assert entry.sha256 is None  # Keras takes a cached file without checksum.
  (home / zoo.CACHE_SUBDIR).mkdir()
  test_zoo.write_zoo_tarball(
      home / zoo.CACHE_SUBDIR / os.path.basename(entry.url),
      test_zoo.random_arrays(config_lib.shipped_config(entry.config)))
  return home


@pytest.mark.parametrize(("page", "index"), python_blocks())
def test_the_readme_python_blocks_run(page, index, tmp_path, zoo_cache):
  code = harness.readme_code_blocks("python", page)[index]
  result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                   KERAS_HOME=str(zoo_cache)))
  assert result.returncode == 0, (code, result.stderr[-3000:])
