"""Config files: load, validate, command-line overrides, clear errors."""

import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import pytest

from deeplab import config as config_lib
from tests.conftest import REPO
from tests.harness import run_cli

CONFIG_FILES = sorted((REPO / "configs").glob("[!_]*.py"))


def load(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


_PARSE = """
import json, sys
from absl import flags
from ml_collections import config_flags
config_flags.DEFINE_config_file("config", lock_config=True)
flags.FLAGS(sys.argv)
print(json.dumps(flags.FLAGS.config.to_dict()))
"""


def parse(*args):
  """Parses flags as the CLIs do (config_flags overrides need global FLAGS,
  so this runs in a fresh process); returns the config as a dict."""
  result = subprocess.run([sys.executable, "-c", _PARSE, *args], cwd=REPO,
                          capture_output=True, text=True)
  if result.returncode:
    raise RuntimeError(result.stderr)
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_required_config_files_exist():
  names = {p.stem for p in CONFIG_FILES}
  assert {"pascal_voc_xception65", "cityscapes_xception65",
          "camvid_scratch", "camvid_finetune", "pascal_voc_mobilenetv2", "synthetic"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_every_config_validates(path):
  config = load(path)
  config_lib.validate(config)
  assert config.is_locked


def test_every_base_field_has_a_comment():
  source = (REPO / "deeplab" / "config.py").read_text().splitlines()
  for i, line in enumerate(source):
    if re.match(r"\s+config\.\w+\.\w+ = ", line):
      assert source[i - 1].strip().startswith("#"), f"uncommented field: {line}"


def test_command_line_override():
  config = parse("--config=configs/synthetic.py",
                 "--config.train.batch_size=8",
                 "--config.model.atrous_rates=(3,6,9)")
  assert config["train"]["batch_size"] == 8
  assert tuple(config["model"]["atrous_rates"]) == (3, 6, 9)


def test_unknown_key_is_an_error_naming_it():
  with pytest.raises(RuntimeError, match="batch_sise"):
    parse("--config=configs/synthetic.py", "--config.train.batch_sise=8")


def test_wrong_type_is_an_error():
  with pytest.raises(RuntimeError, match="batch_size=abc"):
    parse("--config=configs/synthetic.py", "--config.train.batch_size=abc")
  config = config_lib.base_config()
  with pytest.raises(TypeError):
    config.model.backbone = 3


@pytest.mark.parametrize("key, value, message", [
    ("model.output_stride", 12,
     "config.model.output_stride must be one of (8, 16, 32), got 12"),
    ("model.atrous_rates", (6, -12, 18),
     "config.model.atrous_rates must be a sequence of positive integers, got (6, -12, 18)"),
    ("dataset.num_classes", 0,
     "config.dataset.num_classes must be an integer >= 1, got 0"),
    ("model.backbone", "vgg16", "config.model.backbone must be one of"),
    ("data.crop_size", (512, 512), "config.data.crop_size must be"),
    ("train.batch_size", 0, "config.train.batch_size must be >= 1, got 0"),
    ("train.lovasz_weight", -0.5, "config.train.lovasz_weight must be >= 0, got -0.5"),
    ("train.lovasz_pixel_stride", 0, "config.train.lovasz_pixel_stride must be >= 1, got 0"),
    ("data.paste_classes", (3, 21),
     "config.data.paste_classes must be class ids in [0, 21), got (3, 21)"),
    ("data.paste_probability", 1.5,
     "config.data.paste_probability must be in [0, 1], got 1.5"),
])
def test_invalid_values_name_field_and_value(key, value, message):
  config = load(REPO / "configs" / "pascal_voc_xception65.py")
  section, field = key.split(".")
  setattr(config[section], field, value)
  with pytest.raises(ValueError) as error:
    config_lib.validate(config)
  assert message in str(error.value)


def test_summary_cli_prints_total_params():
  result = subprocess.run(
      [sys.executable, "-m", "deeplab.cli", "summary", "--config=configs/synthetic.py"],
      cwd=REPO, capture_output=True, text=True, check=True)
  last = result.stdout.strip().splitlines()[-1]
  assert re.fullmatch(r"total_params=\d+", last)
  import deeplab  # pylint: disable=g-import-not-at-top
  model = deeplab.build_model(load(REPO / "configs" / "synthetic.py"))
  assert int(last.split("=")[1]) == model.count_params()
  assert "logits.semantic" in result.stdout


def test_a_field_whose_default_is_none_is_set_from_the_command_line():
  # ml_collections refuses to override a None; the field is a typed
  # placeholder instead.
  result = run_cli("-m", "deeplab.cli", "summary", "--config=synthetic",
                   "--config.model.backbone_batch_norm_momentum=0.5")
  assert result.returncode == 0, result.stderr[-2000:]
  assert config_lib.base_config().model.backbone_batch_norm_momentum is None
  restored = config_lib.from_dict(json.loads(config_lib.base_config().to_json()))
  assert restored.model.backbone_batch_norm_momentum is None
