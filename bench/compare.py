"""Side-by-side speed of our DeepLabv3+ and its peers at equal architecture.

Usage (peers come from .venv-peers, made by `make bench-peers`):
  .venv-peers/bin/python bench/compare.py [--models=mobilenet_v2,xception_65]
      [--allocators=plain,glibc_tuned] [--write_readme]

For each model and allocator setting, two worker processes (one for the
TensorFlow implementations, one for torch: each runtime's spinning threads
would slow the other in one process) build ours and every installed peer
of that architecture and take turns in alternating rounds, so drifts of
the machine hit all alike:
forward latency at batch 1, forward throughput at batch 8 and one SGD
training step at batch 4 (softmax cross-entropy on random labels, momentum
0.9), float32, random weights. FLOPs of one forward pass come from the
TensorFlow profiler (TF models) or torch's FlopCounterMode; both count a
multiply-add as two. Peak memory is the maximum resident set size of a
separate child that only runs that implementation's training steps (under
the first allocator setting only).

Our rows: ``ours`` (float32; forward passes on the BN-folded model),
``ours_bf16`` (``mixed_bfloat16``), ``ours_inference`` (the float32
forward passes in a worker of their own that runs as ``deeplab-predict``
does), and our exported forms in that worker: ``ours_savedmodel`` (the
folded SavedModel of ``deeplab-export``, uint8 images in, labels and
probabilities out), ``ours_tflite`` (the float32 TFLite file, one
interpreter thread per core) and ``ours_tflite_int8_full`` (the
full-integer TFLite file, uint8 in, labels out, calibrated on random
images); ``ours_onnx`` (our ONNX file of ``deeplab-export --onnx``, uint8
in, labels and probabilities out, in ONNX Runtime as the ``onnxruntime``
peer runs, in that peer's worker). Each TensorFlow worker runs with
``deeplab.runtime``'s choice for its job on this CPU (``train`` for the
``ours`` worker, TensorFlow peers included; ``predict`` for the inference
worker), unless the environment sets the variable.

Rows are kept per CPU: each run records the CPU's model, ISA (AVX2,
AVX-512, BF16, AMX) and cores, and the README table has a section per CPU,
so a figure is never set beside one taken on another CPU.

Peers (a missing one is reported as missing, never dropped):
- smp: segmentation-models-pytorch DeepLabV3Plus (torch CPU), output stride
  16, separable ASPP + decoder; 512 px (it needs multiples of 16).
- model_garden: TF Model Garden DeepLabV3+ on its dilated ResNet (v1 stem,
  multi-grid 1,2,4, plain ASPP 6,12,18), ReLU, 513 px.
- keras_hub: keras-hub DeepLabV3Plus on ResNet-50 v1; output stride 32
  only and 512 px (it cannot build at 513).
- onnxruntime: smp's model exported with ``torch.onnx.export`` and run by
  ONNX Runtime with every graph optimization (forward only; its own
  worker, since its threads spin as torch's do).
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from bench import common  # noqa: E402  (no framework: TensorFlow only where a model is built)

_MODELS = flags.DEFINE_list(
    "models", ["mobilenet_v2", "resnet_50", "resnet_101", "xception_65"],
    "Architectures to compare.")
_IMPLS = flags.DEFINE_list(
    "impls", ["ours", "ours_bf16", "ours_inference", "ours_savedmodel",
              "ours_tflite", "ours_tflite_int8_full", "ours_onnx",
              "ours_openvino", "smp", "onnxruntime", "openvino", "model_garden",
              "keras_hub"],
    "Implementations to measure (ours and peers).")
_ALLOCATORS = flags.DEFINE_list(
    "allocators", ["plain", "glibc_tuned"],
    "Allocator settings: plain, glibc_tuned, tcmalloc, jemalloc.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating timing rounds.")
_TAG = flags.DEFINE_string(
    "tag", "", "Added to the allocator column, e.g. TF_ENABLE_ONEDNN_OPTS=0 "
    "for a run with that variable set, so that its rows keep places of their "
    "own beside the rows of the runtime's choice.")
_WRITE = flags.DEFINE_bool("write_readme", False, "Write into bench/README.md.")
_CHILD = flags.DEFINE_string("child", None, "Internal: worker|memory.")
_OUT = flags.DEFINE_string("out", None, "Internal: JSON result path.")

NUM_CLASSES = 21

# glibc's malloc returns freed blocks above the mmap threshold to the kernel
# and trims the heap top eagerly, so each step of a large model page-faults
# its activations in again. Raising both thresholds keeps them mapped.
GLIBC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20),
               "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
               "MALLOC_TOP_PAD_": str(256 << 20)}
PRELOADS = {"tcmalloc": "libtcmalloc_minimal.so.4", "jemalloc": "libjemalloc.so.2"}


def allocator_env(name: str):
  """Environment for a child under allocator ``name``; None if unavailable."""
  env = dict(os.environ)
  if name == "plain":
    return env
  if name == "glibc_tuned":
    env.update(GLIBC_TUNED)
    return env
  for folder in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
    path = pathlib.Path(folder) / PRELOADS[name]
    if path.exists():
      env["LD_PRELOAD"] = str(path)
      return env
  return None


# ---------------------------------------------------------------- builders


class Impl:
  """One implementation of one architecture: timing closures and FLOPs."""

  def __init__(self, name, size, forward, train_step, flops, params, note=""):
    self.name, self.size, self.note = name, size, note
    self.forward, self.train_step = forward, train_step
    self.flops, self.params = flops, params


def _tf_flops(fn, size):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.profiler import model_analyzer  # pylint: disable=g-import-not-at-top
  from tensorflow.python.profiler import option_builder  # pylint: disable=g-import-not-at-top
  graph = tf.function(fn).get_concrete_function(
      tf.TensorSpec([1, size, size, 3], tf.float32)).graph
  options = option_builder.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  return model_analyzer.profile(graph, options=options).total_float_ops


def _tf_impl(name, model, size, optimizer, note="", inference_model=None):
  """Timing closures for a TF/Keras model mapping images to logits; the
  forward passes run ``inference_model`` if given (same function)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  inference_model = inference_model or model
  forward = tf.function(lambda x: inference_model(x, training=False))

  @tf.function
  def step(images, labels):
    with tf.GradientTape() as tape:
      logits = tf.cast(model(images, training=True), tf.float32)
      logits = tf.image.resize(logits, tf.shape(labels)[1:3]) \
          if logits.shape[1] != labels.shape[1] else logits
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels, logits))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  rng = np.random.default_rng(0)
  data = {b: tf.constant(rng.uniform(-1, 1, (b, size, size, 3)).astype("float32"))
          for b in (1, 4, 8)}
  labels = tf.constant(rng.integers(0, NUM_CLASSES, (4, size, size)).astype("int32"))
  params = int(sum(np.prod(v.shape) for v in model.weights))
  return Impl(name, size, lambda b: forward(data[b]).numpy(),
              lambda: step(data[4], labels).numpy(),
              lambda: _tf_flops(lambda x: inference_model(x, training=False), size),
              params, note)


