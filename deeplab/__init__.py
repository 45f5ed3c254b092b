"""DeepLabv3+ for TensorFlow 2 / Keras 3.

Example:
  >>> import deeplab
  >>> from deeplab_configs import pascal_voc_xception65
  >>> model = deeplab.build_model(pascal_voc_xception65.get_config())
  >>> pretrained = deeplab.from_pretrained("xception_coco_voc_trainaug")

``import deeplab`` itself imports nothing heavy: the names below load
their modules (and TensorFlow) when first used, so that the tools can
choose TensorFlow's runtime before it starts (``deeplab.runtime``).
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {"DeepLab": "deeplab.model", "build_model": "deeplab.model",
            "ModelArgs": "deeplab.model_args",
            "Classifier": "deeplab.classifier",
            "from_pretrained": "deeplab.pretrained",
            "SegmentationLoss": "deeplab.keras_api",
            "MeanIoU": "deeplab.keras_api",
            "image_label_pairs": "deeplab.keras_api"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'deeplab' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))
