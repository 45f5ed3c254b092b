"""DeepLabv3+ MobileNetV2 on CamVid (11 classes, 11 = void), CPU-sized."""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.dataset.name = "camvid"
  config.dataset.num_classes = 11
  config.dataset.ignore_label = 11
  config.model.backbone = "mobilenet_v2"
  config.model.depth_multiplier = 1.0
  config.model.output_stride = 16
  config.model.atrous_rates = ()
  # The decoder recovers thin classes (poles, signs) that OS 16 blurs.
  config.model.use_decoder = True
  # CamVid frames are 360x480; 353 = 16 * 22 + 1 and 481 = 16 * 30 + 1.
  config.data.crop_size = (353, 481)
  config.train.batch_size = 8
  config.train.steps = 10000
  return config
