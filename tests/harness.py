"""The test harness: model checks (config round trip, shapes, a training
step, save/reload), small models, training runs of the CLI on synthetic
records, and the released model and CamVid frames of ../shared.

Every test module takes its helpers from here (fixtures from conftest.py);
no test module imports another, nor anything under bench/.
"""

from __future__ import annotations

import collections
import json
import math
import os
import pathlib
import socket
import subprocess
import sys
import time

import keras
import numpy as np
from PIL import Image
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.grappler import tf_optimizer

from deeplab import config as config_lib
from deeplab import model as model_lib
from deeplab import naming
from deeplab import run_dir
from deeplab.data import dataset_table
from deeplab.data import image_files
from tests.conftest import REPO
from tests.conftest import SHARED
from tests.conftest import shared_path

# --- Models. ---


def small_model(backbone, output_stride=16, **kwargs):
  """The real backbone with a narrow head, for fast tests."""
  kwargs.setdefault("atrous_rates", (1, 2))
  return model_lib.DeepLab(
      num_classes=3, backbone=backbone, output_stride=output_stride,
      aspp_filters=16, decoder_filters=16, low_level_filters=8,
      depth_multiplier=0.35 if backbone == "mobilenet_v2" else 1.0,
      multi_grid=(1, 2, 4), **kwargs)


def randomize_batch_norm(model: keras.Model, rng: np.random.Generator):
  """Gives every batch norm random statistics, as training would, so that
  folding and quantization are checked on something other than identity."""
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n),
                         rng.normal(0, 0.1, n), rng.uniform(0.5, 2, n)])
  return model


def random_images(shape, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


def expected_size(size: int, stride: int) -> int:
  """Spatial size after ``log2(stride)`` stride-2 layers with 'same' borders."""
  for _ in range(int(math.log2(stride))):
    size = math.ceil(size / 2)
  return size


def check_forward_shape(model: keras.Model, height: int, width: int):
  logits = model(random_images((2, height, width, 3)), training=False)
  assert tuple(logits.shape) == (2, height, width, model.args.num_classes)
  assert logits.dtype == "float32"
  assert np.all(np.isfinite(np.asarray(logits)))


def check_config_round_trip(model: model_lib.DeepLab):
  config = model.get_config()
  rebuilt = model_lib.DeepLab.from_config(config)
  assert rebuilt.get_config() == config
  assert rebuilt.count_params() == model.count_params()
  assert [w.path for w in rebuilt.weights] == [w.path for w in model.weights]
  rebuilt.set_weights(model.get_weights())
  x = random_images((1, 33, 41, 3), seed=1)
  np.testing.assert_allclose(rebuilt(x, training=False),
                             model(x, training=False), atol=1e-5)


def check_save_reload(model: keras.Model, path):
  x = random_images((1, 33, 33, 3), seed=2)
  expected = np.asarray(model(x, training=False))
  model.save(path)
  restored = keras.models.load_model(path, compile=False)
  assert isinstance(restored, model_lib.DeepLab)
  assert restored.get_config() == model.get_config()
  np.testing.assert_allclose(restored(x, training=False), expected, atol=1e-5)


def check_training_step(model: keras.Model, size: int = 33):
  """One SGD step on random labels: finite loss, every weight gets a gradient,
  every kernel moves, batch norm statistics update.

  (Tiny gradients of batch norm gammas can round to no change in float32, so
  connectivity is checked on the gradients and movement on the kernels.)
  """
  rng = np.random.default_rng(3)
  x = random_images((2, size, size, 3), seed=4)
  y = rng.integers(0, model.args.num_classes, (2, size, size)).astype("int32")
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
  kernels = [w for w in model.trainable_weights if "kernel" in w.path]
  kernels_before = [np.array(w) for w in kernels]
  stats = [w for w in model.non_trainable_weights if "moving_mean" in w.path]
  stats_before = [np.array(w) for w in stats]
  with tf.GradientTape() as tape:
    loss = loss_fn(y, model(x, training=True))
  grads = tape.gradient(loss, model.trainable_weights)
  assert np.isfinite(float(loss))
  dead = [w.path for g, w in zip(grads, model.trainable_weights)
          if g is None or not np.any(np.asarray(g))]
  assert not dead, f"weights without gradient: {dead}"
  optimizer.apply(grads, model.trainable_weights)
  unmoved = [w.path for b, w in zip(kernels_before, kernels)
             if np.array_equal(b, np.asarray(w))]
  assert not unmoved, f"kernels that did not move in a step: {unmoved}"
  assert all(not np.array_equal(b, np.asarray(w))
             for b, w in zip(stats_before, stats)), "batch norm stats frozen"


# --- Graph fusion as the CPU runtime does it. ---


def grappler_op_counts(model, size=65):
  """Op counts of the folded model's forward graph after grappler, as the
  CPU runtime would run it (every node placed on the CPU)."""
  function = tf.function(lambda x: model(x, training=False))
  concrete = function.get_concrete_function(
      tf.TensorSpec([1, size, size, 3], tf.float32))
  graph_def = concrete.graph.as_graph_def()
  for node in graph_def.node:
    node.device = "/device:CPU:0"
  graph = tf.Graph()
  with graph.as_default():
    tf.import_graph_def(graph_def, name="")
    meta_graph = tf.compat.v1.train.export_meta_graph(graph_def=graph_def, graph=graph)
  meta_graph.collection_def["train_op"].node_list.value.extend(
      [t.name.split(":")[0] for t in concrete.outputs])
  optimized = tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta_graph)
  return collections.Counter(node.op for node in optimized.node)


