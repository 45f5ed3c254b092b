"""The built wheel, installed into a fresh virtual environment, works from a
folder outside the checkout: every console script answers --help, the
README's installed commands run, from synthetic data to predicted masks,
and a model zoo name converts (``deeplab-convert``) and loads
(``deeplab.from_pretrained``) from a tarball in Keras' file cache.

The fresh environment gets the wheel (``pip install --no-deps``) and reads
the dependencies (TensorFlow...) from the test's own environment through a
``.pth`` line, so the test needs no network and no second TensorFlow.

An environment that already has a TensorFlow keeps it: ``pip install`` of
the wheel with its dependencies resolved, offline (``--no-index``, so a
dependency pip wanted to fetch would fail the install), into a fresh
environment that sees this one's packages; under ``make test-floor``
(its venv, ``FLOOR_VENV``) that is the oldest supported TensorFlow, Keras
and NumPy (requirements-floor.txt), which the test checks.
"""

import ast
import configparser
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest

from deeplab import cli
from deeplab import config as config_lib
from deeplab import zoo
from tests import harness
from tests import test_zoo
from tests.conftest import REPO

# What the wheel may put at the top of site-packages.
OUR_NAMES = {"deeplab", "deeplab_configs", "deeplab_datasets"}
# The venv of `make test-floor` (Makefile), which installs requirements-floor.txt.
FLOOR_VENV = ".venv-floor"


def _source_copy(destination: pathlib.Path) -> pathlib.Path:
  """The checkout without its environments and build leftovers."""
  ignore = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info",
                                  "__pycache__", ".pytest_cache", "runs",
                                  "demo_output")
  shutil.copytree(REPO, destination, ignore=ignore)
  return destination


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """The wheel built from a copy of the checkout."""
  root = tmp_path_factory.mktemp("wheel_build")
  source = _source_copy(root / "source")
  wheels = root / "wheels"
  result = subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
       "--quiet", "-w", str(wheels), str(source)],
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  (built,) = wheels.glob("deeplab_tf2-*.whl")
  return built


