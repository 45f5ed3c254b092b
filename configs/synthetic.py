"""A tiny DeepLabv3+ on the built-in synthetic shapes: trains on a CPU fast.

The default for ``make demo`` and the tests. Same architecture family as the
real configs (MobileNetV2 backbone, ASPP with image pooling, decoder), made
narrow and small-input.
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.dataset.name = "synthetic"
  config.dataset.num_classes = 5
  config.model.backbone = "mobilenet_v2"
  config.model.depth_multiplier = 0.5
  config.model.atrous_rates = (2, 4)
  config.model.aspp_filters = 64
  config.model.decoder_filters = 64
  config.model.low_level_filters = 24
  # Weights move fast in a short run; batch norm statistics must follow
  # them within tens of steps, or evaluation (moving statistics) lags.
  config.model.batch_norm_momentum = 0.9
  config.model.backbone_batch_norm_momentum = 0.9
  config.data.crop_size = (129, 129)
  config.train.batch_size = 8
  config.train.steps = 600
  # A short run learns faster with a higher rate than the paper's 0.007.
  config.schedule.base_learning_rate = 0.02
  config.checkpoint.every = 200
  return config
