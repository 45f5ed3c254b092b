"""DeepLabv3+ for TensorFlow 2 / Keras 3.

Example:
  >>> import deeplab
  >>> from deeplab_configs import pascal_voc_xception65
  >>> model = deeplab.build_model(pascal_voc_xception65.get_config())
"""

from deeplab.classifier import Classifier
from deeplab.model import DeepLab
from deeplab.model import build_model
from deeplab.model_args import ModelArgs

__all__ = ["Classifier", "DeepLab", "ModelArgs", "build_model"]
