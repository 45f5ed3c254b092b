"""One's own data (a few hundred images and masks), fine-tuned from Google's
released PASCAL VOC MobileNetV2 in a time budget.

The records' dataset.json (written by every deeplab-build-* tool) gives the
class count, class names, ignore label and colormap, and the pixel counts
the class weights come from; nothing here names the dataset:

  deeplab-build-folder --images=imgs --masks=masks --num_classes=5 \
      --class_names=background,road,car,tree,sky --output_dir=records \
      --split=train
  deeplab-build-folder --images=val_imgs --masks=val_masks --num_classes=5 \
      --class_names=background,road,car,tree,sky --output_dir=records \
      --split=val
  deeplab-train --config=custom --workdir=runs/mine --mode=train_and_eval

The released weights (the model zoo's ``mobilenetv2_coco_voc_trainaug``)
are downloaded once into Keras' file cache; its logits (21 PASCAL classes)
start fresh for the records' classes.
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  # The records, as the builders name their shards (OUT/<split>-*.tfrecord);
  # their dataset.json sets config.dataset.*.
  config.data.train_pattern = "records/train-*.tfrecord"
  config.data.eval_pattern = "records/val-*.tfrecord"
  # The released model's network: MobileNetV2 (depth multiplier 1.0) with
  # image pooling and a 1x1 ASPP branch, at output stride 16.
  config.model.backbone = "mobilenet_v2"
  # The decoder stays on (the default): not in the released model, it
  # starts fresh and gives thin classes the stride-4 features the released
  # head lacks (docs/notes/camvid_recipe_decisions.md).
  config.model.atrous_rates = ()
  # Start from the model zoo's PASCAL VOC MobileNetV2 (a zoo name: see
  # docs/released_weights.md for the others).
  config.init.checkpoint = "mobilenetv2_coco_voc_trainaug"
  # The logits start fresh for the records' classes; the released ASPP and
  # image pooling are kept (only the logits are "last layers").
  config.init.initialize_last_layer = False
  config.init.last_layers_contain_logits_only = True
  # Batch 8 is too small to re-estimate batch norm statistics (the
  # original's advice): they stay the released ones.
  config.train.fine_tune_batch_norm = False
  # Every image first resized so its shorter side is 385 pixels (PASCAL VOC's
  # scale, which the released model saw), its longer side at most 641: phone
  # photos and small frames alike.
  config.data.min_resize_value = 385
  config.data.max_resize_value = 641
  # Training crops (height, width) in pixels: most of a resized image.
  config.data.crop_size = (321, 321)
  # Random scales of a training image around the resized size.
  config.data.min_scale = 0.75
  config.data.max_scale = 1.5
  # Images per step; a few hundred images make an epoch every few dozen steps.
  config.train.batch_size = 8
  # Peak learning rate of the poly schedule, as the CamVid fine-tuning
  # recipe (bench/README.md, "CamVid in 30 minutes").
  config.schedule.base_learning_rate = 0.01
  # Minutes of training: the budget ends the run and the schedule is fitted
  # to it; steps only bounds the schedule.
  config.budget.max_minutes = 30.0
  # Upper bound of the training steps (the budget ends the run first).
  config.train.steps = 100000
  # A checkpoint (and with --mode=train_and_eval a validation mIoU) every
  # this many steps.
  config.checkpoint.every = 200
  # Square roots of the median-frequency weights of the training records'
  # pixel counts (their dataset.json): rare classes count more without the
  # full weights' over-prediction (the CamVid recipes' finding).
  config.loss.class_weights = "auto_sqrt"
  return config