def build_ours(arch: str, dtype_policy: str = "float32"):
  import keras  # pylint: disable=g-import-not-at-top

  # Imported here, as every framework is: the torch worker imports none.
  from deeplab import folding  # pylint: disable=g-import-not-at-top
  model = common.deeplab_v3_plus(arch, dtype_policy=dtype_policy)
  name = "ours" if dtype_policy == "float32" else "ours_bf16"
  # Forward passes time the folded inference form that eval, predict and
  # export run; training times the model with its batch norms.
  return _tf_impl(name, model, 513, keras.optimizers.SGD(0.001, momentum=0.9),
                  "separable ASPP 6,12,18 + decoder; forward BN-folded",
                  inference_model=folding.fold_batch_norm(model))


def build_ours_bf16(arch: str):
  return build_ours(arch, "mixed_bfloat16")


def build_ours_inference(arch: str):
  """Our forward passes as an inference-only process runs them (the
  ``deeplab-predict`` CLI): its worker runs with the ``predict`` job's runtime
  (deeplab/runtime.py)."""
  impl = build_ours(arch)
  impl.name, impl.train_step = "ours_inference", None
  impl.note = "forward only, with deeplab-predict's runtime"
  return impl


def build_ours_savedmodel(arch: str, dtype_policy: str = "float32"):
  """The folded SavedModel ``deeplab-export`` writes, loaded back: uint8
  images in, labels and probabilities out (more work than logits); with
  ``mixed_bfloat16``, the bfloat16 SavedModel of ``deeplab-export
  --config.model.dtype_policy=mixed_bfloat16``."""
  import tempfile  # pylint: disable=g-import-not-at-top

  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from deeplab.data import dataset_table  # pylint: disable=g-import-not-at-top
  from deeplab.export import savedmodel  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  model = common.randomize_batch_norm(
      common.deeplab_v3_plus(arch, dtype_policy=dtype_policy), rng)
  folder = tempfile.mkdtemp(prefix="compare_savedmodel_")
  savedmodel.export_saved_model(model, dataset_table.get("pascal_voc_seg"), folder)
  serve = tf.saved_model.load(folder).signatures["serving_default"]
  data = {b: tf.constant(rng.integers(0, 256, (b, 513, 513, 3)).astype(np.uint8))
          for b in (1, 8)}
  bf16 = dtype_policy == "mixed_bfloat16"
  impl = _tf_impl("ours_savedmodel_bf16" if bf16 else "ours_savedmodel", model, 513,
                  None, f"folded SavedModel{', bfloat16' if bf16 else ''}, uint8 in, "
                  "labels out")
  impl.forward = lambda b: serve(images=data[b])["labels"].numpy()
  impl.train_step = None
  return impl


