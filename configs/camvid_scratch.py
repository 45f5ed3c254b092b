"""DeepLabv3+ MobileNetV2 on CamVid (11 classes, 11 = void) from scratch, in
a CPU time budget.

  python train.py --config=configs/camvid_scratch.py --workdir=runs/camvid_scratch \
      --config.data.train_pattern='camvid_records/train-*' \
      --config.data.eval_pattern='camvid_records/val-*'

Trains for ``max_minutes`` (the learning rate schedule is fitted to them,
so a slower machine makes fewer steps, not a worse schedule). Each choice
below was measured on the val split; the table of what was tried is in
bench/README.md ("CamVid in 30 minutes").
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.dataset.name = "camvid"
  config.dataset.num_classes = 11
  config.dataset.ignore_label = 11
  config.model.backbone = "mobilenet_v2"
  # Image pooling and the 1x1 branch only: atrous 3x3 branches cost time a
  # short run cannot repay.
  config.model.atrous_rates = ()
  # The statistics must follow weights that move fast from random ones:
  # with the backbone's own 0.997 the moving statistics still lag hundreds
  # of steps in, and evaluation (which uses them) predicts road everywhere
  # (0.03 val mIoU at step 400, against 0.38 with 0.9).
  config.model.batch_norm_momentum = 0.9
  config.model.backbone_batch_norm_momentum = 0.9
  config.data.train_pattern = "camvid_records/train-*.tfrecord"
  config.data.eval_pattern = "camvid_records/val-*.tfrecord"
  # Crops of 289x385 (the frames are 360x480) of frames scaled by 0.5-2.0.
  config.data.crop_size = (289, 385)
  config.train.batch_size = 8
  # The budget ends the run; steps only bounds the schedule.
  config.train.max_minutes = 30.0
  config.train.steps = 100000
  config.train.checkpoint_every = 200
  config.train.keep_checkpoints = 20
  # Adam's per-weight steps learn from random weights far faster than SGD in
  # a few hundred steps; decoupled decay 0.01 per unit learning rate.
  config.train.optimizer = "adamw"
  config.train.base_learning_rate = 1e-3
  config.train.weight_decay = 0.01
  # The square roots of the median-frequency weights of the CamVid train
  # masks (both are printed by `deeplab-inspect
  # 'camvid_records/train-*' --dataset=camvid`): rare thin classes (pole, sign, pedestrian) still
  # count more than road, but the full weights made the model paint them
  # over buildings and fences (found 74-87% of the time, 9-23% precise):
  # val mIoU 0.520 -> 0.607 from scratch, 0.572 -> 0.638 from the released
  # model (bench/README.md, "CamVid in 30 minutes").
  config.train.class_weights = (0.5285, 0.4491, 2.1878, 0.3860, 1.0000,
                                0.6494, 1.9613, 1.4048, 0.8882, 2.5248,
                                2.9764)
  return config