def onednn_enabled() -> bool:
  """Whether TensorFlow runs its oneDNN CPU kernels in this process (it
  turns them on by itself only on CPUs with AVX512-VNNI/BF16 or AMX, or
  with TF_ENABLE_ONEDNN_OPTS=1)."""
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
  return bool(_pywrap_util_port.IsMklEnabled())


def check_fusion(ops, onednn: bool):
  """Every convolution is fused with its bias where the runtime can fuse
  it: Conv2D always (both runtimes have _FusedConv2D), depthwise only under
  oneDNN (TensorFlow's own kernels have no fused depthwise form). Atrous
  convolutions, which TensorFlow runs between SpaceToBatchND and
  BatchToSpaceND, stay apart from their bias."""
  assert ops["_FusedConv2D"] > 0, ops
  atrous = ops["SpaceToBatchND"]
  assert ops["Conv2D"] <= atrous, ops
  if onednn:
    assert ops["_FusedDepthwiseConv2dNative"] > 0, ops
    assert ops["Conv2D"] + ops["DepthwiseConv2dNative"] <= atrous, ops


# --- Training runs of train.py on synthetic records. ---


def make_synthetic_records(out, train_size=160, val_size=24, png_dir=None,
                           image_size=161, num_shards=1):
  """Writes synthetic train/val records into ``out``."""
  command = [sys.executable, "-m", "deeplab.cli", "make-synthetic",
             f"--output_dir={out}", f"--train_size={train_size}",
             f"--val_size={val_size}", f"--num_shards={num_shards}",
             f"--image_size={image_size}"]
  if png_dir:
    command.append(f"--png_dir={png_dir}")
  subprocess.run(command, cwd=REPO, check=True, capture_output=True)
  return out


def make_synthetic_classification_records(out, train_size=320, val_size=64):
  """Writes the synthetic classification set (4 shape classes, 48x48
  images, ImageNet record layout) into ``out``, one shard per split."""
  subprocess.run([sys.executable, "-m", "deeplab.cli", "make-synthetic",
                  "--task=classification", f"--output_dir={out}",
                  f"--train_size={train_size}", f"--val_size={val_size}",
                  "--num_shards=1"], cwd=REPO, check=True, capture_output=True)
  return out


