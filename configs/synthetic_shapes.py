"""A tiny backbone classifier on the built-in synthetic shapes: backbone
pretraining (``config.model.task='classification'``) that runs on a CPU in
a minute, for the tests and the README.

``deeplab-make-synthetic --task=classification`` writes its records (4
classes, 48x48 images). The backbone is the synthetic segmentation
config's (MobileNetV2 x0.5), so a run of this config is a
``config.model.backbone_weights`` for ``configs/synthetic.py``.
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.task = "classification"
  config.dataset.name = "synthetic_shapes"
  config.dataset.num_classes = 4
  config.model.backbone = "mobilenet_v2"
  config.model.depth_multiplier = 0.5
  # The original's ImageNet networks run at output stride 32.
  config.model.output_stride = 32
  # Weights move fast in a short run; batch norm statistics must follow.
  config.model.backbone_batch_norm_momentum = 0.9
  config.data.crop_size = (48, 48)
  config.data.eval_batch_size = 16
  config.train.steps = 200
  config.schedule.base_learning_rate = 0.05
  config.checkpoint.every = 100
  return config
