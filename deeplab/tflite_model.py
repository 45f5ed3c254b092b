"""A released DeepLab TFLite file read as a model: its architecture, its weights.

The DeepLab TFLite files people download (the TFLite segmentation example,
Coral, MLPerf, TF Hub) are MobileNetV2 DeepLabv3 or v3+ graphs with batch
norm folded into the convolutions, stored in float32, float16 (constants
behind DEQUANTIZE ops) or quantized (uint8/int8, per tensor or per output
channel). Their tensor names are not reliable (converters merge and rename
them: ``std.constant37``, ``...Conv2D_Fold;...weights_quant/...``), so the
file is read by its graph: every convolution is identified by its place in
the network (the stem, unit k's expand/depthwise/project conv, ``aspp0``,
``image_pooling``, the atrous branches, ``concat_projection``, the decoder's
projection and convs, ``logits/semantic``), and named with the original
checkpoint's scope (``deeplab.naming``). The same walk reads the
architecture: depth multiplier (channel counts), output stride (strides of
the backbone, atrous units as dilation or SPACE_TO_BATCH_ND), ASPP branches
and rates, decoder and its stride, class count, input size, and how its
bilinear resizes map pixels (``align_corners``).

``read_file`` returns a ``DeepLabFile``; ``DeepLabFile.config()`` is an
experiment config that reproduces it, and ``DeepLabFile.notes`` say where
the file computes something our config cannot express (a uint8 input's
normalisation, quantized activations, an ArgMax output, resizes of a mapping
other than ours, an input size that evaluation cannot use as its crop).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

from deeplab import config as config_lib
from deeplab import inference
from deeplab.backbones import mobilenet_v2

# Datasets the original released models were trained on, by class count.
RELEASED_DATASETS = {21: "pascal_voc_seg", 19: "cityscapes", 151: "ade20k"}

_OPS = {code: name for name, code in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")}
_TYPES = {code: name for name, code in vars(schema.TensorType).items()
          if not name.startswith("_")}
_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16,
                "INT32": np.int32, "UINT8": np.uint8, "INT64": np.int64,
                "INT16": np.int16, "INT8": np.int8}
_ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}
_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")
# Ops that carry an activation through unchanged (requantized or cast).
_PASSTHROUGH = ("QUANTIZE", "DEQUANTIZE")


class NotDeepLabError(ValueError):
  """The file is not a TFLite file, or not a DeepLab model we can read."""


@dataclasses.dataclass
class Conv:
  """One convolution of the file, batch norm folded.

  Attributes:
    depthwise: a depthwise convolution (else a plain one).
    kernel: TFLite layout: [out, h, w, in]; depthwise [1, h, w, channels].
    bias: per output channel.
    scale: per output channel, applied before the bias (a batch norm the
      converter left unfolded, as a MUL after an atrous conv), or None.
    stride: the convolution's stride.
    dilation: its rate (dilation factor or SPACE_TO_BATCH_ND block).
    source: the canonical tensor it reads.
    output: the canonical tensor it writes.
    kinds: what each of its constants was stored as (``float16``,
      ``uint8 per-tensor``, ...), by role (``kernels``, ``biases``, ``scales``).
  """
  depthwise: bool
  kernel: np.ndarray
  bias: np.ndarray
  scale: Optional[np.ndarray]
  stride: int
  dilation: int
  source: int
  output: int
  kinds: Dict[str, str]

  @property
  def filters(self) -> int:
    return self.kernel.shape[-1] if self.depthwise else self.kernel.shape[0]

  @property
  def size(self) -> int:
    return self.kernel.shape[1]


@dataclasses.dataclass
class DeepLabFile:
  """What a DeepLab TFLite file holds, in our terms.

  Attributes:
    path: the file.
    model: ``ModelArgs`` fields the file shows (``backbone``,
      ``depth_multiplier``, ``output_stride``, ``num_classes``, the head's,
      ``align_corners``).
    input_size: (height, width) of the file's input.
    convs: ``{original scope: Conv}`` of every convolution.
    notes: where the file differs from what our config expresses.
  """
  path: str
  model: Dict[str, object]
  input_size: Tuple[int, int]
  convs: Dict[str, Conv]
  notes: List[str]

  def crop_size(self) -> Tuple[int, int]:
    """The evaluation crop reproducing the file: its input size, or the
    next size evaluation aligns to (``inference.padded_size``:
    ``output_stride * k + 1``, ``output_stride * k`` without aligned
    corners) where the input size has another form."""
    return tuple(inference.padded_size(s, self.model["output_stride"],
                                       self.model["align_corners"])
                 for s in self.input_size)

  def dataset_name(self) -> str:
    """The dataset table's entry for the class count of the original's
    released models, else a user dataset named after the file."""
    name = RELEASED_DATASETS.get(self.model["num_classes"])
    if name:
      return name
    stem = os.path.splitext(os.path.basename(self.path))[0]
    return re.sub(r"[^A-Za-z0-9_]", "_", stem)

  def config(self):
    """An experiment config whose model is the file's and whose evaluation
    runs the file's input size (``crop_size``)."""
    config = config_lib.base_config()
    config.dataset.name = self.dataset_name()
    for field, value in self.model.items():
      section = "dataset" if field == "num_classes" else "model"
      config_lib.set_field(config, f"{section}.{field}", value)
    config.data.crop_size = self.crop_size()
    config.eval.crop_size = self.crop_size()
    config_lib.validate(config)
    return config

  def contradictions(self, config) -> Dict[str, Tuple[object, object]]:
    """``{config key: (config's value, file's value)}`` of every field the
    file shows that ``config`` sets otherwise."""
    found = {}
    for field, value in self.model.items():
      key = f"{'dataset' if field == 'num_classes' else 'model'}.{field}"
      section, name = key.split(".")
      given = config[section][name]
      if isinstance(given, (list, tuple)):
        given = tuple(given)
      if given != value:
        found[f"config.{key}"] = (given, value)
    return found

  def dequantized(self) -> Dict[str, int]:
    """``{'<storage> <role>': count}`` of the constants read in a form other
    than float32 (``{'uint8 per-tensor kernels': 55, ...}``)."""
    counts = collections.Counter()
    for conv in self.convs.values():
      for role, kind in conv.kinds.items():
        if kind != "float32":
          counts[f"{kind} {role}"] += 1
    return dict(sorted(counts.items()))


