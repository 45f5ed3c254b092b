"""CamVid (11 classes) fine-tuned from Google's released PASCAL MobileNetV2.

The released ``deeplabv3_257_mv_gpu.tflite`` (MobileNetV2, depth multiplier
0.5, image pooling + 1x1 ASPP branch, trained on COCO then PASCAL VOC) is
imported first, then fine-tuned with a fresh 11-class logits layer:

  python -m deeplab.convert --config=configs/pascal_voc_mobilenetv2_dm05.py \
      --source=../shared/data/pretrained/deeplabv3_257_mv_gpu.tflite \
      --workdir=runs/pascal_dm05
  python train.py --config=configs/camvid_mobilenetv2_pascal_init.py \
      --workdir=runs/camvid_ft --config.train.init_checkpoint=runs/pascal_dm05

Batch norm stays frozen: the TFLite file has it folded into the biases, and
batch 8 is too small to re-estimate it (the original's advice). Figures in
bench/README.md.
"""

from deeplab_configs import camvid_mobilenetv2


def get_config():
  config = camvid_mobilenetv2.get_config()
  config.model.depth_multiplier = 0.5
  # The released head: no atrous branches, no decoder. Output stride 16 for
  # training speed (the released model ran at 8); its weights fit either.
  config.model.use_decoder = False
  config.train.fine_tune_batch_norm = False
  config.train.initialize_last_layer = False
  # Only the logits start fresh: the released ASPP and image pooling are
  # kept (the original's default would reset them too).
  config.train.last_layers_contain_logits_only = True
  config.train.init_checkpoint = "runs/pascal_dm05"
  # Larger crops of nearly full-size frames: the pretrained features need
  # context more than many small steps.
  config.data.crop_size = (321, 321)
  config.data.min_scale = 0.75
  config.data.max_scale = 1.25
  config.train.base_learning_rate = 0.01
  config.train.steps = 1700
  config.train.checkpoint_every = 500
  return config
