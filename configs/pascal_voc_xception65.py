"""DeepLabv3+ Xception-65 on PASCAL VOC 2012 (the paper's main model).

The defaults of ``deeplab.config`` are this experiment (Xception-65, output
stride 16, ASPP rates (6, 12, 18), decoder, 513x513 crops, batch 16, 30k
steps); this file adds where ``datasets.build_voc`` writes the records.

The original model zoo's ``xception_coco_voc_trainaug`` (pretrained on
COCO, trained on train_aug) reports on VOC 2012 val: 82.20% mIoU at eval
output stride 16, single scale, no flip; 83.58% at eval output stride 8 with
scales 0.5:0.25:1.75 and left-right flip (g3doc/model_zoo.md).
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  # `deeplab-build-voc --output_dir=voc_records` writes these.
  config.data.train_pattern = "voc_records/train-*.tfrecord"
  config.data.eval_pattern = "voc_records/val-*.tfrecord"
  return config