def _op_names(model: schema.ModelT) -> List[str]:
  """The builtin op name of each of a flatbuffer's operator codes (``CUSTOM``
  for the others)."""
  return [_OPS.get(max(c.builtinCode, c.deprecatedBuiltinCode), "CUSTOM")
          for c in model.operatorCodes]


def op_table(data: bytes) -> List[Tuple[str, Tuple[str, ...], Tuple[str, ...]]]:
  """The ops of a TFLite file's graphs, in order: (builtin name, its input
  tensor types, its output tensor types), as the file's flatbuffer holds
  them (read without an interpreter, so no delegate hides an op).

  Args:
    data: the file's bytes.
  """
  model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
  names = _op_names(model)
  table = []
  for graph in model.subgraphs:
    types = [_TYPES[t.type] for t in graph.tensors]
    for op in graph.operators or []:
      table.append((names[op.opcodeIndex],
                    tuple(types[t] for t in op.inputs if t >= 0),
                    tuple(types[t] for t in op.outputs)))
  return table


class _Graph:
  """The first subgraph of a TFLite flatbuffer: tensors, ops, constants."""

  def __init__(self, data: bytes, where: str):
    self.where = where
    if len(data) < 8 or data[4:8] != b"TFL3":
      raise NotDeepLabError(f"{where} is not a TFLite file (no 'TFL3' "
                            "identifier at byte 4)")
    try:
      model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    except Exception as e:  # pylint: disable=broad-except
      raise NotDeepLabError(
          f"{where} is not a readable TFLite file ({type(e).__name__}: "
          f"{str(e)[:160]}); a truncated or damaged download?") from None
    if not model.subgraphs:
      raise NotDeepLabError(f"{where} holds no graph")
    self.data = data
    self._constants = {}
    self.buffers = model.buffers or []
    graph = model.subgraphs[0]
    self.tensors = graph.tensors or []
    self.inputs = list(graph.inputs)
    self.outputs = list(graph.outputs)
    names = _op_names(model)
    self.ops = [(names[op.opcodeIndex], list(op.inputs), list(op.outputs),
                 op.builtinOptions)
                for op in graph.operators or []]
    self.producer = {}
    self.consumers = collections.defaultdict(list)
    for index, (_, inputs, outputs, _) in enumerate(self.ops):
      for t in outputs:
        self.producer[t] = index
      for t in inputs:
        if t >= 0:
          self.consumers[t].append(index)

  def name(self, t: int) -> str:
    name = self.tensors[t].name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name

  def shape(self, t: int) -> Tuple[int, ...]:
    return tuple(int(s) for s in self.tensors[t].shape)

  def _raw(self, t: int) -> Optional[np.ndarray]:
    tensor = self.tensors[t]
    buffer = self.buffers[tensor.buffer] if tensor.buffer < len(self.buffers) else None
    if buffer is None:
      return None
    if buffer.data is not None and len(buffer.data):
      raw = np.asarray(buffer.data, np.uint8).tobytes()
    elif buffer.offset > 1:  # Stored after the flatbuffer.
      if buffer.offset + buffer.size > len(self.data):
        raise NotDeepLabError(f"{self.where} is truncated: tensor "
                              f"{self.name(t)!r} lies past its end")
      raw = self.data[buffer.offset:buffer.offset + buffer.size]
    else:
      return None
    dtype = _NUMPY_TYPES.get(_TYPES.get(tensor.type))
    if dtype is None:
      raise NotDeepLabError(f"{self.where}: tensor {self.name(t)!r} has type "
                            f"{_TYPES.get(tensor.type, tensor.type)}, which "
                            "no DeepLab weight has")
    value = np.frombuffer(raw, dtype)
    if value.size != int(np.prod(self.shape(t))):
      raise NotDeepLabError(f"{self.where}: tensor {self.name(t)!r} holds "
                            f"{value.size} values for shape {self.shape(t)}")
    return value.reshape(self.shape(t))

  def constant(self, t: int) -> Optional[Tuple[np.ndarray, str]]:
    """(float32 value, how it was stored) of a constant tensor (through a
    DEQUANTIZE op), or None for an activation."""
    if t not in self._constants:
      self._constants[t] = self._dequantized(t)
    return self._constants[t]

  def _dequantized(self, t: int) -> Optional[Tuple[np.ndarray, str]]:
    raw = self._raw(t)
    if raw is None:
      op = self.producer.get(t)
      if op is not None and self.ops[op][0] == "DEQUANTIZE":
        found = self.constant(self.ops[op][1][0])
        if found is not None:
          return found
      return None
    quantization = self.tensors[t].quantization
    scales = None if quantization is None else quantization.scale
    if raw.dtype.kind in "iu" and scales is not None and len(scales):
      scale = np.asarray(scales, np.float64)
      zero_point = np.asarray(quantization.zeroPoint if quantization.zeroPoint
                              is not None else [0], np.float64)
      if scale.size > 1:  # Per channel along quantizedDimension.
        axis = quantization.quantizedDimension
        shape = [1] * raw.ndim
        shape[axis] = scale.size
        scale, zero_point = scale.reshape(shape), zero_point.reshape(
            shape if zero_point.size > 1 else [1] * raw.ndim)
      kind = f"{raw.dtype.name} per-{'channel' if scale.size > 1 else 'tensor'}"
      return ((raw.astype(np.float64) - zero_point) * scale).astype(
          np.float32), kind
    return raw.astype(np.float32), raw.dtype.name

  def canonical(self, t: int) -> int:
    """The tensor an activation carries through QUANTIZE/DEQUANTIZE ops."""
    while True:
      op = self.producer.get(t)
      if op is None or self.ops[op][0] not in _PASSTHROUGH or \
          self.constant(t) is not None:
        return t
      t = self.ops[op][1][0]

  def uses(self, t: int) -> List[int]:
    """Ops reading canonical tensor ``t``, through QUANTIZE/DEQUANTIZE."""
    found = []
    for op in self.consumers.get(t, []):
      if self.ops[op][0] in _PASSTHROUGH:
        found.extend(self.uses(self.ops[op][2][0]))
      else:
        found.append(op)
    return found