def tiny_overrides(records, **extra):
  """A deterministic few-step run of the synthetic config at 65x65."""
  values = {
      "data.train_pattern": f"{records}/train-*.tfrecord",
      "data.eval_pattern": f"{records}/val-*.tfrecord",
      "data.crop_size": "(65,65)", "data.deterministic": "True",
      "data.shuffle_buffer": "16", "train.batch_size": "4",
      "train.steps": "12", "checkpoint.every": "4",
      "train.steps_per_loop": "2", "eval.num_summary_images": "0",
  }
  values.update(extra)
  return [f"--config.{k}={v}" for k, v in values.items()]


class Launched:
  """A CLI process whose output goes to a file (a full pipe would block it)."""

  def __init__(self, command, log_path, env):
    self.log_path = log_path
    with open(log_path, "w") as log:
      self.process = subprocess.Popen(command, cwd=REPO, env=env, text=True,
                                      stdout=log, stderr=subprocess.STDOUT)

  def output(self) -> str:
    return self.log_path.read_text()

  def wait(self, timeout=600):
    try:
      code = self.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.process.kill()
      raise AssertionError(f"ran over {timeout}s:\n{self.output()[-5000:]}") from None
    return code, self.output()

  def assert_running(self, deadline):
    assert time.time() < deadline, f"timed out:\n{self.output()[-5000:]}"
    assert self.process.poll() is None, f"exited:\n{self.output()[-5000:]}"


def run_train(workdir, overrides, env=None, wait=True, extra_flags=(),
              config="configs/synthetic.py"):
  """``train.py`` on ``workdir``; (exit code, output), or the ``Launched``."""
  command = [sys.executable, "train.py", f"--workdir={workdir}", *extra_flags,
             *overrides]
  if config:
    command.insert(2, f"--config={config}")
  workdir.parent.mkdir(parents=True, exist_ok=True)
  index = len(list(workdir.parent.glob(f"{workdir.name}.*.log")))
  launched = Launched(command, workdir.parent / f"{workdir.name}.{index}.log", env)
  return launched.wait() if wait else launched


