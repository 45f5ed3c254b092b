"""DeepLabv3 MobileNetV2 (multiplier 1.0) on PASCAL VOC 2012.

The head of the model zoo's ``mobilenetv2_coco_voc_trainaug``: image pooling
+ 1x1 ASPP branch only, no decoder, output stride 16 (75.32% VOC val mIoU
single scale in the original's model zoo).
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.backbone = "mobilenet_v2"
  config.model.atrous_rates = ()
  config.model.use_decoder = False
  return config
