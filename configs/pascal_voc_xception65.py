"""DeepLabv3+ Xception-65 on PASCAL VOC 2012 (the paper's main model).

The original model zoo's ``xception65_coco_voc_trainaug`` reaches 82.20% VOC
val mIoU with multi-scale + flip eval (77.21% at OS 16 single scale when
trained from ImageNet on train_aug, paper Table 3).
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.dataset.name = "pascal_voc_seg"
  config.dataset.num_classes = 21
  config.dataset.ignore_label = 255
  config.model.backbone = "xception_65"
  config.model.output_stride = 16
  config.model.atrous_rates = (6, 12, 18)
  config.data.crop_size = (513, 513)
  config.train.batch_size = 16
  config.train.steps = 30000
  return config
