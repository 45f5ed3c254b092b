"""Config files: load, validate, command-line overrides, clear errors."""

import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import pytest

from deeplab import config as config_lib
from deeplab import rules
from deeplab import run_dir
from deeplab.model_args import ArgumentError
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
    ("loss.lovasz_weight", -0.5, "config.loss.lovasz_weight must be >= 0, got -0.5"),
    ("loss.lovasz_pixel_stride", 0, "config.loss.lovasz_pixel_stride must be >= 1, got 0"),
    ("data.paste_classes", (3, 21),
     "config.data.paste_classes must be class ids in [0, 21), got (3, 21)"),
    ("data.paste_probability", 1.5,
     "config.data.paste_probability must be in [0, 1], got 1.5"),
    ("data.max_scale", 0.25,
     "config.data.max_scale must be >= config.data.min_scale (0.5), got 0.25"),
    ("train.steps_per_loop", 0, "config.train.steps_per_loop must be >= 1, got 0"),
    ("optimizer.name", "adam",
     "config.optimizer.name must be one of ('sgd', 'adamw'), got 'adam'"),
    ("optimizer.clip_global_norm", -1.0,
     "config.optimizer.clip_global_norm must be >= 0 (0: no clipping), got -1.0"),
    ("schedule.name", "cosine",
     "config.schedule.name must be one of ('poly', 'exponential'), got 'cosine'"),
    ("schedule.base_learning_rate", 0.0,
     "config.schedule.base_learning_rate must be > 0, got 0.0"),
    ("loss.top_k_percent_pixels", 0.0,
     "config.loss.top_k_percent_pixels must be in (0, 1], got 0.0"),
    ("loss.class_weights", (1.0, 2.0),
     "config.loss.class_weights must be () or one weight per class "
     "(config.dataset.num_classes=21) or one of 'auto', 'auto_sqrt', got (1.0, 2.0)"),
    ("checkpoint.every", 0, "config.checkpoint.every must be >= 1, got 0"),
    ("checkpoint.keep", 0, "config.checkpoint.keep must be >= 1, got 0"),
    ("budget.max_minutes", -1.0,
     "config.budget.max_minutes must be >= 0 (0: no limit), got -1.0"),
    ("distribution.strategy", "horovod",
     "config.distribution.strategy must be one of"),
    ("eval.scales", (1.0, 0.0), "config.eval.scales must be positive, got (1.0, 0.0)"),
    ("export.max_request_pixels", 0,
     "config.export.max_request_pixels must be >= 1, got 0"),
])
def test_invalid_values_name_field_and_value(key, value, message):
  config = load(REPO / "configs" / "pascal_voc_xception65.py")
  section, field = key.split(".")
  setattr(config[section], field, value)
  with pytest.raises(ValueError) as error:
    config_lib.validate(config)
  assert message in str(error.value)


def test_rules_that_depend_on_other_fields():
  config = config_lib.base_config()
  config.schedule.decay_rate = 0.0  # Read by the exponential schedule alone.
  config_lib.validate(config)
  config.schedule.name = "exponential"
  config.schedule.epoch_examples = 1000
  with pytest.raises(ValueError, match=re.escape(
      "config.schedule.decay_rate must be in (0, 1], got 0.0")):
    config_lib.validate(config)
  config = config_lib.base_config()
  config.distribution.strategy = "tpu"
  config.distribution.tpu = ""
  with pytest.raises(ValueError, match=re.escape(
      "config.distribution.tpu must be the TPU for "
      "config.distribution.strategy='tpu'")):
    config_lib.validate(config)


@pytest.mark.parametrize("align_corners, good, bad", [
    (True, (513, 257), (512, 256)), (False, (512, 256), (513, 257))])
