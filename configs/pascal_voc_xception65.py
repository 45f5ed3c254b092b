"""DeepLabv3+ Xception-65 on PASCAL VOC 2012 (the paper's main model).

The defaults of ``deeplab.config`` are this experiment (Xception-65, output
stride 16, ASPP rates (6, 12, 18), decoder, 513x513 crops, batch 16, 30k
steps); this file adds where ``datasets.build_voc`` writes the records.

The original model zoo's ``xception65_coco_voc_trainaug`` reaches 82.20% VOC
val mIoU with multi-scale + flip eval (77.21% at OS 16 single scale when
trained from ImageNet on train_aug, paper Table 3).
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  # `python -m datasets.build_voc --output_dir=voc_records` writes these.
  config.data.train_pattern = "voc_records/train-*.tfrecord"
  config.data.eval_pattern = "voc_records/val-*.tfrecord"
  return config
