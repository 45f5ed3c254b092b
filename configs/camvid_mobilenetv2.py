"""DeepLabv3+ MobileNetV2 on CamVid (11 classes, 11 = void), CPU-sized."""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.dataset.name = "camvid"
  config.dataset.num_classes = 11
  config.dataset.ignore_label = 11
  config.model.backbone = "mobilenet_v2"
  config.model.atrous_rates = ()
  config.data.train_pattern = "camvid_records/train-*.tfrecord"
  config.data.eval_pattern = "camvid_records/val-*.tfrecord"
  # Trained from scratch on a 2-core CPU in 30 minutes (bench/README.md):
  # 257x257 crops (16 * 16 + 1) of frames scaled by 0.5-1.0 keep a step
  # cheap while seeing whole objects; evaluation runs
  # on full 360x480 frames.
  config.data.crop_size = (257, 257)
  config.data.max_scale = 1.0
  config.train.batch_size = 8
  config.train.steps = 600
  config.train.max_minutes = 30.0
  config.train.base_learning_rate = 0.02
  config.train.checkpoint_every = 250
  # Median-frequency weights of the CamVid train masks, printed by
  # `python -m datasets.inspect camvid_records --dataset=camvid`: rare thin
  # classes (pole, sign, pedestrian, bicyclist) count in mIoU as much as road.
  config.train.class_weights = (0.2793, 0.2017, 4.7865, 0.1490, 1.0000,
                                0.4217, 3.8467, 1.9736, 0.7889, 6.3747,
                                8.8587)
  # A from-scratch backbone with batch 8 needs statistics that follow it.
  config.model.batch_norm_momentum = 0.99
  return config