def _fresh_environment(env_dir: pathlib.Path):
  """(python, site-packages) of a new venv that sees this one's packages."""
  venv.EnvBuilder(with_pip=False).create(env_dir)
  python = env_dir / "bin" / "python"
  site = pathlib.Path(subprocess.check_output(
      [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
      text=True).strip())
  (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
  return python, site


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel):
  """(bin folder, site-packages, a work folder outside the checkout)."""
  root = tmp_path_factory.mktemp("wheel")
  env_dir = root / "env"
  python, site = _fresh_environment(env_dir)
  result = subprocess.run(
      [sys.executable, "-m", "pip", "--python", str(python), "install",
       "--no-deps", "--quiet", str(wheel)], capture_output=True, text=True,
      timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  work = root / "work"
  work.mkdir()
  return env_dir / "bin", site, work


def run(installed, *command, timeout=600, **environment):
  bin_dir, _, work = installed
  env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
             TF_CPP_MIN_LOG_LEVEL="2", **environment)
  env.pop("PYTHONPATH", None)
  return subprocess.run(list(command), cwd=work, env=env, capture_output=True,
                        text=True, timeout=timeout)


def _floor_pins():
  """``{name: version}`` of requirements-floor.txt."""
  return dict(line.split("==") for line in (REPO / "requirements-floor.txt").read_text().splitlines()
              if line and not line.startswith("#"))


def test_the_wheel_keeps_the_tensorflow_it_finds(wheel, tmp_path):
  if pathlib.Path(sys.prefix).name == FLOOR_VENV:
    # The TensorFlow found is the oldest supported one.
    for name in ("tensorflow", "keras", "numpy"):
      assert importlib.metadata.version(name) == _floor_pins()[name], name
  python, site = _fresh_environment(tmp_path / "env")
  result = subprocess.run(
      [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
       str(wheel)], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  # Only the wheel installed: the TensorFlow, Keras and NumPy found are kept.
  installed_line = [l for l in result.stdout.splitlines() if l.startswith("Successfully installed")]
  assert installed_line == [f"Successfully installed deeplab-tf2-{wheel.name.split('-')[1]}"], \
      result.stdout[-3000:]
  assert (site / "deeplab").is_dir()


def _lower_bounds():
  parser = configparser.ConfigParser()
  parser.read(REPO / "setup.cfg")
  bounds = {}
  for line in parser["options"]["install_requires"].split("\n"):
    name, _, rest = line.strip().partition(">=")
    if name:
      bounds[name] = rest.split(",")[0]
  return bounds


def test_the_floor_set_is_setup_cfgs_lower_bounds():
  pins = _floor_pins()
  bounds = _lower_bounds()
  for name, lower in bounds.items():
    pinned = pins[name].split(".")
    assert pinned[:len(lower.split("."))] == lower.split("."), (name, lower, pins[name])
    assert all(part == "0" for part in pinned[len(lower.split(".")):]), (name, pins[name])


def test_the_wheel_installs_only_our_names(installed):
  _, site, _ = installed
  top = {p.name.split(".")[0].split("-")[0] for p in site.iterdir()
         if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"}
  assert top == OUR_NAMES
  # Every module of the checkout's packages is in the wheel.
  for package, folder in (("deeplab", "deeplab"), ("deeplab_configs", "configs"),
                          ("deeplab_datasets", "datasets")):
    ours = {p.relative_to(REPO / folder) for p in (REPO / folder).rglob("*.py")}
    wheel = {p.relative_to(site / package) for p in (site / package).rglob("*.py")}
    assert ours == wheel, (package, ours ^ wheel)
  result = run(installed, "python", "-c",
               "import deeplab, deeplab.data.pipeline, deeplab.training.loop, "
               "deeplab_configs.synthetic, deeplab_datasets.build_voc; "
               "print(deeplab.__file__)")
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().startswith(str(site))


@pytest.mark.slow
def test_every_console_script_answers_help(installed):
  bin_dir, _, _ = installed
  assert {p.name for p in bin_dir.glob("deeplab-*")} == {t.script for t in cli.TOOLS}
  for tool in cli.TOOLS:
    result = run(installed, tool.script, "--help")
    # absl's --help prints the usage (the tool's docstring) and exits with 1.
    source = pathlib.Path(importlib.util.find_spec(tool.module_name).origin).read_text()
    usage = ast.get_docstring(ast.parse(source)).splitlines()[0]
    assert usage in result.stdout, (tool.script, result.stdout, result.stderr[-2000:])
    assert "Try --helpfull" in result.stdout, (tool.script, result.stdout)


# Small overrides of the README's installed block (its commands as written
# train 600 steps on 400 images).
README_OVERRIDES = {
    "deeplab-make-synthetic": ["--train_size=8", "--val_size=2", "--image_size=65",
                               "--num_shards=1"],
    "deeplab-train": ["--config.data.crop_size=(65,65)", "--config.train.batch_size=2",
                      "--config.train.steps=2", "--config.train.steps_per_loop=2",
                      "--config.eval.num_summary_images=0"],
}


@pytest.mark.slow
def test_the_readmes_installed_commands_run_from_the_wheel(installed):
  (block,) = [b for b in harness.readme_command_blocks() if b[0][0] == "pip"]
  assert block[0] == ["pip", "install", "."]  # Done by the fixture, from the wheel.
  for command in block[1:]:
    full = command + README_OVERRIDES.get(command[0], [])
    result = run(installed, *full)
    assert result.returncode == 0, (full, result.stderr[-3000:])
  _, _, work = installed
  assert json.loads((work / "run" / "eval" / "metrics.json").read_text())["step"] == 2
  assert sorted(p.name for p in (work / "predictions").iterdir())[:3] == [
      "00000_color.png", "00000_ids.png", "00000_overlay.png"]


@pytest.mark.slow
def test_a_zoo_name_converts_and_loads_from_the_wheel(installed, tmp_path):
  """Offline: Keras' cache (``$KERAS_HOME``) is pre-filled with a tarball in
  the zoo's layout under the zoo entry's file name, holding weights of the
  model its shipped config describes; Keras takes a cached file as it is
  where the table records no checksum."""
  name = "mobilenetv2_coco_voc_trainaug"
  entry = zoo.MODELS[name]
  assert entry.sha256 is None
  home = tmp_path / "keras_home"
  (home / zoo.CACHE_SUBDIR).mkdir(parents=True)
  arrays = test_zoo.random_arrays(config_lib.shipped_config(entry.config))
  test_zoo.write_zoo_tarball(
      home / zoo.CACHE_SUBDIR / os.path.basename(entry.url), arrays)
  _, _, work = installed
  result = run(installed, "deeplab-convert", f"--source={name}",
               "--workdir=zoo_run", KERAS_HOME=str(home))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "unused from the source" in result.stdout
  test_zoo.check_run(work / "zoo_run", arrays)

  load = ("import deeplab, numpy as np\n"
          f"model = deeplab.from_pretrained({name!r})\n"
          "print(model(np.zeros((1, 65, 65, 3), np.float32)).shape)\n")
  converted = home / zoo.CACHE_SUBDIR / "converted" / name
  written = []
  for _ in range(2):  # The second call restores the converted run folder.
    result = run(installed, "python", "-c", load, KERAS_HOME=str(home))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "(1, 65, 65, 21)"
    written.append((converted / "checkpoints" / "checkpoint").stat().st_mtime_ns)
  assert written[0] == written[1]
  test_zoo.check_run(converted, arrays)
