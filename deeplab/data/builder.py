"""Turns (image, mask) file pairs into sharded records, checking every file.

The dataset builders in ``datasets/`` only list their pairs and say how
their masks encode classes (a ``LabelSpec``); reading, conversion, checks,
parallel encoding, progress and atomic shard writing happen here, once.

What happens to imperfect input (each conversion is counted in the report's
notes; each problem is listed with the file name at the end, and with
``strict=True`` the first problem stops the build before any shard is
renamed into place):

- RGBA / LA images: alpha dropped. Grayscale: replicated to RGB. Palette
  images: expanded to RGB. 16-bit images: scaled to 8 bits (value / 257).
  Converted images are stored as PNG; RGB JPEG/PNG files are stored as they
  are, byte for byte.
- Unreadable or truncated image or mask, image without a mask, mask of
  another size than its image: problem; the pair is left out.
- Images and masks with an EXIF orientation are turned upright, each by
  its own tag, before the size check; a turned image is stored as PNG.
- Masks are read by ``deeplab.data.masks`` (palette, grey, RGB colour,
  0/255 binary, 16-bit ids). A mask it cannot read (JPEG, RGB without a
  color table, ambiguous 0/255): problem; the pair is left out.
- Mask values that are neither a class id nor the ignore label (or colors
  not in the color table): problem; those pixels become the ignore label.
- A split whose image count differs from the dataset table: problem.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import os
import random
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from deeplab import progress
from deeplab.data import audit
from deeplab.data import image_files
from deeplab.data import masks
from deeplab.data import records


@dataclasses.dataclass(frozen=True)
class Sample:
  """One image and its mask.

  Attributes:
    image_path: the image file (or, with ``image_data``, its name in reports).
    mask_path: the mask file; None when no mask was found.
    image_data: encoded image bytes held in memory (TFDS, synthetic data)
      instead of a file.
    mask_data: encoded mask bytes held in memory.
  """
  image_path: str
  mask_path: Optional[str]
  image_data: Optional[bytes] = None
  mask_data: Optional[bytes] = None


@dataclasses.dataclass(frozen=True)
class LabelSpec:
  """How masks encode classes.

  Attributes:
    num_classes: valid ids are 0..num_classes-1.
    ignore_label: the value of unlabelled pixels (also valid in masks).
    color_table: for RGB color masks, the RGB color of each class id (index
      = id); colors not in it are problems. Ignored for id masks, except that
      an RGB mask needs it.
    ignore_color: for RGB masks, the color meaning ``ignore_label``.
    mask_format: the masks' form (``masks.MASK_FORMATS``); ``auto``
      recognises each file's.
    id_map: ``(source_value, class_id)`` pairs applied to id masks, e.g.
      Cityscapes labelIds -> train ids; values not in the map become
      ``ignore_label`` (that is the map's purpose, not a problem).
    require_mask: an image without mask is a problem (False for test splits,
      whose records then carry no label, as the original's).
  """
  num_classes: int
  ignore_label: int
  color_table: Optional[Tuple[Tuple[int, int, int], ...]] = None
  ignore_color: Optional[Tuple[int, int, int]] = None
  mask_format: str = "auto"
  id_map: Optional[Tuple[Tuple[int, int], ...]] = None
  require_mask: bool = True


@dataclasses.dataclass
class EncodedSample:
  """What a worker made of one sample; ``label_pixels``: pixels per label
  value (0..255) of its mask as written, None without a mask."""
  index: int
  example: Optional[bytes]
  problems: List[str]
  notes: List[str]
  label_pixels: Optional[np.ndarray] = None


@dataclasses.dataclass
class BuildReport:
  """Outcome of building one split.

  Attributes:
    split: its name.
    written: records written.
    shards: the shard files.
    problems: every file with an issue, and what became of it.
    notes: ``{conversion: files converted so}``.
    label_counts: the pixel counts of the masks as written (``masks``: the
      records with a mask), which ``deeplab.data.description`` records.
  """
  split: str
  written: int = 0
  shards: List[str] = dataclasses.field(default_factory=list)
  problems: List[str] = dataclasses.field(default_factory=list)
  notes: Dict[str, int] = dataclasses.field(default_factory=dict)
  label_counts: audit.Audit = dataclasses.field(default_factory=audit.Audit)

  def summary(self) -> str:
    lines = [f"split {self.split!r}: {self.written} records in "
             f"{len(self.shards)} shards"]
    for note, count in sorted(self.notes.items()):
      lines.append(f"  converted: {note} ({count} files)")
    if self.problems:
      lines.append(f"  {len(self.problems)} problems:")
      lines.extend(f"    {p}" for p in self.problems)
    return "\n".join(lines)


class BuildError(ValueError):
  """A problem with the input data, raised in strict mode."""


def _open(path: str, data: Optional[bytes] = None) -> Image.Image:
  image = Image.open(io.BytesIO(data if data is not None else image_files.read_bytes(path)))
  image.load()  # Decodes fully: truncated files fail here, not later.
  return image


def _to_rgb(image: Image.Image, notes: List[str]) -> Image.Image:
  mode = image.mode
  if mode == "RGB":
    return image
  if mode in ("RGBA", "LA", "PA"):
    notes.append("alpha channel dropped")
  elif mode in ("L", "1"):
    notes.append("grayscale replicated to RGB")
  elif mode == "P":
    notes.append("palette image expanded to RGB")
  elif mode.startswith("I"):
    notes.append("16-bit image scaled to 8 bits (value / 257)")
    values = np.asarray(image, dtype=np.float64)
    gray = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([gray] * 3, axis=-1))
  else:
    notes.append(f"{mode} image converted to RGB")
  return image.convert("RGB")


def encode_image(path: str, notes: List[str],
                 data: Optional[bytes] = None) -> Tuple[bytes, str, int, int]:
  """Reads an image; returns (bytes, 'jpeg'|'png', height, width)."""
  if data is None:
    data = image_files.read_bytes(path)
  stored = _open(path, data)
  image = image_files.upright(stored)
  if image is not stored:
    notes.append("EXIF orientation turned upright (stored as PNG)")
  fmt = (image.format or "").lower()
  rgb = _to_rgb(image, notes)
  if rgb is stored and fmt in ("jpeg", "png"):
    return data, fmt, image.height, image.width
  buffer = io.BytesIO()
  rgb.save(buffer, format="PNG")
  if rgb is stored:
    notes.append(f"{fmt or 'unknown'} file re-encoded as PNG")
  return buffer.getvalue(), "png", rgb.height, rgb.width


def _encode_sample_image(index: int, sample, notes: List[str]):
  """``(encode_image(...), None)`` for a sample's image (file or bytes), or
  ``(None, the refusal)`` naming the file when it cannot be read."""
  try:
    return encode_image(sample.image_path, notes, sample.image_data), None
  except Exception as e:  # PIL raises many types for broken files.
    return None, EncodedSample(index, None, [
        f"{sample.image_path}: unreadable or truncated image ({e}); left out"],
        notes)


def encode_sample(index: int, sample: Sample, spec: LabelSpec) -> EncodedSample:
  """Reads, checks and encodes one pair (runs in a worker process)."""
  problems: List[str] = []
  notes: List[str] = []
  encoded, refused = _encode_sample_image(index, sample, notes)
  if refused:
    return refused
  image, fmt, height, width = encoded
  label_png = b""
  label_pixels = None
  if sample.mask_path is None and sample.mask_data is None:
    if spec.require_mask:
      return EncodedSample(index, None, [
          f"{sample.image_path}: no mask found; left out"], notes)
  else:
    try:
      mask = image_files.upright(_open(sample.mask_path, sample.mask_data))
    except Exception as e:
      return EncodedSample(index, None, [
          f"{sample.mask_path}: unreadable or truncated mask ({e}); left out"],
          notes)
    if (mask.height, mask.width) != (height, width):
      return EncodedSample(index, None, [
          f"{sample.mask_path}: mask is {mask.width}x{mask.height} but its "
          f"image is {width}x{height}; left out"], notes)
    try:
      ids = masks.label_ids(mask, spec, sample.mask_path, notes, problems)
    except masks.MaskError as e:
      return EncodedSample(index, None, [f"{e}; left out"], notes)
    buffer = io.BytesIO()
    Image.fromarray(ids, mode="L").save(buffer, format="PNG")
    label_png = buffer.getvalue()
    label_pixels = np.bincount(ids.reshape(-1), minlength=256).astype(np.int64)
  stem = os.path.splitext(os.path.basename(sample.image_path))[0]
  example = records.make_example(image, fmt, stem, height, width, label_png)
  return EncodedSample(index, example.SerializeToString(), problems, notes,
                       label_pixels)


def pair_by_stem(image_dir: str, mask_dir: Optional[str],
                 mask_suffix: str = "") -> List[Sample]:
  """Pairs images with masks of the same file stem (+ ``mask_suffix``).

  Raises:
    FileNotFoundError: a folder does not exist or holds no images.
  """
  if not tf.io.gfile.isdir(image_dir):
    raise FileNotFoundError(f"image folder {image_dir!r} does not exist")
  if mask_dir is not None and not tf.io.gfile.isdir(mask_dir):
    raise FileNotFoundError(f"mask folder {mask_dir!r} does not exist")
  masks = {}
  if mask_dir is not None:
    for name in tf.io.gfile.listdir(mask_dir):
      stem, ext = os.path.splitext(name)
      if ext.lower() in image_files.IMAGE_EXTENSIONS:
        masks[stem] = os.path.join(mask_dir, name)
  samples = []
  for name in sorted(tf.io.gfile.listdir(image_dir)):
    stem, ext = os.path.splitext(name)
    if ext.lower() in image_files.IMAGE_EXTENSIONS:
      samples.append(Sample(os.path.join(image_dir, name),
                            masks.get(stem + mask_suffix)))
  if not samples:
    raise FileNotFoundError(f"no images ({', '.join(image_files.IMAGE_EXTENSIONS)}) in "
                            f"{image_dir!r}")
  return samples


# Shards of a split: about RECORDS_PER_SHARD records each, at least
# MIN_SHARDS (a cluster of up to that many input pipelines then gives each
# worker whole files of its own) and at most MAX_SHARDS.
RECORDS_PER_SHARD = 100
MIN_SHARDS = 32
MAX_SHARDS = 1024


def default_num_shards(num_records: int) -> int:
  """Shards for a split of ``num_records``: enough for a cluster's workers.

  Each input pipeline (one per worker or TPU host) reads its own files
  when a split has at least as many shards as pipelines; with fewer, every
  worker reads every file. 32 shards cover clusters of up to 32 workers
  (or TPU pods of up to 32 hosts), larger splits get one shard per ~100
  records, and a split never has more shards than records.
  """
  shards = min(MAX_SHARDS, max(MIN_SHARDS, -(-num_records // RECORDS_PER_SHARD)))
  return max(1, min(shards, num_records))


def build_split(samples: Sequence[Sample], spec: LabelSpec, output_dir: str,
                split: str, num_shards: Optional[int] = None,
                expected_count: Optional[int] = None,
                strict: bool = False, workers: Optional[int] = None) -> BuildReport:
  """Encodes ``samples`` in parallel and writes ``split`` shards atomically.

  Args:
    samples: the pairs, in the order records are written.
    spec: how masks encode classes.
    output_dir: where ``{split}-NNNNN-of-NNNNN.tfrecord`` go.
    split: split name.
    num_shards: number of shards (records are split into contiguous runs);
      None: ``default_num_shards``.
    expected_count: the split's size in the dataset table, if known.
    strict: stop at the first problem (nothing is renamed into place).
    workers: processes (default: all cores).

  Returns:
    A ``BuildReport``; its ``problems`` list every file with an issue.

  Raises:
    BuildError: in strict mode, the first problem.
    ValueError: ``num_shards`` below 1.
  """
  if num_shards is None:
    num_shards = default_num_shards(len(samples))
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1 (or None for the default), "
                     f"got {num_shards!r}")
  report = BuildReport(split)
  num_shards = max(1, min(num_shards, len(samples)))
  writer = records.ShardWriter(output_dir, split, num_shards)
  bar = progress.Progress(len(samples), f"{split}", unit="images")
  workers = workers or os.cpu_count() or 1
  try:
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
      results = pool.map(encode_sample, range(len(samples)), samples,
                         [spec] * len(samples), chunksize=4)
      for result in results:
        for note in set(result.notes):
          report.notes[note] = report.notes.get(note, 0) + 1
        if result.problems and strict:
          raise BuildError(result.problems[0])
        report.problems.extend(result.problems)
        if result.example is not None:
          shard = result.index * num_shards // len(samples)
          writer.write(shard, result.example)
          report.written += 1
          if result.label_pixels is not None:
            report.label_counts.add_histogram(result.label_pixels)
        bar.update()
    if expected_count is not None and report.written != expected_count:
      message = (f"split {split!r} has {report.written} records but the "
                 f"dataset table says {expected_count}")
      if strict:
        raise BuildError(message)
      report.problems.append(message)
  except BaseException:
    writer.abort()
    raise
  report.shards = writer.commit()
  return report


# --- Classification records (backbone pretraining). ---


@dataclasses.dataclass(frozen=True)
class ClassSample:
  """One image and its class.

  Attributes:
    image_path: the image file (or, with ``image_data``, its name in reports).
    label: the class id written to ``image/class/label``.
    text: the class name written to ``image/class/text``.
    image_data: encoded image bytes held in memory instead of a file.
  """
  image_path: str
  label: int
  text: str = ""
  image_data: Optional[bytes] = None


def encode_class_sample(index: int, sample: ClassSample) -> EncodedSample:
  """Reads, checks and encodes one classification sample (in a worker)."""
  notes: List[str] = []
  encoded, refused = _encode_sample_image(index, sample, notes)
  if refused:
    return refused
  image, fmt, height, width = encoded
  stem = os.path.splitext(os.path.basename(sample.image_path))[0]
  example = records.make_classification_example(
      image, fmt, stem, height, width, sample.label, sample.text)
  return EncodedSample(index, example.SerializeToString(), [], notes)


def list_class_folders(root: str, first_label: int = 0
                       ) -> Tuple[List[ClassSample], Tuple[str, ...]]:
  """The images of a folder of class folders (``root/<class>/<image>``).

  Classes are the subfolders in sorted order, numbered from
  ``first_label`` (1 leaves 0 free for a background class, as the
  ImageNet records of the widely used scripts).

  Returns:
    (samples, class names).

  Raises:
    FileNotFoundError: ``root`` does not exist, has no subfolder, or a
      class folder holds no image.
  """
  if not tf.io.gfile.isdir(root):
    raise FileNotFoundError(f"folder {root!r} does not exist")
  classes = tuple(sorted(name.rstrip("/") for name in tf.io.gfile.listdir(root)
                         if tf.io.gfile.isdir(os.path.join(root, name))))
  if not classes:
    raise FileNotFoundError(f"{root!r} holds no class folders "
                            "(expected ROOT/<class>/<image>)")
  samples = []
  for label, name in enumerate(classes, start=first_label):
    folder = os.path.join(root, name)
    images = sorted(f for f in tf.io.gfile.listdir(folder)
                    if os.path.splitext(f)[1].lower() in image_files.IMAGE_EXTENSIONS)
    if not images:
      raise FileNotFoundError(f"class folder {folder!r} holds no images "
                              f"({', '.join(image_files.IMAGE_EXTENSIONS)})")
    samples.extend(ClassSample(os.path.join(folder, f), label, name)
                   for f in images)
  return samples, classes


def build_classification_split(samples: Sequence[ClassSample], output_dir: str,
                               split: str, num_shards: Optional[int] = None,
                               strict: bool = False,
                               workers: Optional[int] = None,
                               seed: int = 0) -> BuildReport:
  """Encodes classification samples in parallel and writes ``split`` shards
  atomically, in a seeded random order (a folder of class folders lists
  one class after another; shuffled records let a bounded shuffle buffer
  mix classes).

  Args:
    samples: the images and their classes.
    output_dir: where ``{split}-NNNNN-of-NNNNN.tfrecord`` go.
    split: split name.
    num_shards: number of shards; None: ``default_num_shards``.
    strict: stop at the first problem (nothing is renamed into place).
    workers: processes (default: all cores).
    seed: seed of the record order.

  Returns:
    A ``BuildReport``.

  Raises:
    BuildError: in strict mode, the first problem.
  """
  samples = list(samples)
  if not samples:
    raise BuildError(f"split {split!r} has no images")
  random.Random(seed).shuffle(samples)
  num_shards = max(1, min(num_shards or default_num_shards(len(samples)),
                          len(samples)))
  report = BuildReport(split)
  writer = records.ShardWriter(output_dir, split, num_shards)
  bar = progress.Progress(len(samples), f"{split}", unit="images")
  try:
    with concurrent.futures.ProcessPoolExecutor(workers or os.cpu_count() or 1) as pool:
      for result in pool.map(encode_class_sample, range(len(samples)), samples,
                             chunksize=4):
        for note in set(result.notes):
          report.notes[note] = report.notes.get(note, 0) + 1
        if result.problems and strict:
          raise BuildError(result.problems[0])
        report.problems.extend(result.problems)
        if result.example is not None:
          writer.write(result.index * num_shards // len(samples), result.example)
          report.written += 1
        bar.update()
  except BaseException:
    writer.abort()
    raise
  report.shards = writer.commit()
  return report
