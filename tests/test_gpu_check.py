"""bench/gpu_check.py, the prepared check of a GPU machine, in its tiny
setting on the CPU: every setting trains, its memory and speed are
recorded, the SavedModel exports and reloads, the table is written."""

import json

import pytest

from tests.harness import run_cli


@pytest.mark.slow
def test_the_gpu_check_runs_its_tiny_setting_on_the_cpu(tmp_path):
  output = tmp_path / "check.json"
  result = run_cli("bench/gpu_check.py", "--smoke", f"--output={output}", timeout=900)
  assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
  report = json.loads(output.read_text())
  rows = report["settings"]
  assert {(r["precision"], r["xla"]) for r in rows} == {
      (p, x) for p in ("float32", "mixed_bfloat16") for x in (False, True)}
  assert report["memory"] == "resident peak over baseline"  # A CPU: sampled RSS.
  for row in rows:
    assert row["backbone"] == "mobilenet_v2" and row["crop"] == 65
    assert row["loss_finite"] and row["images_per_second"] > 0, row
    # Over the memory before the setting: what an earlier setting freed is
    # reused, so a later one may need nothing more; never more than the
    # process's own peak.
    assert isinstance(row["peak_memory_mb"], int), row
    assert 0 <= row["peak_memory_mb"] < row["process_peak_mb"], row
  # The first setting builds its model and runs its steps in a fresh process.
  assert rows[0]["peak_memory_mb"] > 0, rows[0]
  (exported,) = [r for r in rows if "export" in r]
  assert exported["export"]["ok"], exported
  table = output.with_suffix(".md").read_text()
  assert report["device"] in table and table.count("| mobilenet_v2 x0.25 | 65 |") == 4