def build_ours_tflite(arch: str, quantization: str = "float32"):
  """The TFLite file of ``deeplab-export --tflite`` (float32, or
  full-integer: uint8 in, calibrated on random images), one interpreter
  per batch size, one thread per core."""
  import tempfile  # pylint: disable=g-import-not-at-top

  from deeplab import weights  # pylint: disable=g-import-not-at-top
  from deeplab.export import tflite  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  model = common.randomize_batch_norm(common.deeplab_v3_plus(arch), rng)
  path = os.path.join(tempfile.mkdtemp(prefix="compare_tflite_"), "model.tflite")
  integer = quantization == "int8_full"
  calibration = [rng.integers(0, 256, (513, 513, 3)) for _ in range(4)] if integer else None
  tflite.export_tflite(model, path, 513, 513, quantization, calibration)
  runs = {}
  for batch in (1, 8):
    interpreter = weights.tflite_interpreter(path, num_threads=os.cpu_count())
    source = interpreter.get_input_details()[0]["index"]
    if batch != 1:
      interpreter.resize_tensor_input(source, [batch, 513, 513, 3])
    interpreter.allocate_tensors()
    target = interpreter.get_output_details()[0]["index"]
    images = (rng.integers(0, 256, (batch, 513, 513, 3)).astype(np.uint8) if integer
              else rng.uniform(-1, 1, (batch, 513, 513, 3)).astype(np.float32))

    def run(interpreter=interpreter, source=source, target=target, images=images):
      interpreter.set_tensor(source, images)
      interpreter.invoke()
      return interpreter.get_tensor(target)
    runs[batch] = run
  impl = (_tf_impl("ours_tflite_int8_full", model, 513, None,
                   "full-integer TFLite, uint8 in, labels out") if integer else
          _tf_impl("ours_tflite", model, 513, None, "float32 TFLite, folded"))
  impl.forward = lambda b: runs[b]()
  impl.train_step = None
  return impl


def _ours_onnx_file(arch: str, quantization: str, rng) -> str:
  """Our ONNX file of random weights (``deeplab-export --onnx``, int8
  calibrated on random images), its path."""
  import tempfile  # pylint: disable=g-import-not-at-top

  from deeplab.export import onnx  # pylint: disable=g-import-not-at-top
  onnx.tf2onnx_module()  # An ImportError (reported missing) before the work.
  model = common.randomize_batch_norm(common.deeplab_v3_plus(arch), rng)
  path = os.path.join(tempfile.mkdtemp(prefix="compare_ours_onnx_"), "model.onnx")
  calibration = ([rng.integers(0, 256, (513, 513, 3)).astype(np.uint8) for _ in range(4)]
                 if quantization == "int8" else None)
  onnx.export_onnx(model, path, quantization=quantization, calibration=calibration)
  return path


def _ort_session(path: str):
  """An ONNX Runtime CPU session of the file ``path``: all graph
  optimizations, one thread per core (every ONNX Runtime row)."""
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  options.intra_op_num_threads = os.cpu_count()
  return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def build_ours_onnx(arch: str, quantization: str = "float32",
                    runtime: str = "onnxruntime"):
  """Our ONNX file (``deeplab-export --onnx``: uint8 images in, labels and
  probabilities out; ``int8``: ``--onnx_quantization=int8``, whose
  convolutions run in 8 bits), run by ONNX Runtime as the ``onnxruntime``
  peer is, or (``runtime="openvino"``) compiled by OpenVINO for the CPU in
  float32 as the ``openvino`` peer is, reshaped to a fixed 513 x 513 input."""
  rng = np.random.default_rng(0)
  path = _ours_onnx_file(arch, quantization, rng)
  data = {b: rng.integers(0, 256, (b, 513, 513, 3)).astype(np.uint8) for b in (1, 8)}
  if runtime == "openvino":
    import openvino as ov  # pylint: disable=g-import-not-at-top
    compiled = {b: _openvino_compiled(path, (b, 513, 513, 3)) for b in (1, 8)}
    forward = lambda b: compiled[b]({"images": data[b]})["labels"]  # noqa: E731
    name, runner = "ours_openvino", f"OpenVINO {ov.__version__} CPU"
  else:
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
    session = _ort_session(path)
    forward = lambda b: session.run(["labels"], {"images": data[b]})[0]  # noqa: E731
    name, runner = "ours_onnx", f"onnxruntime {ort.__version__}"
  int8 = quantization == "int8"
  return Impl(name + ("_int8" if int8 else ""), 513, forward, None,
              functools.partial(_ours_flops, arch), _ours_params(arch),
              f"our ONNX file{', 8-bit convolutions' if int8 else ''}, uint8 in, "
              f"labels out, {runner}")


def _ours_flops(arch: str) -> float:
  """FLOPs of our model's forward pass at 513 px (TensorFlow's profiler)."""
  model = common.deeplab_v3_plus(arch)
  return _tf_flops(lambda x: model(x, training=False), 513)


def _ours_params(arch: str) -> int:
  return int(sum(np.prod(v.shape) for v in common.deeplab_v3_plus(arch).weights))


def build_model_garden(arch: str):
  if not arch.startswith("resnet"):
    return None
  from official.core import exp_factory  # pylint: disable=g-import-not-at-top
  from official.vision.modeling import factory  # pylint: disable=g-import-not-at-top
  import tf_keras  # pylint: disable=g-import-not-at-top
  config = exp_factory.get_exp_config("seg_deeplabv3plus_pascal").task.model
  config.backbone.dilated_resnet.model_id = int(arch.split("_")[1])
  config.norm_activation.activation = "relu"
  config.norm_activation.use_sync_bn = False
  model = factory.build_segmentation_model(
      tf_keras.layers.InputSpec(shape=[None, 513, 513, 3]), config)

  def logits(x, training):
    return model(x, training=training)["logits"]
  wrapper = _Wrapped(model, logits)
  return _tf_impl("model_garden", wrapper, 513,
                  tf_keras.optimizers.SGD(0.001, momentum=0.9),
                  "plain ASPP 6,12,18 + decoder, logits at stride 4")


class _Wrapped:
  """A model whose call returns logits, with the model's variables."""

  def __init__(self, model, call):
    self._model, self._call = model, call

  def __call__(self, x, training=False):
    return self._call(x, training)

  @property
  def trainable_variables(self):
    return self._model.trainable_variables

  @property
  def weights(self):
    return self._model.weights


def build_keras_hub(arch: str):
  if arch != "resnet_50":
    return None
  import keras  # pylint: disable=g-import-not-at-top
  import keras_hub  # pylint: disable=g-import-not-at-top
  encoder = keras_hub.models.ResNetBackbone(
      input_conv_filters=[64], input_conv_kernel_sizes=[7],
      stackwise_num_filters=[64, 128, 256, 512],
      stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2],
      block_type="bottleneck_block", use_pre_activation=False)
  backbone = keras_hub.models.DeepLabV3Backbone(
      image_encoder=encoder, projection_filters=48, low_level_feature_key="P2",
      spatial_pyramid_pooling_key="P5", upsampling_size=8,
      dilation_rates=[6, 12, 18])
  model = keras_hub.models.DeepLabV3ImageSegmenter(
      backbone=backbone, num_classes=NUM_CLASSES)
  return _tf_impl("keras_hub", model, 512, keras.optimizers.SGD(0.001, momentum=0.9),
                  "output stride 32, plain ASPP, 512 px")