def _options(options, name: str, default=1):
  return getattr(options, name, default) if options is not None else default


def _convs(graph: _Graph) -> Dict[int, Conv]:
  """Every convolution of the graph, by the canonical tensor it writes
  (atrous ones unwrapped from SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND, an
  unfolded batch norm's MUL and ADD of constants taken in)."""
  convs = {}
  for op_name, inputs, outputs, options in graph.ops:
    if op_name not in _CONVS:
      continue
    kernel = graph.constant(inputs[1])
    if kernel is None:
      raise NotDeepLabError(f"{graph.where}: convolution "
                            f"{graph.name(outputs[0])!r} has no constant kernel")
    kinds = {"kernels": kernel[1]}
    filters = kernel[0].shape[-1 if op_name == "DEPTHWISE_CONV_2D" else 0]
    bias = np.zeros(filters, np.float32)
    if len(inputs) > 2 and inputs[2] >= 0:
      bias, kinds["biases"] = graph.constant(inputs[2])
    source = graph.canonical(inputs[0])
    dilation = _options(options, "dilationHFactor")
    producer = graph.producer.get(source)
    output = outputs[0]
    if producer is not None and graph.ops[producer][0] == "SPACE_TO_BATCH_ND":
      block = graph.constant(graph.ops[producer][1][1])
      dilation = int(block[0][0]) if block is not None else dilation
      source = graph.canonical(graph.ops[producer][1][0])
      after = graph.uses(output)
      if len(after) == 1 and graph.ops[after[0]][0] == "BATCH_TO_SPACE_ND":
        output = graph.ops[after[0]][2][0]
    scale = None
    for op_kind in ("MUL", "ADD"):
      after = graph.uses(output)
      if len(after) != 1 or graph.ops[after[0]][0] != op_kind:
        break
      constant = graph.constant(graph.ops[after[0]][1][1])
      if constant is None or constant[0].shape != (filters,):
        break
      if op_kind == "MUL":
        scale, kinds["scales"] = constant
        bias = bias * scale
      else:
        bias = bias + constant[0]
        kinds.setdefault("biases", constant[1])
      output = graph.ops[after[0]][2][0]
    convs[graph.canonical(output)] = Conv(
        depthwise=op_name == "DEPTHWISE_CONV_2D", kernel=kernel[0],
        bias=np.asarray(bias, np.float32), scale=scale,
        stride=_options(options, "strideH"), dilation=int(dilation),
        source=source, output=graph.canonical(output), kinds=kinds)
  return convs


