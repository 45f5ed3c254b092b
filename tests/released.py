"""The released TFLite model and real CamVid frames, shared by several tests."""

import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import REPO
from tests.conftest import shared_path

RELEASED_CONFIG = "configs/pascal_voc_mobilenetv2_dm05.py"


def released_tflite():
  return shared_path("pretrained", "deeplabv3_257_mv_gpu.tflite")


def camvid_frames(count: int) -> list:
  """The first ``count`` CamVid val frames, uint8 [360, 480, 3], with paths."""
  folder = shared_path("camvid", "val")
  paths = sorted(folder.glob("*.png"))[:count]
  return [(p, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def convert_released(workdir):
  """Runs the converter CLI on the released TFLite file into ``workdir``."""
  result = subprocess.run(
      [sys.executable, "-m", "deeplab.convert", f"--config={RELEASED_CONFIG}",
       f"--source={released_tflite()}", f"--workdir={workdir}"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout
