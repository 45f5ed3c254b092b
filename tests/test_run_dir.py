"""The run folder: every tool after training reads the run's own config."""

import json

from PIL import Image
import pytest

from deeplab import config as config_lib
from deeplab import run_dir
from tests.conftest import REPO
from tests.harness import make_synthetic_records
from tests.harness import run_cli
from tests.harness import run_train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A 4-step run whose records, crop and steps were set on the command
  line only, as a user would: (workdir, records, val PNGs)."""
  root = tmp_path_factory.mktemp("run")
  records = make_synthetic_records(root / "records", train_size=16, val_size=3,
                                   png_dir=root / "png")
  code, output = run_train(root / "w", [
      f"--config.data.train_pattern={records}/train-*.tfrecord",
      f"--config.data.eval_pattern={records}/val-*.tfrecord",
      "--config.data.crop_size=(65,65)", "--config.train.batch_size=2",
      "--config.train.steps=4", "--config.checkpoint.every=4",
      "--config.train.steps_per_loop=2", "--config.eval.num_summary_images=0"])
  assert code == 0, output
  return root / "w", records, root / "png"


def test_eval_export_and_predict_need_only_the_workdir(trained, tmp_path):
  workdir, _, pngs = trained
  result = run_cli("eval.py", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "eval 3/3 ETA" in result.stderr  # A progress line for evaluation.
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics["step"] == 4 and metrics["pixels"] == 3 * 161 * 161
  result = run_cli("export.py", f"--workdir={workdir}",
                   f"--export_dir={tmp_path / 'saved'}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / "saved" / "saved_model.pb").exists()
  result = run_cli("-m", "deeplab.cli", "predict", f"--workdir={workdir}",
                   f"--input={pngs}", f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr[-3000:]
  ids = Image.open(tmp_path / "out" / "00000_ids.png")
  assert ids.size == Image.open(pngs / "00000.png").size


def test_a_config_file_does_not_undo_the_runs_command_line(trained):
  # The file's empty eval_pattern is its default, not a choice: the run's
  # pattern (set on train.py's command line) stands; flip is a choice.
  workdir, _, _ = trained
  result = run_cli("eval.py", "--config=configs/synthetic.py",
                   f"--workdir={workdir}", "--config.eval.flip=True")
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads(result.stdout[result.stdout.index("{"):])["step"] == 4


def test_an_architecture_change_is_refused_with_the_field_named(trained):
  workdir, _, _ = trained
  result = run_cli("eval.py", f"--workdir={workdir}",
                   "--config.model.decoder_filters=32")
  assert result.returncode != 0
  assert "config.model.decoder_filters=32 (the run has 64)" in result.stderr
  result = run_cli("eval.py", f"--workdir={workdir}",
                   "--config.dataset.num_classes=11")
  assert "config.dataset.num_classes=11 (the run has 5)" in result.stderr


def test_train_resumes_a_run_from_its_folder_alone(trained, tmp_path):
  workdir, _, _ = trained
  copy = tmp_path / "w"
  copy.mkdir()
  (copy / "config.json").write_text((workdir / "config.json").read_text())
  for path in (workdir / "checkpoints").iterdir():
    (copy / "checkpoints").mkdir(exist_ok=True)
    (copy / "checkpoints" / path.name).write_bytes(path.read_bytes())
  code, output = run_train(copy, ["--config.train.steps=6"], config=None)
  assert code == 0, output
  assert "Resumed from" in output and run_dir.latest_checkpoint(str(copy)) \
      .endswith("ckpt-6")
  assert "train 6/6" in output
  assert run_dir.read_config(str(copy)).train.steps == 6


def test_a_tool_without_a_run_says_so(tmp_path):
  result = run_cli("eval.py", f"--workdir={tmp_path}")
  assert result.returncode != 0
  assert "config.json does not exist" in result.stderr
  result = run_cli("train.py", f"--workdir={tmp_path}")
  assert "give --config=FILE" in result.stderr


def test_a_damaged_config_json_is_named(tmp_path):
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(ValueError, match="config.json is not valid JSON"):
    run_dir.read_config(str(tmp_path))
  values = json.loads(config_lib.base_config().to_json())
  values["train"]["batch_sise"] = 8
  (tmp_path / "config.json").write_text(json.dumps(values))
  with pytest.raises(ValueError, match="config.train.batch_sise is not a config field"):
    run_dir.read_config(str(tmp_path))


def test_a_run_folder_with_a_flat_train_section_still_loads(tmp_path):
  # The config.json of a 1-step synthetic run whose train section holds
  # every training field (optimizer, schedule, loss, ...).
  flat = json.loads((REPO / "tests" / "data" / "config_flat_train.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps(flat))
  config = run_dir.read_config(str(tmp_path))
  config_lib.validate(config)
  assert config.optimizer.name == "adamw" and config.optimizer.weight_decay == 0.01
  assert config.optimizer.clip_global_norm == 5.0
  assert config.schedule.base_learning_rate == 0.02
  assert (config.schedule.warmup_steps, config.schedule.warmup_type) == (1, "linear")
  assert config.loss.class_weights == (1.0, 2.0, 1.0, 1.0, 0.5)
  assert (config.loss.lovasz_weight, config.loss.lovasz_pixel_stride) == (0.25, 2)
  assert config.init.last_layers_contain_logits_only
  assert (config.checkpoint.every, config.checkpoint.keep) == (1, 3)
  assert (config.train.steps, config.train.batch_size) == (1, 4)
  # Every field lands where the table says, every other one stays, and a
  # field the file predates takes its default.
  written = json.loads(config.to_json())
  defaults = json.loads(config_lib.base_config().to_json())
  flat_train = flat.pop("train")
  assert set(flat_train) - set(run_dir.FLAT_TRAIN_KEYS) <= set(written["train"])
  landed = {}
  for key, value in flat_train.items():
    section, name = run_dir.FLAT_TRAIN_KEYS.get(key, f"train.{key}").split(".")
    assert written[section][name] == value, key
    landed.setdefault(section, set()).add(name)
  for section, values in flat.items():
    for name, value in values.items():
      assert written[section][name] == value, f"{section}.{name}"
    landed.setdefault(section, set()).update(values)
  for section, values in written.items():
    for name in set(values) - landed.get(section, set()):
      assert values[name] == defaults[section][name], f"{section}.{name}"
  # Written back, the run's config.json has the sections.
  run_dir.write_config(config, str(tmp_path))
  rewritten = json.loads((tmp_path / "config.json").read_text())
  assert set(rewritten["train"]) == set(config.train.keys())
  assert run_dir.read_config(str(tmp_path)).to_dict() == config.to_dict()


def test_changes_are_typed_and_validated(tmp_path):
  run_dir.write_config(config_lib.base_config(), str(tmp_path))
  config = run_dir.config_with_changes(str(tmp_path), {"eval.scales": [0.5, 1.0]})
  assert config.eval.scales == (0.5, 1.0)
  with pytest.raises(ValueError, match="config.train.batch_size"):
    run_dir.config_with_changes(str(tmp_path), {"train.batch_size": "eight"})
  with pytest.raises(ValueError, match="config.model.output_stride must be"):
    run_dir.config_with_changes(str(tmp_path), {"model.output_stride": 12})


def test_continuous_eval_scores_the_last_checkpoint_and_stops(trained):
  workdir, _, _ = trained
  result = run_cli("eval.py", f"--workdir={workdir}", "--mode=continuous_eval",
                   "--timeout=5")
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads((workdir / "eval" / "metrics-4.json").read_text())["step"] == 4


def test_a_config_file_changes_only_how_a_run_is_evaluated(trained, tmp_path):
  # A file whose records, steps and crop differ from the run's: only its
  # eval section applies (a nonexistent pattern would fail the evaluation).
  workdir, _, _ = trained
  path = tmp_path / "other.py"
  path.write_text(
      "from deeplab_configs import synthetic\n"
      "def get_config():\n"
      "  config = synthetic.get_config()\n"
      "  config.data.eval_pattern = '/nowhere/val-*'\n"
      "  config.train.steps = 999\n"
      "  config.eval.flip = True\n"
      "  return config\n")
  result = run_cli("eval.py", f"--config={path}", f"--workdir={workdir}",
                   "--mode=continuous_eval", "--timeout=5")
  assert result.returncode == 0, result.stderr[-3000:]  # Stopped at step 4.


def test_int8_export_calibrates_on_training_records_only(trained, tmp_path):
  workdir, _, _ = trained
  result = run_cli("export.py", f"--workdir={workdir}",
                   f"--export_dir={tmp_path / 'saved'}",
                   f"--tflite={tmp_path / 'm.tflite'}", "--quantization=int8",
                   "--config.data.train_pattern=")
  assert result.returncode != 0
  assert "int8 quantization calibrates on training images" in result.stderr
  assert "config.data.train_pattern" in result.stderr
  assert not (tmp_path / "saved").exists()  # Refused before writing anything.
  # With training records it calibrates on them (a progress line says so).
  result = run_cli("export.py", f"--workdir={workdir}",
                   f"--tflite={tmp_path / 'm.tflite'}", "--quantization=int8",
                   "--representative_count=3", "--tflite_size=65,65")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "calibrate 3/3" in result.stderr


def test_convert_never_replaces_a_runs_checkpoints(trained):
  workdir, _, _ = trained
  result = run_cli("-m", "deeplab.cli", "convert", f"--workdir={workdir}",
                   "--source=/nowhere/model.ckpt")
  assert result.returncode != 0
  assert "already holds checkpoints" in result.stderr