class _Reader:
  """The walk through a DeepLab MobileNetV2 graph (module docstring)."""

  def __init__(self, graph: _Graph):
    self.graph = graph
    self.convs = _convs(graph)
    self.by_source = collections.defaultdict(list)
    for conv in self.convs.values():
      self.by_source[conv.source].append(conv)
    self.named: Dict[str, Conv] = {}
    self.notes: List[str] = []

  def refuse(self, reason: str):
    raise NotDeepLabError(f"{self.graph.where} is not a DeepLab model this "
                          f"converter reads: {reason}")

  def op_uses(self, t: int, kind: str) -> List[int]:
    return [op for op in self.graph.uses(t) if self.graph.ops[op][0] == kind]

  def feeds_concat(self, conv: Conv) -> bool:
    return bool(self.op_uses(conv.output, "CONCATENATION"))

  def take(self, scope: str, source: int, depthwise: bool, size: int = 1,
           stride: Optional[int] = None, what: str = "") -> Conv:
    """The one conv of the wanted form reading ``source``, named ``scope``
    (a conv whose output feeds a concatenation, the decoder's projection,
    is passed over when another fits)."""
    found = [c for c in self.by_source.get(source, [])
             if c.depthwise == depthwise and c.size == size and
             (stride is None or c.stride == stride) and
             all(c is not n for n in self.named.values())]
    if len(found) > 1:
      found = [c for c in found if not self.feeds_concat(c)] or found[:1]
    if not found:
      kind = "depthwise" if depthwise else f"{size}x{size}"
      what = what or "where MobileNetV2 has one"
      self.refuse(f"no {kind} convolution for {scope} ({what}) reads "
                  f"{self.graph.name(source)!r}")
    self.named[scope] = found[0]
    return found[0]

  def residual(self, unit_input: int, output: int) -> int:
    for op in self.op_uses(output, "ADD"):
      inputs = [self.graph.canonical(t) for t in self.graph.ops[op][1]]
      if unit_input in inputs:
        return self.graph.canonical(self.graph.ops[op][2][0])
    return output

  def backbone(self, image: int) -> Tuple[int, int, Dict[int, int]]:
    """Names the MobileNetV2 convs; returns (output tensor, output stride,
    {unit: depthwise output tensor})."""
    root = mobilenet_v2.ROOT
    stem = self.take(f"{root}/Conv", image, False, 3, 2,
                     "a 3x3 stride-2 stem, as MobileNetV2's")
    stride, x = 2, stem.output
    depthwise_outputs = {}
    for index in range(len(mobilenet_v2.UNITS)):
      scope = f"{root}/expanded_conv" + (f"_{index}" if index else "")
      y = x
      if index:
        y = self.take(f"{scope}/expand", y, False).output
      depthwise = self.take(f"{scope}/depthwise", y, True, 3)
      stride *= depthwise.stride
      depthwise_outputs[index] = depthwise.output
      project = self.take(f"{scope}/project", depthwise.output, False)
      x = self.residual(x, project.output)
    return x, stride, depthwise_outputs

  def depth_multiplier(self) -> float:
    channels = self.named[f"{mobilenet_v2.ROOT}/expanded_conv_16/project"].filters
    multiplier = round(channels / mobilenet_v2.UNITS[-1][1], 4)
    divisible_by = 8 if multiplier == 1.0 else 1
    expected = [mobilenet_v2.make_divisible(c * multiplier, divisible_by)
                for _, c, _ in mobilenet_v2.UNITS]
    found = [self.named[f"{mobilenet_v2.ROOT}/expanded_conv"
                        f"{f'_{i}' if i else ''}/project"].filters
             for i in range(len(mobilenet_v2.UNITS))]
    if found != expected:
      self.refuse(f"MobileNetV2's unit widths {found} fit no depth "
                  f"multiplier (with {multiplier}: {expected})")
    return multiplier

  def aspp(self, features: int) -> Tuple[Dict[str, object], int]:
    """Names the ASPP convs; returns the model fields and its output."""
    uses = self.graph.uses(features)
    pools = [op for op in uses if self.graph.ops[op][0] in
             ("AVERAGE_POOL_2D", "MEAN")]
    fields: Dict[str, object] = {"image_pooling": bool(pools)}
    branches = {}
    if pools:
      pooled = self.graph.canonical(self.graph.ops[pools[0]][2][0])
      conv = self.take("image_pooling", pooled, False,
                       what="after the image pooling")
      resized = [self.graph.ops[op][2][0] for op in
                 self.op_uses(conv.output, "RESIZE_BILINEAR")]
      branches[resized[0] if resized else conv.output] = "image_pooling"
    aspp0 = self.take("aspp0", features, False, what="ASPP's 1x1 branch")
    fields["aspp_filters"] = aspp0.filters
    branches[aspp0.output] = "aspp0"
    atrous = [c for c in self.by_source.get(features, []) if c.dilation > 1
              and all(c is not n for n in self.named.values())]
    rates, separable = [], True
    for i, conv in enumerate(atrous, start=1):
      if conv.depthwise:
        self.named[f"aspp{i}_depthwise"] = conv
        out = self.take(f"aspp{i}_pointwise", conv.output, False).output
      else:
        separable = False
        self.named[f"aspp{i}"] = conv
        out = conv.output
      rates.append(conv.dilation)
      branches[out] = f"aspp{i}"
    concats = {self.graph.canonical(self.graph.ops[op][2][0]): op
               for t in branches for op in self.op_uses(t, "CONCATENATION")}
    if len(branches) > 1:
      if len(concats) != 1:
        self.refuse("the ASPP branches are not concatenated once")
      (output, op), = concats.items()
      order = [branches.get(self.graph.canonical(t)) for t in self.graph.ops[op][1]]
      if order != list(branches.values()):
        self.refuse(f"the ASPP concatenation's order is {order}; the "
                    f"original's is {list(branches.values())}")
    else:
      output = aspp0.output
    if rates:
      order = sorted(range(len(rates)), key=lambda i: rates[i])
      if order != list(range(len(rates))):
        self.refuse(f"ASPP rates {rates} are not in increasing order")
      fields["aspp_separable"] = separable
    fields["atrous_rates"] = tuple(rates)
    projection = self.take("concat_projection", output, False,
                           what="ASPP's projection")
    return fields, projection.output

  def decoder(self, x: int, stride_of: Dict[int, int]
              ) -> Tuple[Dict[str, object], int]:
    """Names the decoder's convs (any number of stages); returns the model
    fields and the decoder's output."""
    strides, fields = [], {"use_decoder": False}
    while True:
      resizes = [self.graph.canonical(self.graph.ops[op][2][0])
                 for op in self.op_uses(x, "RESIZE_BILINEAR")]
      concats = [op for r in resizes for op in self.op_uses(r, "CONCATENATION")]
      if not concats:
        break
      inputs = [self.graph.canonical(t) for t in self.graph.ops[concats[0]][1]]
      projections = [self.convs[t] for t in inputs if t in self.convs]
      if len(inputs) != 2 or len(projections) != 1 or \
          projections[0].source not in stride_of:
        self.refuse("a decoder stage does not concatenate upsampled features "
                    "with one projection of backbone features")
      projection = projections[0]
      stride = stride_of[projection.source]
      suffix = f"_{len(strides)}" if strides else ""
      self.named[f"decoder/feature_projection0{suffix}"] = projection
      concat = self.graph.canonical(self.graph.ops[concats[0]][2][0])
      first = [c for c in self.by_source.get(concat, [])]
      if len(first) != 1:
        self.refuse("the decoder's first conv is not found after its concat")
      separable = first[0].depthwise
      y = concat
      for i in range(2):
        if separable:
          y = self.take(f"decoder/decoder_conv{i}{suffix}_depthwise", y, True,
                        3).output
          y = self.take(f"decoder/decoder_conv{i}{suffix}_pointwise", y,
                        False).output
        else:
          repeat = f"decoder_conv0{suffix}"
          y = self.take(f"decoder/{repeat}/{repeat}_{i + 1}", y, False,
                        3).output
      fields.update(use_decoder=True, decoder_separable=separable,
                    low_level_filters=projection.filters,
                    decoder_filters=self.convs[y].filters)
      strides.append(stride)
      x = y
    if strides:
      fields["decoder_output_strides"] = tuple(strides)
    return fields, x