def test_crop_sizes_follow_the_models_resize_mapping(align_corners, good, bad):
  """output_stride * k + 1 with aligned corners, output_stride * k without;
  the error names the field and both forms."""
  config = config_lib.base_config()
  config.model.align_corners = align_corners
  config.data.crop_size = good
  config.eval.crop_size = good
  config_lib.validate(config)
  for key in ("data.crop_size", "eval.crop_size"):
    section, field = key.split(".")
    broken = config_lib.base_config()
    broken.model.align_corners = align_corners
    broken.data.crop_size = good
    setattr(broken[section], field, bad)
    with pytest.raises(ValueError) as error:
      config_lib.validate(broken)
    message = str(error.value)
    assert f"config.{key} must be" in message
    assert ("output_stride * k + 1 with config.model.align_corners=True, "
            "output_stride * k with False") in message
    assert f"align_corners={align_corners}" in message
    assert f"got {bad}" in message


def test_the_loop_fields_stay_in_train_and_every_section_has_its_concern():
  config = config_lib.base_config()
  assert list(config_lib.SECTIONS) == [
      "dataset", "model", "data", "train", "optimizer", "schedule", "loss",
      "init", "checkpoint", "budget", "distribution", "eval", "export"]
  assert set(config.keys()) == set(config_lib.SECTIONS)
  assert set(config.train.keys()) == {"batch_size", "steps", "steps_per_loop",
                                      "seed", "fine_tune_batch_norm",
                                      "accumulation_steps", "jit_compile"}


@pytest.mark.parametrize("name", [n for n, s in config_lib.SECTIONS.items()
                                  if s.rule_table])
def test_every_rule_names_a_field_of_its_section(name):
  config = config_lib.base_config()
  variants = [config_lib.base_config() for _ in range(3)]
  variants[0].schedule.name = "exponential"
  variants[1].distribution.strategy = "tpu"
  variants[2].model.task = "classification"
  for tree in [config, *variants]:
    table = config_lib.SECTIONS[name].rule_table(tree)
    assert table and set(table) <= set(tree[name].keys()), name


def test_model_arguments_and_config_sections_share_one_rule_style():
  config = config_lib.base_config()
  config.model.output_stride = 12
  with pytest.raises(rules.RuleError) as model_error:
    config_lib.validate(config)
  assert isinstance(model_error.value, ArgumentError)
  assert model_error.value.key == "config.model.output_stride"
  config = config_lib.base_config()
  config.checkpoint.keep = 0
  with pytest.raises(rules.RuleError) as section_error:
    config_lib.validate(config)
  assert (section_error.value.key, section_error.value.rule,
          section_error.value.value) == ("config.checkpoint.keep", ">= 1", 0)


def test_rule_helpers_say_the_rule_in_words():
  assert rules.in_interval(0, 1, "(]").words == "in (0, 1]"
  assert rules.in_interval(0, 1, "(]").holds(1) and not rules.in_interval(
      0, 1, "(]").holds(0)
  assert rules.in_interval(0, 1, "[)").holds(0) and not rules.in_interval(
      0, 1, "[)").holds(1)
  assert not rules.at_least(1).holds("8")  # Another type breaks the rule.
  with pytest.raises(ValueError, match="brackets must be one of"):
    rules.in_interval(0, 1, "<>")


def test_no_text_names_a_training_field_under_train_that_moved():
  moved = "|".join(run_dir.FLAT_TRAIN_KEYS)
  pattern = re.compile(rf"(config\.train\.|[\"']train\.)({moved})\b")
  paths = [REPO / "README.md", REPO / "Makefile",
           *[path for pattern in ("docs/**/*.md", "bench/*.md", "bench/*.py",
                                  "configs/*.py", "deeplab/**/*.py",
                                  "datasets/*.py", "tests/*.py")
             for path in REPO.glob(pattern)]]
  found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
           for path in paths if path.is_file()
           for number, line in enumerate(path.read_text().splitlines(), 1)
           if pattern.search(line) and path.name != "test_config.py"]
  assert not found, "\n".join(found)


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
