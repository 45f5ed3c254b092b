"""DeepLabv3 MobileNetV2 with depth multiplier 0.5, output stride 8.

The architecture of the released ``deeplabv3_257_mv_gpu.tflite`` (model zoo
``mobilenetv2_dm05_coco_voc_trainaug``): image pooling + 1x1 ASPP branch,
no decoder. Used for the numerical-parity test against that file.
"""

from deeplab import config as config_lib


def get_config():
  config = config_lib.base_config()
  config.model.backbone = "mobilenet_v2"
  config.model.depth_multiplier = 0.5
  config.model.output_stride = 8
  config.model.atrous_rates = ()
  config.model.use_decoder = False
  # 257 = 8 * 32 + 1, the released TFLite model's input size.
  config.data.crop_size = (257, 257)
  return config
