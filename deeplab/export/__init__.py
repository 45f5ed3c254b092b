"""Export of a trained run, one module per format.

- ``savedmodel``: the SavedModel for TF Serving (uint8 or encoded images in,
  labels and probabilities out; request checks; dataset metadata).
- ``frozen_graph``: the original's ``frozen_inference_graph.pb`` for its TF1
  clients.
- ``tflite``: TFLite of fixed input size in float32, float16, int8
  (calibrated on training images) or full-integer int8 (uint8 in, integer
  ops only, for Edge TPUs and NPUs).
- ``onnx``: ONNX through tf2onnx (the ``onnx`` extra), the SavedModel's
  ``serving_default`` as an ONNX graph, in float32 or with 8-bit
  convolutions (calibrated on training images).

Every format predicts through ``deeplab.inference`` with the model's batch
norm folded (``deeplab.folding``). ``export_run`` exports a checkpoint of
a run (the latest, the best, a step: ``run_dir.resolve_checkpoint``) in the
formats asked for (the ``deeplab-export`` tool's one call); the
SavedModel's metadata names that checkpoint.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

from absl import logging
import numpy as np

from deeplab import inference
from deeplab import run_dir
from deeplab.data import dataset_table
from deeplab.export import frozen_graph as frozen_graph_lib
from deeplab.export import onnx
from deeplab.export import savedmodel
from deeplab.export import tflite


def export_run(config, workdir: str, export_dir: Optional[str] = None,
               tflite_path: Optional[str] = None,
               tflite_size: Optional[Sequence[int]] = None,
               quantization: str = "float32", representative_count: int = 32,
               output_stride: Optional[int] = None,
               legacy_names: bool = False, frozen_graph: bool = False,
               onnx_path: Optional[str] = None,
               tflite_output: str = "labels", checkpoint: str = "latest",
               onnx_quantization: str = "float32") -> int:
  """Exports a checkpoint of a run: SavedModel, frozen graph, TFLite and/or
  ONNX.

  Args:
    config: the run's config (``run_dir.read_config``, possibly changed:
      ``config.eval.scales``/``flip`` are baked into the SavedModel).
    workdir: the run folder.
    export_dir: SavedModel folder, or None.
    tflite_path: TFLite file, or None.
    tflite_size: TFLite input (height, width); default: the crop size.
    quantization: TFLite 'float32', 'float16', 'int8' or 'int8_full'
      (``tflite.QUANTIZATIONS``; the int8 ones calibrate on
      ``representative_count`` images of ``config.data.train_pattern``).
    representative_count: int8 calibration images (TFLite and ONNX).
    output_stride: export at another output stride than trained.
    legacy_names: add the SavedModel's ``legacy`` signature.
    frozen_graph: also write ``export_dir/frozen_inference_graph.pb``, the
      original's frozen graph (``frozen_graph.export_frozen_graph``).
    onnx_path: ONNX file (``onnx.export_onnx``), or None.
    tflite_output: what the TFLite file outputs, 'labels' or
      'probabilities'.
    checkpoint: ``latest``, ``best``, a step or a checkpoint prefix
      (``run_dir.resolve_checkpoint``); the SavedModel's metadata records
      its path, step and this selector.
    onnx_quantization: ``float32`` or ``int8`` (``onnx.quantize_int8``,
      calibrated as TFLite's int8 on ``config.data.train_pattern``).

  Returns:
    The step of the exported checkpoint.

  Raises:
    ValueError: no output given, a frozen graph without an export_dir,
      an unknown quantization (TFLite or ONNX) or TFLite output, int8
      (TFLite or ONNX) without training records, or an ONNX file of a run
      with tiles (``onnx.check_tiles``; all checked before anything is
      written).
    ImportError: an ONNX file without tf2onnx installed, or ONNX int8
      without onnxruntime (checked before anything is written).
  """
  if not export_dir and not tflite_path and not onnx_path:
    raise ValueError("give an export_dir (--export_dir), a tflite path "
                     "(--tflite) and/or an onnx path (--onnx)")
  if frozen_graph and not export_dir:
    raise ValueError("the frozen graph is written into the export_dir: give "
                     "--export_dir with --frozen_graph")
  tflite.check_options(quantization, tflite_output)
  if tflite_path and quantization in tflite.CALIBRATED:
    tflite.calibration_pattern(config)
  if onnx_path:
    onnx.check_tiles(config.eval.tile_size)
    onnx.check_quantization(onnx_quantization)
    if onnx_quantization == "int8":
      tflite.calibration_pattern(config)
    onnx.tf2onnx_module()
  choice = run_dir.resolve_checkpoint(workdir, checkpoint)
  model, step = run_dir.restore_model(config, workdir, choice.path)
  output_stride = output_stride or model.args.output_stride
  options = inference.options_from_config(config)
  if export_dir:
    savedmodel.export_saved_model(
        model, dataset_table.from_config(config), export_dir,
        output_stride=output_stride, legacy_names=legacy_names,
        max_request_pixels=config.export.max_request_pixels,
        max_image_pixels=config.export.max_image_pixels,
        tile_probabilities=config.export.tile_probabilities,
        checkpoint=choice.describe(), **options)
    logging.info("SavedModel of step %d written to %s", step, export_dir)
  if frozen_graph:
    path = os.path.join(export_dir, frozen_graph_lib.FROZEN_GRAPH_NAME)
    size = frozen_graph_lib.export_frozen_graph(
        inference.with_output_stride(model, output_stride), path, **options)
    logging.info("Frozen graph of step %d written to %s: %d bytes", step,
                 path, size)
  if tflite_path:
    height, width = tuple(tflite_size or config.data.crop_size)
    images = None
    if quantization in tflite.CALIBRATED:
      images = tflite.representative_images(config, height, width,
                                            representative_count)
    size = tflite.export_tflite(
        inference.with_output_stride(model, output_stride), tflite_path,
        height, width, quantization, images, output=tflite_output)
    logging.info("TFLite (%s, %dx%d, %s) of step %d written to %s: %d bytes",
                 quantization, height, width, tflite_output, step, tflite_path,
                 size)
  if onnx_path:
    whole_images = {k: v for k, v in options.items()
                    if k not in ("tile_size", "tile_overlap")}
    calibration = None
    if onnx_quantization == "int8":
      calibration = [np.clip(np.round(image), 0, 255).astype(np.uint8)
                     for image in tflite.representative_images(
                         config, *config.data.crop_size, representative_count)]
    size = onnx.export_onnx(model, onnx_path, dataset_table.from_config(config),
                            output_stride=output_stride,
                            checkpoint=choice.describe(),
                            quantization=onnx_quantization,
                            calibration=calibration, **whole_images)
    logging.info("ONNX (%s) of step %d written to %s: %d bytes", onnx_quantization,
                 step, onnx_path, size)
  return step
