"""DeepLabv3 MobileNetV2 (multiplier 1.0) on Cityscapes.

The head of the model zoo's ``mobilenetv2_coco_cityscapes_trainfine``:
image pooling + 1x1 ASPP branch only, no decoder, output stride 16, trained
on 769x769 crops as the original's Cityscapes recipe.
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.dataset.name = "cityscapes"
  config.dataset.num_classes = 19
  config.model.backbone = "mobilenet_v2"
  config.model.atrous_rates = ()
  config.model.use_decoder = False
  config.data.crop_size = (769, 769)
  config.train.batch_size = 8
  config.train.steps = 90000
  return config
