# `make test` and `make demo` work on a fresh machine: each creates .venv and
# installs the package with its dependencies first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The console scripts (deeplab-*) beside the interpreter.
BIN = $(dir $(PY))

DEMO := demo_output
# Extra deeplab-train flags (tests/test_readme.py shortens the run with them).
DEMO_FLAGS :=
DEMO_DATA := --config.data.train_pattern='$(DEMO)/records/train-*.tfrecord' \
             --config.data.eval_pattern='$(DEMO)/records/val-*.tfrecord'

.PHONY: test test-floor demo venv clean bench-peers

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 --dist=loadgroup --durations=15 tests

# The oldest supported set (setup.cfg's lower bounds, installed exactly from
# requirements-floor.txt) in its own venv, .venv-floor, and the part of the
# suite that covers model building, released-weight parity, a training run
# resumed after SIGKILL, eval, SavedModel export and predict (a few
# minutes: pytest took 2m15s on CI's 2 cores, after the venv install).
FLOOR := .venv-floor
FLOOR_STAMP := $(FLOOR)/.installed
FLOOR_TESTS := \
    'tests/test_model.py::test_xception65_deeplabv3plus_parameter_count' \
    'tests/test_model.py::test_save_and_reload[mobilenet_v2]' \
    'tests/test_released_weights.py::test_a_tf1_checkpoint_under_the_original_names_converts_exactly' \
    'tests/test_released_weights.py::test_the_served_savedmodel_reproduces_the_released_file[deeplabv3_257_mv_gpu.tflite]' \
    'tests/test_released_weights.py::test_the_converted_model_gives_a_float_files_logits[deeplabv3_257_mv_gpu.tflite]' \
    'tests/test_training.py::test_resume_after_sigkill_matches_an_uninterrupted_run' \
    'tests/test_training.py::test_eval_cli_writes_the_metrics_contract' \
    'tests/test_export.py::test_saved_model_in_a_fresh_process_and_saved_model_cli[synthetic]' \
    'tests/test_export.py::test_predict_cli_writes_masks_and_overlays_and_names_bad_files[synthetic]' \
    'tests/test_runtime.py::test_a_tools_output_starts_with_what_the_user_asked_for' \
    'tests/test_wheel.py::test_the_wheel_keeps_the_tensorflow_it_finds'

$(FLOOR_STAMP): requirements-floor.txt setup.cfg pyproject.toml
	test -x $(FLOOR)/bin/python || $(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR)/bin/python -m pip install --quiet -r requirements-floor.txt
	$(FLOOR)/bin/python -m pip install --quiet --no-deps -e .
	touch $(FLOOR_STAMP)

test-floor: $(FLOOR_STAMP)
	$(FLOOR)/bin/python -m pip check
	$(FLOOR)/bin/python -m pytest --durations=15 $(FLOOR_TESTS)

# The main job on built-in data: synthetic records, a few minutes of training
# of the tiny default model, evaluation, SavedModel export, and predicted
# overlays of a few validation images. Each run starts a fresh training run.
demo: $(STAMP)
	$(BIN)deeplab-make-synthetic --output_dir=$(DEMO)/records --png_dir=$(DEMO)/images
	rm -rf $(DEMO)/run $(DEMO)/saved_model $(DEMO)/predictions
	$(BIN)deeplab-train --config=configs/synthetic.py --workdir=$(DEMO)/run $(DEMO_DATA) $(DEMO_FLAGS)
	$(BIN)deeplab-eval --workdir=$(DEMO)/run > $(DEMO)/eval.log
	$(BIN)deeplab-export --workdir=$(DEMO)/run --export_dir=$(DEMO)/saved_model/1
	$(BIN)deeplab-predict --saved_model=$(DEMO)/saved_model/1 --input='$(DEMO)/images/0000[0-7].png' --output_dir=$(DEMO)/predictions
	@echo
	@echo "Demo finished. Results in $(DEMO)/:"
	@echo "  records/           synthetic TFRecords (train, val); images/ the val images as PNG"
	@echo "  run/checkpoints/   trained checkpoints; run/config.json the resolved config"
	@echo "  run/eval/metrics.json  validation mIoU per class:"
	@$(PY) -c "import json; m = json.load(open('$(DEMO)/run/eval/metrics.json')); print('    mIoU %.3f, pixel accuracy %.3f at step %d' % (m['miou'], m['pixel_accuracy'], m['step']))"
	@echo "  saved_model/1/     SavedModel for TF Serving (uint8 images -> labels, probabilities)"
	@echo "  predictions/       *_overlay.png, *_color.png, *_ids.png for 8 val images"
	@echo "  TensorBoard:       $(VENV)/bin/tensorboard --logdir $(DEMO)/run"

clean:
	rm -rf $(VENV) $(FLOOR) build *.egg-info

# Optional: the peers of bench/compare.py in their own venv (.venv-peers).
# Some go in with --no-deps: their pins clash with tensorflow 2.21, and
# PyPI's torchvision only supplies Python files here (see bench/compare.py);
# ONNX Runtime and the ONNX exporter go in a pip call of their own, then
# OpenVINO's runtime.
PEERS := .venv-peers
bench-peers:
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS)/bin/python -m pip install --quiet -e '.[test]' -r bench/requirements-peers.txt
	$(PEERS)/bin/python -m pip install --quiet --no-deps segmentation-models-pytorch timm \
	    torchvision==0.28.0 tf-models-official==2.20.0 tensorflow-model-optimization
	$(PEERS)/bin/python -m pip install --quiet 'onnxruntime~=1.32.0' onnx onnxscript
	$(PEERS)/bin/python -m pip install --quiet 'openvino~=2026.4'