def read_file(path: str) -> DeepLabFile:
  """Reads a DeepLab TFLite file's architecture and weights.

  Args:
    path: the ``.tflite`` file (any file system TensorFlow reads).

  Returns:
    The ``DeepLabFile``.

  Raises:
    FileNotFoundError: no such file.
    NotDeepLabError (a ValueError): not a TFLite file, a truncated one, or
      the graph of another network, with the reason.
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"weights source {path!r} does not exist")
  with tf.io.gfile.GFile(path, "rb") as f:
    graph = _Graph(f.read(), repr(str(path)))
  reader = _Reader(graph)
  if len(graph.inputs) != 1 or len(graph.outputs) != 1:
    reader.refuse(f"it has {len(graph.inputs)} inputs and "
                  f"{len(graph.outputs)} outputs; DeepLab has one image in "
                  "and one segmentation out")
  image = graph.inputs[0]
  shape = graph.shape(image)
  if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
    reader.refuse(f"its input has shape {list(shape)}, not an RGB image "
                  "[1, height, width, 3]")
  output_shape = graph.shape(graph.outputs[0])
  if tuple(output_shape[1:3]) != tuple(shape[1:3]):
    reader.refuse(f"its output has shape {list(output_shape)}, not a "
                  f"segmentation of its {shape[1]}x{shape[2]} input")
  features, output_stride, depthwise_outputs = reader.backbone(image)
  height = graph.shape(features)[1]
  if -(-shape[1] // output_stride) != height:
    reader.refuse(f"its {height}x{height} features do not fit output stride "
                  f"{output_stride} of its {shape[1]}x{shape[2]} input")
  model = {"backbone": "mobilenet_v2",
           "depth_multiplier": reader.depth_multiplier(),
           "output_stride": output_stride}
  head, x = reader.aspp(features)
  model.update(head)
  stride_of = {depthwise_outputs[unit]: stride for stride, unit in
               mobilenet_v2.DECODER_END_POINT_UNITS.items()}
  decoder, x = reader.decoder(x, stride_of)
  model.update(decoder)
  logits = reader.take("logits/semantic", x, False, what="the logits")
  model["num_classes"] = logits.filters
  modes = _resize_modes(graph)
  # Aligned corners unless no resize of the file aligns them.
  model["align_corners"] = not modes or any(a for a, _ in modes)
  extra = [graph.name(c.output) for c in reader.convs.values()
           if all(c is not n for n in reader.named.values())]
  if extra:
    reader.refuse(f"{len(extra)} convolutions have no place in DeepLab: "
                  f"{extra[:5]}")
  released = DeepLabFile(str(path), model, (shape[1], shape[2]), reader.named,
                         [])
  released.notes = _differences(graph, released, modes)
  return released


def _resize_modes(graph: _Graph):
  """``{(align_corners, half_pixel_centers)}`` of the file's bilinear resizes
  whose input is larger than 1x1 (from 1x1 every mapping is the same)."""
  return {(bool(_options(options, "alignCorners", False)),
           bool(_options(options, "halfPixelCenters", False)))
          for op_name, inputs, _, options in graph.ops
          if op_name == "RESIZE_BILINEAR" and graph.shape(inputs[0])[1] > 1}


def _differences(graph: _Graph, released: DeepLabFile, modes) -> List[str]:
  """What the file computes that our config cannot express."""
  notes = []
  image = graph.tensors[graph.inputs[0]]
  quantization = image.quantization
  if _TYPES.get(image.type) in ("UINT8", "INT8") and quantization is not None \
      and quantization.scale is not None and len(quantization.scale):
    scale = float(quantization.scale[0])
    zero_point = int(quantization.zeroPoint[0])
    top = 255 if _TYPES[image.type] == "UINT8" else 127
    worst = max(abs((q - zero_point) * scale - (q / 127.5 - 1.0))
                for q in (0, top))
    notes.append(
        f"input normalisation: the file reads {_TYPES[image.type].lower()} "
        f"pixels as (x - {zero_point}) * {scale:g}; ours as x / 127.5 - 1 "
        f"(no config field changes it; the largest difference is {worst:.4f})")
  quantized = [t for t in range(len(graph.tensors))
               if _TYPES.get(graph.tensors[t].type) in ("UINT8", "INT8")
               and graph.constant(t) is None]
  if quantized:
    notes.append(f"activations: {len(quantized)} of the file's activations "
                 "are quantized (uint8/int8); ours are float32, so labels "
                 "differ where quantization rounding flips them")
  kinds = {op[0] for op in graph.ops}
  if "ARG_MAX" in kinds:
    notes.append("output: the file ends in ArgMax (labels); ours gives "
                 "logits, and the export's labels are their argmax")
  ours = (released.model["align_corners"], False)
  if modes - {ours}:
    described = ", ".join(
        f"align_corners={a} half_pixel_centers={h}" for a, h in sorted(modes))
    notes.append(
        f"resize: the file's bilinear resizes use {described}; ours all use "
        f"align_corners={ours[0]} half_pixel_centers=False "
        "(config.model.align_corners sets align_corners; half_pixel_centers "
        "is always False)")
  height, width = released.input_size
  crop = released.crop_size()
  if crop != released.input_size:
    form = ("output_stride * k + 1" if released.model["align_corners"] else
            "output_stride * k")
    notes.append(
        f"padding: the file's {height}x{width} input is not of the form "
        f"{form}, which evaluation pads to: ours pads {height}x{width} "
        f"images to {crop[0]}x{crop[1]} (mean pixel, bottom and right) and "
        "image pooling averages over that padding; the file runs them "
        "unpadded")
  return notes
