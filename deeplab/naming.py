"""The one table between our Keras weights and the original checkpoint names.

Layer names are original scopes with ``/`` written as ``.`` (see
``deeplab.layers``), so a weight's original name is its layer name with the
separator restored, plus the suffix this table gives for its layer type and
attribute. Example::

  layer 'xception_65.entry_flow.conv1_1', Conv2D.kernel
    -> 'xception_65/entry_flow/conv1_1/weights'
  layer 'aspp1_depthwise.BatchNorm', BatchNormalization.moving_mean
    -> 'aspp1_depthwise/BatchNorm/moving_mean'
"""

from __future__ import annotations

from typing import Dict, Tuple

import keras

from deeplab import layers as layers_lib

# (Keras layer class, variable name) -> original variable name suffix.
WEIGHT_SUFFIX = {
    (keras.layers.Conv2D, "kernel"): "weights",
    (keras.layers.Conv2D, "bias"): "biases",
    (keras.layers.DepthwiseConv2D, "kernel"): "depthwise_weights",
    (keras.layers.DepthwiseConv2D, "bias"): "depthwise_biases",
    (keras.layers.BatchNormalization, "gamma"): "gamma",
    (keras.layers.BatchNormalization, "beta"): "beta",
    (keras.layers.BatchNormalization, "moving_mean"): "moving_mean",
    (keras.layers.BatchNormalization, "moving_variance"): "moving_variance",
}


# The original's "last layers" (its model.get_extra_layer_scopes): the scopes
# that initialize_last_layer=False leaves out of a warm start and that
# last_layer_gradient_multiplier scales; its last_layers_contain_logits_only
# keeps only the first.
LAST_LAYER_SCOPES = ("logits", "image_pooling", "aspp", "concat_projection",
                     "decoder", "meta_architecture")


def last_layer_scopes(logits_only: bool = False) -> Tuple[str, ...]:
  """The original's last-layer scopes (``logits`` alone if ``logits_only``)."""
  return LAST_LAYER_SCOPES[:1] if logits_only else LAST_LAYER_SCOPES


def in_last_layers(name: str, logits_only: bool = False) -> bool:
  """Whether the original variable ``name`` lies under a last-layer scope
  (a prefix match, as the original's ``get_variables_to_restore(exclude)``)."""
  return name.startswith(last_layer_scopes(logits_only))


def original_scope(layer_name: str) -> str:
  """'decoder.decoder_conv0_depthwise' -> 'decoder/decoder_conv0_depthwise'."""
  return layer_name.replace(layers_lib.SCOPE_SEPARATOR, "/")


def keras_name(scope: str) -> str:
  """'decoder/decoder_conv0_depthwise' -> 'decoder.decoder_conv0_depthwise'."""
  return scope.replace("/", layers_lib.SCOPE_SEPARATOR)


def original_names(model: keras.Model) -> Dict[str, "keras.Variable"]:
  """Maps every weight of ``model`` to its original checkpoint name.

  Args:
    model: a built ``DeepLab`` (or any model made of ``deeplab.layers``).

  Returns:
    ``{original_name: variable}`` covering every weight of the model.

  Raises:
    ValueError: a weight has no entry in ``WEIGHT_SUFFIX`` or two weights
      map to one name (a naming bug, never a user error).
  """
  names: Dict[str, "keras.Variable"] = {}
  for layer in model.layers:
    for variable in layer.weights:
      suffix = next((suffix for (cls, attr), suffix in WEIGHT_SUFFIX.items()
                     if isinstance(layer, cls) and variable.name == attr),
                    None)
      if suffix is None:
        raise ValueError(
            f"No original name for weight {variable.path!r} of layer type "
            f"{type(layer).__name__}; add it to deeplab.naming.WEIGHT_SUFFIX.")
      name = f"{original_scope(layer.name)}/{suffix}"
      if name in names:
        raise ValueError(f"Two weights map to the original name {name!r}.")
      names[name] = variable
  return names