def _import_smp():
  """segmentation_models_pytorch without torchvision's compiled ops.

  PyPI's torchvision wheels do not load beside the CPU torch build (their
  operator registration fails), but smp only needs torchvision's
  pure-Python model classes: register an empty package so that importing
  ``torchvision.models.*`` skips ``torchvision/__init__``.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec("torchvision")
  if spec is None:
    raise ImportError("torchvision's Python files are not installed")
  package = types.ModuleType("torchvision")
  package.__path__ = [str(pathlib.Path(spec.origin).parent)]
  sys.modules.setdefault("torchvision", package)
  import segmentation_models_pytorch as smp  # pylint: disable=g-import-not-at-top
  return smp


def build_smp(arch: str):
  import torch  # pylint: disable=g-import-not-at-top
  from torch.utils import flop_counter  # pylint: disable=g-import-not-at-top
  smp = _import_smp()
  torch.set_num_threads(os.cpu_count())
  encoder = {"mobilenet_v2": "mobilenet_v2", "resnet_50": "resnet50",
             "resnet_101": "resnet101", "xception_65": "tu-xception65"}[arch]
  model = smp.DeepLabV3Plus(encoder_name=encoder, encoder_weights=None,
                            classes=NUM_CLASSES, encoder_output_stride=16)
  size = 512
  generator = torch.Generator().manual_seed(0)
  data = {b: torch.rand(b, 3, size, size, generator=generator) * 2 - 1
          for b in (1, 4, 8)}
  labels = torch.randint(0, NUM_CLASSES, (4, size, size), generator=generator)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
  loss_fn = torch.nn.CrossEntropyLoss()

  def forward(batch):
    model.eval()
    with torch.inference_mode():
      return model(data[batch])

  def step():
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(data[4]), labels)
    loss.backward()
    optimizer.step()
    return loss.item()

  def flops():
    model.eval()
    with torch.inference_mode(), flop_counter.FlopCounterMode(display=False) as c:
      model(data[1])
    return c.get_total_flops()

  params = sum(p.numel() for p in model.parameters()) + sum(
      b.numel() for n, b in model.named_buffers() if "num_batches" not in n)
  impl = Impl("smp", size, forward, step, flops, params,
              "separable ASPP 12,24,36 + decoder, 512 px")
  impl.model, impl.data = model, data  # for the ONNX export
  return impl


def build_onnxruntime(arch: str):
  """smp's DeepLabV3+ exported to ONNX (one file per batch size) and run
  by ONNX Runtime with all graph optimizations, one thread per core."""
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  smp_impl = build_smp(arch)
  sessions = {b: _ort_session(path) for b, path in _smp_onnx_files(smp_impl).items()}
  data = {b: smp_impl.data[b].numpy() for b in (1, 8)}
  impl = Impl("onnxruntime", smp_impl.size,
              lambda b: sessions[b].run(None, {"images": data[b]})[0], None,
              smp_impl.flops, smp_impl.params,
              f"smp exported to ONNX, onnxruntime {ort.__version__}, ORT_ENABLE_ALL")
  return impl


def _openvino_compiled(path, shape, precision="f32"):
  """An OpenVINO CPU model of the ONNX file ``path``, its input reshaped to
  ``shape``, the inference precision fixed (OpenVINO would pick bfloat16 on
  a CPU with native bf16), the latency hint and one thread per core."""
  import openvino as ov  # pylint: disable=g-import-not-at-top
  core = ov.Core()
  model = core.read_model(path)
  model.reshape({model.inputs[0]: ov.PartialShape(list(shape))})
  return core.compile_model(model, "CPU", {
      "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
      "INFERENCE_NUM_THREADS": os.cpu_count()})


def _smp_onnx_files(smp_impl) -> dict:
  """{batch: path} of smp's model exported to ONNX by ``torch.onnx.export``,
  one file per batch size (1 and 8)."""
  import tempfile  # pylint: disable=g-import-not-at-top

  import torch  # pylint: disable=g-import-not-at-top
  smp_impl.model.eval()
  folder = tempfile.mkdtemp(prefix="compare_onnx_")
  paths = {}
  for batch in (1, 8):
    paths[batch] = os.path.join(folder, f"b{batch}.onnx")
    with torch.inference_mode():
      torch.onnx.export(smp_impl.model, (smp_impl.data[batch],), paths[batch],
                        input_names=["images"], output_names=["logits"])
  return paths


def build_openvino(arch: str):
  """smp's DeepLabV3+ exported to ONNX (as for ``onnxruntime``), compiled
  by OpenVINO for the CPU in float32."""
  import openvino as ov  # pylint: disable=g-import-not-at-top
  smp_impl = build_smp(arch)
  paths = _smp_onnx_files(smp_impl)
  compiled = {b: _openvino_compiled(path, smp_impl.data[b].shape)
              for b, path in paths.items()}
  data = {b: smp_impl.data[b].numpy() for b in (1, 8)}
  return Impl("openvino", smp_impl.size,
              lambda b: compiled[b]({0: data[b]})[0], None,
              smp_impl.flops, smp_impl.params,
              f"smp exported to ONNX, OpenVINO {ov.__version__} CPU, f32, latency hint")


BUILDERS = {"ours": build_ours, "ours_bf16": build_ours_bf16,
            "ours_inference": build_ours_inference,
            "ours_savedmodel": build_ours_savedmodel,
            "ours_tflite": build_ours_tflite,
            "ours_tflite_int8_full": functools.partial(build_ours_tflite,
                                                       quantization="int8_full"),
            "ours_savedmodel_bf16": functools.partial(
                build_ours_savedmodel, dtype_policy="mixed_bfloat16"),
            "ours_onnx": build_ours_onnx,
            "ours_onnx_int8": functools.partial(build_ours_onnx, quantization="int8"),
            "ours_openvino": functools.partial(build_ours_onnx, runtime="openvino"),
            "ours_openvino_int8": functools.partial(build_ours_onnx, quantization="int8",
                                                    runtime="openvino"),
            "smp": build_smp, "onnxruntime": build_onnxruntime,
            "openvino": build_openvino,
            "model_garden": build_model_garden, "keras_hub": build_keras_hub}


# ---------------------------------------------------------------- children


def _seconds(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def build_all(arch, impls):
  """{name: Impl} of what builds, {name: reason} of what does not."""
  built, missing = {}, {}
  for name in impls:
    try:
      impl = BUILDERS[name](arch)
    except ImportError as e:
      missing[name] = f"not installed ({e})"
      continue
    except Exception as e:  # pylint: disable=broad-except
      if name == "ours":
        raise
      # The message's last lines say what failed (OpenVINO's come last).
      lines = [line for line in str(e).splitlines() if line.strip()]
      missing[name] = (f"failed to build: {type(e).__name__}: "
                       f"{' / '.join(lines[-3:])[:300]}")
      continue
    if impl is not None:
      built[name] = impl
  return built, missing


TORCH_IMPLS = ("smp",)
# ONNX Runtime's and OpenVINO's threads spin as torch's do: a worker for
# each.
ONNX_IMPLS = ("onnxruntime", "ours_onnx", "ours_onnx_int8")
OPENVINO_IMPLS = ("openvino", "ours_openvino", "ours_openvino_int8")
# Run in a worker with `deeplab-predict`'s runtime.
INFERENCE_IMPLS = ("ours_inference", "ours_savedmodel", "ours_savedmodel_bf16",
                   "ours_tflite", "ours_tflite_int8_full")


def worker(arch, impls):
  """A timing worker: builds ``impls``, then serves commands on stdin.

  'round' times every impl once (3 batch-1 runs, 2 batch-8 runs, 1
  training step) and answers the seconds; 'finish' answers FLOPs, parameters and
  the process's peak RSS. Between commands the worker blocks on stdin, so
  its threads sleep while another worker is timed. Answers go to the
  process's original stdout; whatever else writes there (torch's ONNX
  exporter, the TFLite runtime's C++ logs) goes to the log instead.
  """
  answers = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)
  sys.stdout = sys.stderr
  built, missing = build_all(arch, impls)
  for impl in built.values():  # warm-up: tracing, primitive creation
    for _ in range(2):
      impl.forward(1)
    impl.forward(8)
    for _ in range(2 if impl.train_step else 0):
      impl.train_step()
  print(json.dumps({"missing": missing}), file=answers, flush=True)
  for command in sys.stdin:
    if command.strip() == "round":
      times = {}
      for name, impl in built.items():
        times[name] = {"b1": [_seconds(lambda i=impl: i.forward(1)) for _ in range(3)],
                       "b8": [_seconds(lambda i=impl: i.forward(8)) for _ in range(2)],
                       "train": [_seconds(impl.train_step)] if impl.train_step else []}
      print(json.dumps(times), file=answers, flush=True)
    else:
      info = {name: dict(size=impl.size, params=impl.params, note=impl.note,
                         flops=impl.flops()) for name, impl in built.items()}
      print(json.dumps({"info": info, "peak_rss_gib": common.peak_rss_gib()}),
            file=answers, flush=True)
      return


class Worker:
  """The parent's handle on a worker process."""

  def __init__(self, arch, impls, env):
    self.log = open(f"/tmp/compare_{os.getpid()}_{arch}_{impls[0]}.log", "w")
    self.process = subprocess.Popen(
        [sys.executable, __file__, "--child=worker", f"--models={arch}",
         f"--impls={','.join(impls)}"], env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)

  def ask(self, command=None):
    if command is not None:
      self.process.stdin.write(command + "\n")
      self.process.stdin.flush()
    line = self.process.stdout.readline()
    if not line:
      self.process.wait()
      raise RuntimeError(f"worker exited with {self.process.returncode}; "
                         f"see {self.log.name}")
    return json.loads(line)


