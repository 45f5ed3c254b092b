"""DeepLabv3+ Xception-65 on ADE20K (150 classes + 'other', ignored).

The original's ADE20K recipe (g3doc/ade20k.md): every image resized so its
sides are at most 513 pixels and of the form 16 * k + 1 (min and max resize
value 513, resize factor 16), 513x513 crops, batch 4, 150k steps, output
stride 16 with rates (6, 12, 18). The model zoo's ``xception_ade20k_train``
reports 45.65% val mIoU at eval output stride 8 with scales 0.5:0.25:1.75
and flip (g3doc/model_zoo.md).
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.dataset.name = "ade20k"
  config.dataset.num_classes = 151
  config.dataset.ignore_label = 0
  # `deeplab-build-ade20k --output_dir=ade_records` writes these.
  config.data.train_pattern = "ade_records/train-*.tfrecord"
  config.data.eval_pattern = "ade_records/val-*.tfrecord"
  config.data.min_resize_value = 513
  config.data.max_resize_value = 513
  config.data.resize_factor = 16
  # The recipe's batch of 4 trains batch norm (its default); the original
  # notes batches above 12 are needed for that, else set
  # --config.train.fine_tune_batch_norm=False.
  config.train.batch_size = 4
  config.train.steps = 150000
  return config