def free_ports(count):
  """``count`` TCP ports free on localhost (for TF_CONFIG clusters)."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def launch_workers(workdir, overrides, count=2, extra_flags=(),
                   worker_flags=None):
  """``count`` train.py workers of one MultiWorkerMirroredStrategy job on
  localhost (worker 0 is the chief); ``worker_flags[i]`` are flags of worker
  i alone. Returns their ``Launched``."""
  cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(count)]}
  launched = []
  for index in range(count):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
    flags = ["--config.distribution.strategy=multi_worker", *extra_flags,
             *(worker_flags or {}).get(index, ())]
    launched.append(run_train(workdir, overrides, env=env, wait=False,
                              extra_flags=flags))
  return launched


def run_cli(*args, timeout=600, env_overrides=None):
  """Runs ``python ARGS...`` in the repo; returns the CompletedProcess."""
  env = dict(os.environ, **env_overrides) if env_overrides else None
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, env=env)


def config_with(records, **extra):
  """The synthetic config with ``tiny_overrides`` applied, in this process."""
  from deeplab_configs import synthetic  # pylint: disable=g-import-not-at-top
  config = synthetic.get_config()
  for flag in tiny_overrides(records, **extra):
    key, value = flag[len("--config."):].split("=", 1)
    current = dict(config_lib.leaves(config))[key]
    config_lib.set_field(
        config, key,
        tuple(int(v) for v in value.strip("()").split(","))
        if isinstance(current, tuple) else
        (value == "True") if isinstance(current, bool) else type(current)(value))
  return config


def final_weights(workdir, config, checkpoint=None):
  """The run's latest weights (or those of ``checkpoint``, a prefix
  relative to ``workdir``) by original name, and their step."""
  model, step = run_dir.restore_model(
      config, str(workdir), checkpoint and str(workdir / checkpoint))
  return {n: np.asarray(v) for n, v in naming.original_names(model).items()}, step


# --- The released model and real CamVid frames (../shared). ---

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
  result = run_cli("-m", "deeplab.cli", "convert", f"--config={RELEASED_CONFIG}",
                   f"--source={released_tflite()}", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


# The five classes of docs/own_data.md's folder, as CamVid ids; CamVid's
# other classes are unlabelled there (255).
OWN_CLASSES = {"sky": 0, "building": 1, "road": 3, "tree": 5, "car": 8}


def own_photos(root) -> pathlib.Path:
  """``root/my_photos/{train,val}/{images,masks}`` as a user's folder: four
  train and two val JPEG photos stored turned (EXIF orientation 6, as a
  phone saves a portrait shot) and palette PNG masks of the five
  ``OWN_CLASSES`` drawn upright. The frames are CamVid's (../shared) or,
  without it, synthetic shapes of the same size."""
  folder = pathlib.Path(root) / "my_photos"
  lookup = np.full(256, 255, np.uint8)
  for new, old in enumerate(OWN_CLASSES.values()):
    lookup[old] = new
  for split, count in (("train", 4), ("val", 2)):
    for i, (image, ids) in enumerate(_own_frames(split, count)):
      # Orientation 6: turn 90 degrees clockwise to view.
      save_image(folder / split / "images" / f"{split}_{i}.jpg", np.rot90(image),
                 orientation=6, quality=95)
      save_image(folder / split / "masks" / f"{split}_{i}.png", lookup[ids], "P",
                 dataset_table.pascal_colormap())
  return folder


def _own_frames(split, count):
  """(RGB image, CamVid ids) pairs of ``split``, 360x480."""
  images = SHARED / "camvid" / split
  if images.exists():
    paths = sorted(images.glob("*.png"))[:count]
    return [(np.asarray(Image.open(p).convert("RGB")),
             np.asarray(Image.open(SHARED / "camvid" / (split + "annot") / p.name)))
            for p in paths]
  rng = np.random.default_rng(0 if split == "train" else 1)
  return [_image_and_mask(rng, list(OWN_CLASSES.values()), 360, 480)
          for _ in range(count)]


# --- Raw datasets in their distribution layouts, tiny. ---


def save_image(path, array, mode=None, palette=None, orientation=None, **kwargs):
  """Writes ``array`` to ``path`` (folders made) as Pillow's ``mode``, with
  ``palette`` (rows of RGB) for a palette image and ``orientation`` as its
  EXIF orientation tag; ``kwargs`` go to ``Image.save``. Returns ``path``."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  image = Image.fromarray(np.ascontiguousarray(array), mode=mode)
  if palette is not None:
    image.putpalette(np.asarray(palette, np.uint8).reshape(-1).tolist())
  if orientation is not None:
    exif = Image.Exif()
    exif[image_files.EXIF_ORIENTATION] = orientation
    kwargs["exif"] = exif
  image.save(path, **kwargs)
  return path