def child_memory(arch, impl_name):
  built, missing = build_all(arch, [impl_name])
  if impl_name not in built:
    return {"missing": missing}
  for _ in range(3):
    built[impl_name].train_step()
  return {"peak_rss_gib": common.peak_rss_gib()}


def measure_memory(arch, env, name):
  out = pathlib.Path(f"/tmp/compare_{os.getpid()}_memory_{arch}_{name}.json")
  command = [sys.executable, __file__, "--child=memory", f"--models={arch}",
             f"--impls={name}", f"--out={out}"]
  result = subprocess.run(command, env=env, capture_output=True, text=True)
  if result.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  return json.loads(out.read_text()).get("peak_rss_gib", float("nan"))


def compare(arch, impls, env, rounds, with_memory):
  """Alternating rounds over the TensorFlow, torch and inference workers.

  TensorFlow's and torch's thread pools each spin for a while after work;
  in one process each would steal the other's cores, so the two runtimes
  get separate processes and take turns. The inference-only implementation
  needs an environment a training process must not have, hence a third.
  """
  # deeplab.runtime imports no TensorFlow: the torch worker stays free of it.
  from deeplab import runtime  # pylint: disable=g-import-not-at-top
  cpu = runtime.this_cpu()
  train_env = {**env, **runtime.choose(cpu, "train", env).env()}
  predict_env = {**env, **runtime.choose(cpu, "predict", env).env()}
  own_workers = TORCH_IMPLS + ONNX_IMPLS + OPENVINO_IMPLS + INFERENCE_IMPLS
  tf_impls = [i for i in impls if i not in own_workers]
  groups = [(tf_impls, train_env),
            ([i for i in impls if i in TORCH_IMPLS], env),
            ([i for i in impls if i in ONNX_IMPLS], env),
            ([i for i in impls if i in OPENVINO_IMPLS], env),
            ([i for i in impls if i in INFERENCE_IMPLS], predict_env)]
  # One worker builds at a time: building Xception-65's exported forms
  # while the others build ran a 24 GiB machine out of memory.
  workers, missing = [], {}
  for group, group_env in groups:
    if group:
      workers.append(Worker(arch, group, group_env))
      missing.update(workers[-1].ask()["missing"])
  times = {}
  for _ in range(rounds):
    for w in workers:
      for name, t in w.ask("round").items():
        for key, values in t.items():
          times.setdefault(name, {}).setdefault(key, []).extend(values)
  results = {}
  for w in workers:
    finished = w.ask("finish")
    w.process.wait()
    for name, info in finished["info"].items():
      t = {k: statistics.median(v) if v else float("nan")
           for k, v in times[name].items()}
      results[name] = dict(
          size=info["size"], params=info["params"], note=info["note"],
          gflops=info["flops"] / 1e9, latency_ms=1e3 * t["b1"],
          throughput=8 / t["b8"], train_s=t["train"],
          achieved=info["flops"] * 8 / t["b8"] / 1e9,
          peak_rss_gib=(measure_memory(arch, train_env if name in tf_impls else env, name)
                        if with_memory and name not in INFERENCE_IMPLS + ONNX_IMPLS
                        + OPENVINO_IMPLS
                        else float("nan")))
  return results, missing


# ---------------------------------------------------------------- report


