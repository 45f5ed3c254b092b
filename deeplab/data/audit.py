"""Label audit: what the masks really contain, before a model trains on them.

The commonest failure of training on one's own data is a model that
predicts background everywhere, and its commonest causes are visible in the
masks: ids saved as 0/255 instead of 0/1, RGB color masks read as ids,
JPEG-compressed masks with stray values, a class that never occurs, or
background so dominant that the loss ignores the rest. ``audit`` counts and
``report`` says all of that, and gives median-frequency class weights
(Eigen & Fergus 2015, as SegNet used for CamVid) to paste into a config.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from deeplab.data import dataset_table
from deeplab.data import image_files
from deeplab.data import masks
from deeplab.data import records


@dataclasses.dataclass
class Audit:
  """Counts over a set of masks.

  Attributes:
    masks: number of masks read.
    pixels: ``{value: pixel count}`` over all masks.
    images_with: ``{value: number of masks containing it}``.
    pixels_in_images_with: ``{value: total pixels of the masks containing it}``
      (the denominator of median-frequency balancing).
    kinds: ``{mask kind: count}`` (id PNG, palette PNG, RGB color, JPEG...).
    colors: for RGB masks, ``{(r, g, b): pixel count}``.
    examples: ``{value: first file containing it}``.
  """
  masks: int = 0
  pixels: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  images_with: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  pixels_in_images_with: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  kinds: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  colors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  examples: Dict[int, str] = dataclasses.field(default_factory=dict)

  def add(self, ids: np.ndarray, name: str):
    values, counts = np.unique(ids, return_counts=True)
    self.masks += 1
    for value, count in zip(values.tolist(), counts.tolist()):
      self.pixels[value] += count
      self.images_with[value] += 1
      self.pixels_in_images_with[value] += ids.size
      self.examples.setdefault(value, name)

  def add_histogram(self, label_pixels: np.ndarray) -> None:
    """Counts one mask given as its pixels per value (``np.bincount`` of
    its ids), as ``add`` counts its ids (no ``examples``: it has no name)."""
    self.masks += 1
    total = int(label_pixels.sum())
    for value in np.flatnonzero(label_pixels).tolist():
      self.pixels[value] += int(label_pixels[value])
      self.images_with[value] += 1
      self.pixels_in_images_with[value] += total


def mask_kind(image: Image.Image) -> str:
  fmt = (image.format or "").upper()
  if fmt == "JPEG":
    return "JPEG (lossy: ids get corrupted at edges)"
  if image.mode == "P":
    return "palette PNG (palette index = id)"
  if image.mode in ("RGB", "RGBA"):
    return "RGB color mask"
  if image.mode.startswith("I"):
    return "16-bit id image"
  return "grayscale id image"


def audit_mask_files(paths: Iterable[str]) -> Audit:
  """Reads mask files; RGB masks are counted by color and by gray value."""
  result = Audit()
  for path in paths:
    image = Image.open(io.BytesIO(image_files.read_bytes(path)))
    image.load()
    kind = mask_kind(image)
    result.kinds[kind] += 1
    if image.mode in ("RGB", "RGBA"):
      rgb = np.asarray(image.convert("RGB"))
      values, counts = np.unique(masks.pack_rgb(rgb), return_counts=True)
      for v, c in zip(values.tolist(), counts.tolist()):
        result.colors[masks.unpack_rgb(v)] += c
      ids = rgb[..., 0]
    else:
      ids = np.asarray(image).astype(np.int64)
    result.add(ids, path)
  return result


def audit_records(paths: Sequence[str]) -> Audit:
  result = Audit()
  for example in records.iterate_examples(paths):
    result.kinds["record (id PNG)"] += 1
    result.add(example["label"][..., 0], example["filename"].decode())
  return result


def audit_path(path: str) -> Audit:
  """Audits a folder of masks, a folder of records, or a glob of records."""
  if tf.io.gfile.isdir(path):
    tfrecords = sorted(tf.io.gfile.glob(os.path.join(path, "*.tfrecord")))
    if tfrecords:
      return audit_records(tfrecords)
    mask_files = sorted(os.path.join(path, n) for n in tf.io.gfile.listdir(path)
                        if n.lower().endswith(image_files.IMAGE_EXTENSIONS))
    if not mask_files:
      raise FileNotFoundError(f"{path!r} holds no masks and no .tfrecord files")
    return audit_mask_files(mask_files)
  matches = sorted(tf.io.gfile.glob(path))
  if not matches:
    raise FileNotFoundError(f"{path!r} matches no files")
  if all(m.endswith(".tfrecord") for m in matches):
    return audit_records(matches)
  return audit_mask_files(matches)


def median_frequency_weights(result: Audit, class_ids: Sequence[int]) -> Dict[int, float]:
  """weight(c) = median(freq) / freq(c), freq(c) = pixels of c / pixels of
  the masks where c appears. Absent classes get weight 0 (nothing to learn)."""
  freq = {c: result.pixels[c] / result.pixels_in_images_with[c]
          for c in class_ids if result.pixels[c]}
  if not freq:
    return {c: 0.0 for c in class_ids}
  median = float(np.median(list(freq.values())))
  return {c: (median / freq[c] if c in freq else 0.0) for c in class_ids}


def class_weight_list(weights: Dict[int, float], num_classes: int,
                      ignore_label: Optional[int], power: float = 1.0) -> Tuple[float, ...]:
  """One weight per class id 0..num_classes-1, for ``config.loss.class_weights``:
  ``weights`` (``median_frequency_weights``) raised to ``power`` (0.5: their
  square roots); the ignore label's weight is 0."""
  return tuple(0.0 if c == ignore_label else float(weights.get(c, 0.0)) ** power
               for c in range(num_classes))


