"""Batch norm folded into the convolutions: the inference form of a model.

At inference a batch norm is the affine map ``y = s * (x - mean) + beta``
with ``s = gamma / sqrt(variance + epsilon)``, so the convolution before it
can absorb it: kernel ``k * s`` per output channel, bias
``beta - s * mean``. The folded model has no batch norm layers, only
convolutions with biases followed by ReLUs, which TensorFlow's graph
optimizer fuses (both forms timed in docs/notes/speed_work.md, step 3;
``bench/export_speed.py`` times the exported one). Evaluation, prediction and export use this form.
"""

from __future__ import annotations

import keras
import numpy as np

BATCH_NORM_SUFFIX = ".BatchNorm"


def _scale_and_shift(norm: keras.layers.BatchNormalization):
  gamma, beta, mean, variance = (np.asarray(w, np.float64)
                                 for w in norm.get_weights())
  scale = gamma / np.sqrt(variance + norm.epsilon)
  return scale, beta - scale * mean


def fold_batch_norm(model: keras.Model) -> keras.Model:
  """The same function as ``model`` at inference, batch norm folded away.

  Args:
    model: a ``DeepLab`` or ``Classifier``; an already folded one is
      returned as it is.

  Returns:
    A model of the same class with ``fold_batch_norm=True`` whose outputs equal
    ``model(x, training=False)`` up to float32 rounding.

  Raises:
    ValueError: the model's normalization layers are not batch norms that
      follow a convolution (a custom ``batch_norm_factory``).
  """
  if model.args.fold_batch_norm:
    return model
  folded = type(model)(model.args.replace(
      fold_batch_norm=True, sync_batch_norm=False, batch_norm_factory=None))
  source = {layer.name: layer for layer in model.layers}
  used = set()
  for layer in folded.layers:
    if not layer.weights:
      continue
    norm = source.get(layer.name + BATCH_NORM_SUFFIX)
    if norm is None:
      layer.set_weights(source[layer.name].get_weights())
      continue
    if not isinstance(norm, keras.layers.BatchNormalization):
      raise ValueError(f"{norm.name} is a {type(norm).__name__}, which "
                       "cannot be folded")
    scale, shift = _scale_and_shift(norm)
    kernel = np.asarray(source[layer.name].get_weights()[0], np.float64)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
      kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
      kernel = kernel * scale
    layer.set_weights([kernel.astype(np.float32), shift.astype(np.float32)])
    used.add(norm.name)
  unfolded = [layer.name for layer in model.layers
              if isinstance(layer, keras.layers.BatchNormalization)
              and layer.name not in used]
  if unfolded:
    raise ValueError(f"batch norms without a convolution to fold into: {unfolded}")
  return folded


def inference_model(model: keras.Model) -> keras.Model:
  """The fastest inference form: folded, unless a custom normalization
  factory makes folding meaningless (then ``model`` itself)."""
  if model.args.batch_norm_factory is not None:
    return model
  return fold_batch_norm(model)