def accuracy_cell(name: str, quality) -> str:
  """The accuracy column: ``float32`` for a float32 row, else the label
  agreement and val mIoU change against float32 of the row's form
  (``REDUCED_PRECISION``) in ``quality`` (bench/export_quality.json)."""
  form = REDUCED_PRECISION.get(name)
  if form is None:
    return "float32"
  figures = (quality or {}).get("forms", {}).get(form)
  if figures is None:
    return f"{form}: not measured"
  return f"{figures['agreement']:.2%}, {figures['miou_change']:+.4f}"


def table(rows, quality=None) -> str:
  lines = [
      "| model | allocator | implementation | px | GFLOPs | forward b1 (ms) | "
      "b8 (img/s) | train b4 (s) | peak RSS train (GiB) | achieved GFLOP/s | "
      "speed-up b1, b8, train | labels agreeing with float32, val mIoU change |",
      "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
  for arch, allocator, name, r, ours in rows:
    if "missing" in r:
      reason = " ".join(r["missing"].split()).replace("|", "/")  # One table cell.
      lines.append(f"| {arch} | {allocator} | {name} | | | {reason} | | | | | | |")
      continue
    ratio = ""
    if name != "ours" and ours is not None:
      # Peers: how many times faster ours is. Our variants (ours_bf16,
      # ours_inference): how many times faster they are than ours.
      speedups = (r["latency_ms"] / ours["latency_ms"],
                  ours["throughput"] / r["throughput"],
                  r["train_s"] / ours["train_s"])
      if name.startswith("ours_"):
        speedups = tuple(1 / x for x in speedups)
      ratio = ", ".join(f"{x:.2f}x" for x in speedups).replace("nanx", "-")
    accuracy = accuracy_cell(name, quality) if name.startswith("ours") else "float32"
    lines.append(
        f"| {arch} | {allocator} | {name} | {r['size']} | {r['gflops']:.1f} | "
        f"{r['latency_ms']:.0f} | {r['throughput']:.2f} | {r['train_s']:.2f} | "
        f"{r['peak_rss_gib']:.2f} | {r['achieved']:.0f} | {ratio} | {accuracy} |"
        .replace(" nan |", " - |"))
  return "\n".join(lines)


# Our rows of another precision than the peers' float32, and the form of
# bench/export_quality.py whose accuracy each has (the bfloat16 SavedModel
# computes what the Keras model in mixed_bfloat16 does; OpenVINO runs the
# same int8 ONNX file as ONNX Runtime).
REDUCED_PRECISION = {"ours_bf16": "savedmodel_bfloat16",
                     "ours_savedmodel_bf16": "savedmodel_bfloat16",
                     "ours_tflite_int8_full": "tflite_int8_full",
                     "ours_onnx_int8": "onnx_int8",
                     "ours_openvino_int8": "onnx_int8"}
# A reduced-precision form counts as ours only this close to float32: label
# agreement at least MIN_AGREEMENT and val mIoU within MAX_MIOU_CHANGE.
MIN_AGREEMENT = 0.995
MAX_MIOU_CHANGE = 0.005
QUALITY = pathlib.Path(__file__).resolve().parent / "export_quality.json"


def accepted_forms(quality) -> dict:
  """{row: reason} for every ``REDUCED_PRECISION`` row: "" where its form's
  figures in ``quality`` (bench/export_quality.json's content, or None)
  are within the bounds, else why it does not count. The figures are of
  the one run export_quality.py measured (a CamVid MobileNetV2), and stand
  for every architecture.

  Example:
    >>> quality = {"forms": {"onnx_int8": {"agreement": 0.97, "miou_change": -0.01},
    ...                      "savedmodel_bfloat16": {"agreement": 0.998,
    ...                                              "miou_change": 0.001}}}
    >>> reasons = accepted_forms(quality)
    >>> reasons["ours_bf16"], reasons["ours_onnx_int8"]
    ('', 'onnx_int8 agrees on 97.00% of labels')
    >>> reasons["ours_tflite_int8_full"]
    'tflite_int8_full not measured by bench/export_quality.py'
  """
  forms = (quality or {}).get("forms", {})
  reasons = {}
  for row, form in REDUCED_PRECISION.items():
    figures = forms.get(form)
    if figures is None:
      reasons[row] = f"{form} not measured by bench/export_quality.py"
    elif figures["agreement"] < MIN_AGREEMENT:
      reasons[row] = f"{form} agrees on {figures['agreement']:.2%} of labels"
    elif abs(figures["miou_change"]) > MAX_MIOU_CHANGE:
      reasons[row] = f"{form} changes val mIoU by {figures['miou_change']:+.4f}"
    else:
      reasons[row] = ""
  return reasons


def read_quality():
  """bench/export_quality.json's content, or None before it is written."""
  return json.loads(QUALITY.read_text()) if QUALITY.exists() else None


def lead_over_peers(arch: str, results, quality=None) -> str:
  """The target measure: our best counted form (float32 rows of ours, the
  exported forms included, and the ``REDUCED_PRECISION`` rows that
  ``accepted_forms`` accepts) against the fastest peer in float32, per
  batch-1 latency, batch-8 throughput and training step; above 1 means
  ours is faster. The rows that win are named, and the reduced-precision
  rows left out, with why."""
  def best(names, key, fastest):
    values = [(results[n][key], n) for n in names
              if n in results and results[n][key] == results[n][key]]  # not nan
    return fastest(values) if values else None

  reasons = accepted_forms(quality)
  ours = [n for n in results if n.startswith("ours") and not reasons.get(n)]
  peers = [n for n in results if not n.startswith("ours")]
  parts = []
  for label, key, fastest, lead in (
      ("b1", "latency_ms", min, lambda o, p: p / o),
      ("b8", "throughput", max, lambda o, p: o / p),
      ("train", "train_s", min, lambda o, p: p / o)):
    o, p = best(ours, key, fastest), best(peers, key, fastest)
    if o and p:
      parts.append(f"{label} {lead(o[0], p[0]):.2f}x ({o[1]} vs {p[1]})")
  left_out = [f"{n} ({reasons[n]})" for n in results if reasons.get(n)]
  return (f"{arch}, our best vs the fastest peer: " + (", ".join(parts) or "no pair measured")
          + (f"; not counted: {', '.join(left_out)}" if left_out else ""))


def _row_key(line: str):
  """(model, allocator, implementation) of a table row."""
  return tuple(cell.strip() for cell in line.split("|")[1:4])


SECTION = "#### CPU: "
# Rows without a CPU heading: taken on the project's standard VM, whose
# model name they do not record.
UNRECORDED = (SECTION + "Intel Xeon with AVX-512, AVX512-BF16 and AMX, 2 cores "
              "(the project's standard VM; the CPU's model name not recorded by these rows)")


def cpu_heading(cpu) -> str:
  """The section heading of a ``deeplab.runtime.Cpu``: model, ISA, cores."""
  return f"{SECTION}{cpu.model} ({cpu.isa()}), {cpu.cores} cores"


def split_sections(block: str):
  """[(heading, table lines)] of the compare block, in order; rows before
  any heading belong to UNRECORDED."""
  sections, heading, lines = [], UNRECORDED, []
  for line in block.splitlines():
    if line.startswith(SECTION):
      if lines:
        sections.append((heading, lines))
      heading, lines = line.strip(), []
    elif line.strip():
      lines.append(line)
  if lines:
    sections.append((heading, lines))
  return sections


def merge_rows(block: str, heading: str, new_table: str) -> str:
  r"""The compare block with ``new_table``'s rows put into the section of
  ``heading`` (made if absent): a row of the same model, allocator and
  implementation there is replaced in place, the others are added; other
  CPUs' sections stay as they were, so rows of two CPUs never share a table.

  Example:
    >>> merge_rows("", "#### CPU: X (AVX2), 2 cores", "| h |\n|---|\n| a | b | c |")
    '#### CPU: X (AVX2), 2 cores\n\n| h |\n|---|\n| a | b | c |'
  """
  new_lines = new_table.splitlines()
  header, rows = new_lines[:2], new_lines[2:]
  sections = split_sections(block)
  if heading not in [h for h, _ in sections]:
    sections.append((heading, header))
  out = []
  for name, lines in sections:
    if name == heading:
      kept = lines[2:]
      fresh = {_row_key(line): line for line in rows}
      merged = [fresh.pop(_row_key(line), line) for line in kept]
      merged += [line for line in rows if _row_key(line) in fresh]
      lines = header + merged
    out.append("\n".join([name, ""] + lines))
  return "\n\n".join(out)


def write_rows(new_table: str, heading: str):
  """Puts the rows of ``new_table`` into bench/README.md's table of the
  CPU ``heading`` (``merge_rows``)."""
  common.write_readme("compare", merge_rows(common.read_readme("compare"),
                                            heading, new_table))


def main(argv):
  del argv
  if _CHILD.value == "worker":
    worker(_MODELS.value[0], _IMPLS.value)
    return
  if _CHILD.value == "memory":
    result = child_memory(_MODELS.value[0], _IMPLS.value[0])
    pathlib.Path(_OUT.value).write_text(json.dumps(result))
    return
  from deeplab import runtime  # pylint: disable=g-import-not-at-top
  heading = cpu_heading(runtime.this_cpu())
  print(heading, flush=True)
  rows = []
  for index, allocator in enumerate(_ALLOCATORS.value):
    env = allocator_env(allocator)
    if env is None:
      print(f"allocator {allocator}: library not installed, skipped")
      continue
    for arch in _MODELS.value:
      # Peak memory is measured under the first allocator setting only.
      results, missing = compare(arch, _IMPLS.value, env, _ROUNDS.value,
                                 with_memory=index == 0)
      ours = results.get("ours")
      label = f"{allocator}, {_TAG.value}" if _TAG.value else allocator
      added = [(arch, label, name,
                results.get(name) or {"missing": missing[name]}, ours)
               for name in _IMPLS.value if name in results or name in missing]
      rows.extend(added)
      quality = read_quality()
      print(table(added, quality), flush=True)
      print(lead_over_peers(arch, results, quality), flush=True)
      if _WRITE.value:  # after every model, so a cut-off run keeps its rows
        write_rows(table(added, quality), heading)
  print(table(rows, read_quality()))


if __name__ == "__main__":
  app.run(main)
