"""DeepLabv3+ Xception-65 on Cityscapes (19 train ids, 769x769 crops)."""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.dataset.name = "cityscapes"
  config.dataset.num_classes = 19
  # The original Cityscapes recipe: 769x769 crops, 90k steps, batch 8.
  config.data.crop_size = (769, 769)
  config.train.batch_size = 8
  config.train.steps = 90000
  return config