def _image_and_mask(rng, ids, height=65, width=81):
  """A noisy RGB image and a mask of horizontal bands of ``ids``."""
  image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  bands = np.array(ids, np.uint8)[np.arange(height) * len(ids) // height]
  return image, np.repeat(bands[:, None], width, axis=1)


def fake_raw_datasets(root, per_split=3) -> dict:
  """Writes CamVid, PASCAL VOC 2012, Cityscapes, ADE20K, ImageNet (two
  class folders) and a plain image/mask folder in their distribution
  layouts under ``root``, with
  ``per_split`` images per split; returns ``{name: folder}``."""
  rng = np.random.default_rng(0)
  root = pathlib.Path(root)
  voc = root / "VOCdevkit" / "VOC2012"
  for split in ("train", "val"):
    stems = [f"2007_{split}_{i}" for i in range(per_split)]
    for stem in stems:
      image, mask = _image_and_mask(rng, (0, 15, 255, 7))
      save_image(voc / "JPEGImages" / f"{stem}.jpg", image)
      save_image(voc / "SegmentationClass" / f"{stem}.png", mask, "P",
                 dataset_table.pascal_colormap())
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / f"{split}.txt").write_text("\n".join(stems) + "\n")
  (voc / "ImageSets" / "Segmentation" / "trainval.txt").write_text(
      (voc / "ImageSets" / "Segmentation" / "train.txt").read_text()
      + (voc / "ImageSets" / "Segmentation" / "val.txt").read_text())
  for split in ("train", "val"):
    for i in range(per_split):
      image, mask = _image_and_mask(rng, (0, 3, 11, 8))
      # Named by recording as CamVid's frames are: val is one recording.
      stem = f"0006R0_f{i:05d}" if split == "val" else f"0016E5_{i:05d}"
      save_image(root / "CamVid" / split / f"{stem}.png", image)
      save_image(root / "CamVid" / f"{split}annot" / f"{stem}.png", mask)
      stem = f"city_{i:06d}_000019"
      image, mask = _image_and_mask(rng, (7, 8, 0, 26))
      save_image(root / "cityscapes" / "leftImg8bit" / split / "city" /
                 f"{stem}_leftImg8bit.png", image)
      save_image(root / "cityscapes" / "gtFine" / split / "city" /
                 f"{stem}_gtFine_labelIds.png", mask)
      folder = {"train": "training", "val": "validation"}[split]
      image, mask = _image_and_mask(rng, (1, 0, 150, 12))
      save_image(root / "ADEChallengeData2016" / "images" / folder /
                 f"ADE_{folder}_{i}.jpg", image)
      save_image(root / "ADEChallengeData2016" / "annotations" / folder /
                 f"ADE_{folder}_{i}.png", mask)
      image, mask = _image_and_mask(rng, (0, 1, 2, 4))
      save_image(root / "imgs" / f"{split}_{i}.png", image)
      save_image(root / "masks" / f"{split}_{i}.png", mask)
  # ImageNet's train images as distributed (a folder per synset), and its
  # validation images sorted the same way.
  for split in ("train", "val"):
    for synset in ("n01440764", "n01443537"):
      for i in range(per_split):
        image, _ = _image_and_mask(rng, (0,))
        save_image(root / "ILSVRC2012" / split / synset / f"{synset}_{i}.JPEG", image)
  return {"voc": voc, "camvid": root / "CamVid", "cityscapes": root / "cityscapes",
          "ade20k": root / "ADEChallengeData2016", "images": root / "imgs",
          "masks": root / "masks"}


# --- The command blocks of README.md and docs/. ---


def readme_pages() -> list:
  """README.md, then every page under docs/, as paths relative to the
  repository (the pages whose command blocks the suite runs)."""
  docs = sorted(p.relative_to(REPO) for p in (REPO / "docs").rglob("*.md"))
  return [pathlib.Path("README.md")] + docs


def readme_fenced_blocks(page="README.md"):
  """The fenced blocks of ``page`` as ``(language, text)`` pairs, in order
  (language "" where the fence names none)."""
  blocks, language, block = [], None, []
  for line in (REPO / page).read_text().splitlines():
    if language is None:
      if line.strip().startswith("```"):
        language, block = line.strip()[3:].strip(), []
    elif line.strip() == "```":
      blocks.append((language, "\n".join(block) + "\n"))
      language = None
    else:
      block.append(line)
  return blocks


def readme_code_blocks(language: str, page="README.md"):
  """The ```LANGUAGE blocks of ``page`` (README.md or a page of docs/), as
  text."""
  return [text for lang, text in readme_fenced_blocks(page) if lang == language]


def readme_command_blocks(page="README.md"):
  """The ```sh blocks of ``page`` as lists of commands (continuation lines
  joined, comments dropped), each command a list of arguments."""
  import shlex  # pylint: disable=g-import-not-at-top
  blocks = []
  for text in readme_code_blocks("sh", page):
    block, pending = [], ""
    for line in text.splitlines():
      pending += line.rstrip()
      if pending.endswith("\\"):
        pending = pending[:-1] + " "
        continue
      words = shlex.split(pending, comments=True)
      pending = ""
      if words:
        block.append(words)
    blocks.append(block)
  return blocks


# --- Original checkpoints. ---


def write_tf1_checkpoint(prefix, arrays):
  """A name-based (TF1) checkpoint holding ``{name: array}``, as the
  original's ``tf.train.Saver`` writes them."""
  names = sorted(arrays)
  tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names,
                    shape_and_slices=[""] * len(names),
                    tensors=[tf.constant(arrays[n]) for n in names])