def report(result: Audit, num_classes: Optional[int], ignore_label: int,
           class_names: Sequence[str] = ()) -> Tuple[str, List[str]]:
  """Returns (printable report, list of warnings)."""
  warnings: List[str] = []
  values = sorted(result.pixels)
  total = sum(result.pixels.values())
  if num_classes is None:
    below = [v for v in values if v != ignore_label]
    num_classes = (max(below) + 1) if below else 1
    warnings.append(f"num_classes not given: assuming {num_classes} "
                    f"(largest value {num_classes - 1} + 1)")
  names = list(class_names) + list(dataset_table.generic_names(num_classes)[len(class_names):])
  class_ids = [c for c in range(num_classes) if c != ignore_label]
  weights = median_frequency_weights(result, class_ids)
  lines = [f"masks read: {result.masks}, pixels: {total:,}"]
  lines.append("mask kinds: " + ", ".join(f"{k}: {n}" for k, n in result.kinds.most_common()))
  lines.append("")
  lines.append(f"{'id':>4}  {'class':<20} {'pixels':>14} {'share':>8} {'in masks':>9} {'mf weight':>10}")
  for c in range(num_classes):
    share = 100.0 * result.pixels[c] / total if total else 0.0
    weight = "ignored" if c == ignore_label else f"{weights[c]:.4f}"
    lines.append(f"{c:>4}  {names[c][:20]:<20} {result.pixels[c]:>14,} "
                 f"{share:>7.2f}% {result.images_with[c]:>9} {weight:>10}")
  ignore_share = 100.0 * result.pixels[ignore_label] / total if total else 0.0
  lines.append(f"ignore label {ignore_label}: {result.pixels[ignore_label]:,} "
               f"pixels ({ignore_share:.2f}%)")
  unexpected = [v for v in values if v >= num_classes and v != ignore_label]
  if unexpected:
    lines.append("")
    lines.append("values that are neither a class id nor the ignore label:")
    for v in unexpected[:20]:
      lines.append(f"  {v}: {result.pixels[v]:,} pixels in {result.images_with[v]} "
                   f"masks, e.g. {result.examples[v]}")
    warnings.append(f"{len(unexpected)} unexpected values {unexpected[:10]}: "
                    "these pixels break training")
  # The classic mistakes, each with its fix.
  if set(values) == {0, 255}:
    warnings.append("masks hold only 0 and 255: a binary mask saved for "
                    "viewing; divide by 255 so the object is id 1")
  if any("RGB" in k for k in result.kinds):
    top = ", ".join(f"{c}: {n:,}" for c, n in result.colors.most_common(8))
    lines.append("")
    lines.append(f"RGB masks: {len(result.colors)} distinct colors; most "
                 f"common: {top}")
    warnings.append("RGB color masks: build with --colormap (a table dataset "
                    "or a JSON id -> [r, g, b] file), not as ids")
  if any("JPEG" in k for k in result.kinds):
    warnings.append("JPEG masks: compression invents values at class edges; "
                    "use PNG masks")
  if any("palette" in k for k in result.kinds):
    lines.append("palette PNGs detected: their palette indices are read as ids "
                 "(correct for PASCAL VOC style masks)")
  absent = [names[c] for c in class_ids if not result.pixels[c]]
  if absent:
    warnings.append(f"classes never present: {absent}; the model cannot learn them")
  labelled = sum(result.pixels[c] for c in class_ids)
  if labelled:
    top_class = max(class_ids, key=lambda c: result.pixels[c])
    top_share = result.pixels[top_class] / labelled
    if top_share > 0.9:
      warnings.append(
          f"class {top_class} ({names[top_class]}) is {100 * top_share:.1f}% of "
          "labelled pixels: a model may predict it everywhere; use the class "
          "weights below or top_k_percent_pixels")
  lines.append("")

  def weight_list(power):
    return ", ".join(f"{w:.4f}" for w in class_weight_list(weights, num_classes, ignore_label, power))

  lines.append("median-frequency class weights, for the config:")
  lines.append(f"  config.loss.class_weights = ({weight_list(1.0)},)")
  # Full weights buy rare classes recall with precision: on CamVid the thin
  # classes were found 74-87% of the time but only 9-23% of the pixels
  # given them were theirs (bench/README.md, "CamVid in 30 minutes").
  lines.append("their square roots (rare classes over-predicted less; the "
               "CamVid recipes use these):")
  lines.append(f"  config.loss.class_weights = ({weight_list(0.5)},)")
  if warnings:
    lines.append("")
    lines.append("WARNINGS:")
    lines.extend(f"  - {w}" for w in warnings)
  return "\n".join(lines), warnings
