"""Xception-65 pretrained on ImageNet-1k: the paper's backbone pretraining.

DeepLabv3+ (Chen et al., ECCV 2018, section 4.1, "ImageNet-1k
pretraining") trains its modified aligned Xception on ImageNet-1k with
299x299 images, momentum 0.9, an initial learning rate of 0.05 decayed by
0.94 every 2 epochs, and weight decay 4e-5, on 50 GPUs with a batch of 32
each. Each setting below and where it comes from:

- config.model.task = 'classification', backbone xception_65 (the
  default): the paper's pretrained network. Its head (global average
  pooling, dropout, ``xception_65/logits``) is DeepLab's
  ``core/xception.py`` ImageNet network.
- config.model.output_stride = 32: ``core/xception.py`` classifies at
  output stride 32 (``output_stride=None``, no atrous convolution).
- config.model.dropout_rate = 0.5: ``core/xception.py``'s
  ``keep_prob=0.5`` before the logits.
- config.dataset.name = 'imagenet', num_classes = 1001: the dataset
  table's entry. Ids 1..1000 are ILSVRC-2012's classes as the widely used
  ImageNet-to-TFRecord scripts label them and 0 a background class no
  image has, as in the original's released ImageNet checkpoints (their
  logits have 1001 channels); config.data.label_offset keeps its default
  0 for those records.
- config.data.crop_size = (299, 299): the paper.
- Input augmentation (``deeplab.data.classification``): slim's
  ``inception_preprocessing`` crops (area 5-100%, aspect ratio 3/4-4/3),
  flip, and the evaluation's 0.875 central crop (config.data.central_crop
  default); its color distortion is not applied.
- config.train.batch_size = 1600: the paper's 50 GPUs x 32. The paper
  trains asynchronously; our training is synchronous (tf.distribute), with
  this global batch split over the replicas.
- config.optimizer.momentum 0.9 (the default) and config.optimizer.nesterov =
  True: the paper's "Nesterov momentum optimizer with momentum = 0.9".
- config.schedule.name = 'exponential', base_learning_rate = 0.05,
  decay_rate 0.94 and decay_epochs 2.0 (both defaults, slim's): the
  paper's "initial learning rate = 0.05, rate decay = 0.94 every 2
  epochs"; staircase, as slim's ``train_image_classifier``.
- config.schedule.epoch_examples = 1281167: ILSVRC-2012's training images
  (the dataset table's 'imagenet' train split).
- config.optimizer.weight_decay 4e-5 (the default): the paper.
- Batch norm: Xception's decay 0.9997 and epsilon 1e-3 (the defaults,
  ``xception_arg_scope``).

- config.data.train_pattern / eval_pattern: the shard names the widely
  used ImageNet-to-TFRecord script writes (train-NNNNN-of-01024,
  validation-NNNNN-of-00128) in a folder imagenet_records.

Not given by the paper, so left at the defaults and to be set per run:
the number of steps (config.train.steps).
"""

from deeplab import config as config_lib
from deeplab.data import dataset_table


def get_config():
  config = config_lib.base_config()
  config.model.task = "classification"
  config.model.output_stride = 32
  config.model.dropout_rate = 0.5
  config.dataset.name = "imagenet"
  config.dataset.num_classes = dataset_table.DATASETS["imagenet"].num_classes
  config.data.crop_size = (299, 299)
  config.data.train_pattern = "imagenet_records/train-*"
  config.data.eval_pattern = "imagenet_records/validation-*"
  config.train.batch_size = 50 * 32
  config.optimizer.nesterov = True
  config.schedule.name = "exponential"
  config.schedule.base_learning_rate = 0.05
  config.schedule.epoch_examples = dataset_table.DATASETS["imagenet"].splits["train"]
  return config
