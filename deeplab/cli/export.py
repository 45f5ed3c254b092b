r"""Exports a training run as a SavedModel for TF Serving, TFLite and/or ONNX.

  deeplab-export --workdir=W --export_dir=E \
      [--output_stride=8] [--config.eval.scales='(0.75,1.0,1.25)'] \
      [--config.eval.flip=True] [--legacy_names] [--frozen_graph] \
      [--tflite=model.tflite --tflite_size=513,513 --quantization=int8] \
      [--tflite_output=probabilities] [--onnx=model.onnx [--onnx_quantization=int8]]

(In a checkout, ``python export.py`` is the same tool.)

The run's own config (W/config.json) is used; --config.x=... changes
export fields (eval scales, flip, records) on purpose. The SavedModel's
signatures are described in deeplab/export/savedmodel.py. int8 TFLite calibrates
on --representative_count images of config.data.train_pattern (training
images only), resized to the TFLite input size; int8_full is full-integer
(uint8 in, integer ops only). The ONNX file (tf2onnx, the 'onnx' extra)
computes what the SavedModel's serving_default does (deeplab/export/onnx.py);
--onnx_quantization=int8 makes its convolutions 8-bit, calibrated as int8
TFLite is. A bfloat16 SavedModel (for CPUs with AVX512-BF16 or AMX):
--config.model.dtype_policy=mixed_bfloat16.
"""

from absl import app
from absl import flags

from deeplab import export
from deeplab.cli import common
from deeplab.export import onnx as onnx_lib
from deeplab.export import tflite as tflite_lib


def main():
  """Console-script entry point: flags, then one library call."""
  config_flag = common.define_config_flag()
  workdir = flags.DEFINE_string("workdir", None, "Training run folder.")
  export_dir = flags.DEFINE_string("export_dir", None, "SavedModel folder.")
  output_stride = flags.DEFINE_enum(
      "output_stride", None, ["8", "16", "32"], "Output stride of the exported "
      "model (default: the trained one; ASPP rates scale along).")
  frozen = flags.DEFINE_bool(
      "frozen_graph", False, "Also write EXPORT_DIR/frozen_inference_graph.pb: "
      "the original's frozen graph (ImageTensor:0 uint8 [1, h, w, 3] -> "
      "SemanticPredictions:0 int32 [1, h, w]) for its TF1 clients.")
  legacy = flags.DEFINE_bool(
      "legacy_names", False, "Add the 'legacy' signature (ImageTensor -> "
      "SemanticPredictions) of the original frozen graph.")
  tflite = flags.DEFINE_string("tflite", None, "Also write a TFLite file here.")
  tflite_size = flags.DEFINE_list(
      "tflite_size", None, "TFLite input height,width (default: the crop size).")
  quantization = flags.DEFINE_enum(
      "quantization", "float32", list(tflite_lib.QUANTIZATIONS),
      "TFLite weight/activation type; int8_full: integer ops only, uint8 "
      "input (Edge TPU, NPU delegates).")
  tflite_output = flags.DEFINE_enum(
      "tflite_output", "labels", list(tflite_lib.OUTPUTS),
      "TFLite output: int32 labels (ArgMax in the graph) or class "
      "probabilities (uint8 with int8_full).")
  onnx = flags.DEFINE_string(
      "onnx", None, "Also write an ONNX file here (tf2onnx: pip install "
      "'deeplab-tf2[onnx]'): uint8 images -> labels, probabilities.")
  onnx_quantization = flags.DEFINE_enum(
      "onnx_quantization", "float32", list(onnx_lib.QUANTIZATIONS),
      "ONNX file precision; int8: 8-bit convolutions (QDQ), calibrated on "
      "--representative_count training images.")
  checkpoint = common.define_checkpoint_flag()
  representative = flags.DEFINE_integer(
      "representative_count", 32, "Training images calibrating int8 "
      "quantization.", lower_bound=1)

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not export_dir.value and not tflite.value and not onnx.value:
      raise app.UsageError("give --export_dir, --tflite and/or --onnx")
    if onnx_quantization.value != "float32" and not onnx.value:
      raise app.UsageError(f"--onnx_quantization={onnx_quantization.value} "
                           "applies to an ONNX file: give --onnx=FILE")
    size = tflite_size.value
    if size is not None and (len(size) != 2 or not all(v.isdigit() for v in size)):
      raise app.UsageError(f"--tflite_size must be HEIGHT,WIDTH, got {size}")
    export.export_run(
        common.tool_config(config_flag.value, workdir.value), workdir.value,
        export_dir=export_dir.value, tflite_path=tflite.value,
        tflite_size=tuple(int(v) for v in size) if size else None,
        quantization=quantization.value,
        representative_count=representative.value,
        output_stride=int(output_stride.value) if output_stride.value else None,
        legacy_names=legacy.value, frozen_graph=frozen.value,
        onnx_path=onnx.value, tflite_output=tflite_output.value,
        checkpoint=checkpoint.value, onnx_quantization=onnx_quantization.value)

  flags.mark_flags_as_required(["workdir"])
  common.run_app(_main, __doc__)
