"""What records say about themselves: ``dataset.json`` beside the shards.

Every dataset builder writes it (``datasets.common``), so that training,
evaluation and prediction read the class count, class names, ignore label
and colormap from the data instead of the user retyping them
(``deeplab.config.resolve_dataset``). A build that writes one split adds
that split to the file already there.

The file (``FORMAT_VERSION`` 1)::

  {"format_version": 1,
   "task": "segmentation",           # or "classification"
   "name": "custom",                 # a dataset table entry, or a user name
   "num_classes": 5,
   "class_names": ["background", ...],
   "ignore_label": 255,              # null for classification records
   "colormap": [[0, 0, 0], ...],     # RGB per class id; null: none
   "splits": {"train": {"records": 120,
                        "class_pixels": [...],           # per class id
                        "class_masks": [...],            # masks holding it
                        "class_mask_pixels": [...],      # their pixels
                        "ignored_pixels": 1234}}}

The pixel counts are those of the masks as written (after id maps and
with bad values set to the ignore label); a split without masks, and a
classification split, has ``records`` only.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from deeplab.data import audit
from deeplab.data import dataset_table
from deeplab.data import records

FILE = "dataset.json"
FORMAT_VERSION = 1
# deeplab.tasks' names, spelt out: the data package sits below the tasks, and
# imports point downward.
TASKS = ("segmentation", "classification")
# Name of a user dataset whose builder was given none.
DEFAULT_NAME = "custom"
# The fields that say what a label means; every split of a folder agrees on
# them, and so must a config that sets them (deeplab.config.resolve_dataset).
CLASS_FIELDS = ("task", "num_classes", "class_names", "ignore_label", "colormap")


@dataclasses.dataclass(frozen=True)
class Description:
  """The ``dataset.json`` of a folder of records.

  Attributes:
    task: 'segmentation' or 'classification'.
    name: dataset table entry, or a user dataset's name.
    num_classes: class ids are 0..num_classes-1.
    class_names: one name per class id.
    ignore_label: label of unlabelled pixels; None for classification.
    colormap: RGB per class id, or None where the dataset has none.
    splits: ``{split: {"records": n, ...pixel counts}}`` (module docstring).
    path: the file it was read from ('' when not read).
  """
  task: str
  name: str
  num_classes: int
  class_names: Tuple[str, ...]
  ignore_label: Optional[int]
  colormap: Optional[Tuple[Tuple[int, int, int], ...]]
  splits: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)
  path: str = ""

  def __post_init__(self):
    if self.task not in TASKS:
      raise ValueError(f"{self._where()}task must be one of {TASKS}, got {self.task!r}")
    if len(self.class_names) != self.num_classes:
      raise ValueError(f"{self._where()}{len(self.class_names)} class names for "
                       f"num_classes={self.num_classes}")
    if self.colormap is not None and len(self.colormap) != self.num_classes:
      raise ValueError(f"{self._where()}{len(self.colormap)} colormap colors for "
                       f"num_classes={self.num_classes}")

  def _where(self) -> str:
    return f"{self.path}: " if self.path else ""

  def to_json(self) -> Dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "task": self.task,
            "name": self.name, "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "ignore_label": self.ignore_label,
            "colormap": [list(c) for c in self.colormap] if self.colormap else None,
            "splits": self.splits}

  @classmethod
  def from_json(cls, values: Dict[str, Any], path: str = "") -> "Description":
    """Raises ValueError naming ``path`` and the field that is wrong."""
    version = values.get("format_version")
    if version != FORMAT_VERSION:
      raise ValueError(f"{path}: format_version {version!r} is not "
                       f"{FORMAT_VERSION}, the one this version reads")
    try:
      return cls(values["task"], values["name"], int(values["num_classes"]),
                 tuple(values["class_names"]), values["ignore_label"],
                 colors(values.get("colormap") or None),
                 dict(values.get("splits", {})), path)
    except KeyError as e:
      raise ValueError(f"{path}: field {e} is missing") from None

  def class_values(self) -> Dict[str, Any]:
    """``{field: value}`` of ``CLASS_FIELDS``."""
    return {name: getattr(self, name) for name in CLASS_FIELDS}

  def disagreements(self, other: "Description") -> List[str]:
    """``'field: ours vs theirs'`` for each of ``CLASS_FIELDS`` that differs."""
    ours, theirs = self.class_values(), other.class_values()
    return [f"{k}={ours[k]!r} vs {theirs[k]!r}" for k in CLASS_FIELDS
            if ours[k] != theirs[k]]

  def splits_of(self, pattern: str) -> List[str]:
    """The splits whose shards ``pattern`` matches (several, when it
    matches several splits' shards)."""
    matched = set(tf.io.gfile.glob(pattern))
    folder = os.path.dirname(self.path)
    return [split for split in self.splits
            if matched & set(records.existing_shards(folder, split))]

  def class_weights(self, pattern: str, power: float = 1.0) -> Tuple[float, ...]:
    """Median-frequency class weights (``audit.median_frequency_weights``)
    over the splits ``pattern`` reads, each raised to ``power`` (0.5: their
    square roots); the ignore label's weight is 0.

    Raises:
      ValueError: the pattern's splits carry no pixel counts.
    """
    splits = self.splits_of(pattern)
    counted = [self.splits[s] for s in splits if "class_pixels" in self.splits[s]]
    if not counted:
      raise ValueError(
          f"{self.path} holds no pixel counts of the records {pattern!r} "
          f"reads (splits {splits or 'none'} of {sorted(self.splits)}): "
          "class weights cannot be computed from it")
    ids = [c for c in range(self.num_classes) if c != self.ignore_label]
    weights = audit.median_frequency_weights(split_counts(counted), ids)
    return audit.class_weight_list(weights, self.num_classes, self.ignore_label, power)


# A split entry's per-class counts and the ``audit.Audit`` field each is.
_COUNT_FIELDS = (("class_pixels", "pixels"), ("class_masks", "images_with"),
                 ("class_mask_pixels", "pixels_in_images_with"))


def split_entry(records_written: int, counts: Optional[audit.Audit] = None,
                num_classes: int = 0, ignore_label: Optional[int] = None) -> Dict[str, Any]:
  """A split's entry: its record count, and with ``counts`` (the
  ``audit.Audit`` of its masks) its pixel counts per class id."""
  entry: Dict[str, Any] = {"records": int(records_written)}
  if counts is not None:
    for name, field in _COUNT_FIELDS:
      entry[name] = [int(getattr(counts, field)[c]) for c in range(num_classes)]
    entry["ignored_pixels"] = int(counts.pixels[ignore_label]) if ignore_label is not None else 0
  return entry


def split_counts(entries: Sequence[Dict[str, Any]]) -> audit.Audit:
  """The pixel counts of split entries (``split_entry``), summed, as an
  ``audit.Audit``."""
  counts = audit.Audit()
  for entry in entries:
    for name, field in _COUNT_FIELDS:
      getattr(counts, field).update(dict(enumerate(entry[name])))
  return counts


def path_in(folder: str) -> str:
  return os.path.join(folder, FILE)


def read(path: str) -> Description:
  """Reads a ``dataset.json``.

  Raises:
    ValueError: not JSON, or a field missing or wrong (naming the file).
  """
  with tf.io.gfile.GFile(path) as f:
    try:
      values = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON: {e}") from None
  return Description.from_json(values, path)


def read_folder(folder: str) -> Optional[Description]:
  """The description of the records in ``folder``, or None."""
  path = path_in(folder)
  return read(path) if tf.io.gfile.exists(path) else None


def check_folder(folder: str, description: Description) -> Optional[Description]:
  """The description ``folder`` holds (None without one), checked.

  Raises:
    ValueError: ``folder`` holds records described otherwise (another
      build's classes would be mixed with these).
  """
  existing = read_folder(folder)
  if existing is not None:
    differences = description.disagreements(existing)
    if differences:
      raise ValueError(
          f"{existing.path} describes other records (this build vs the "
          f"file: {'; '.join(differences)}): give another output folder, "
          "or remove that file and the records beside it")
  return existing


def write(folder: str, description: Description) -> str:
  """Writes ``description`` as ``folder/dataset.json``; splits already
  described there (by an earlier build of other splits) are kept.

  Returns:
    The file's path.

  Raises:
    ValueError: the folder's file describes other classes (``check_folder``).
  """
  existing = check_folder(folder, description)
  splits = dict(existing.splits) if existing else {}
  splits.update(description.splits)
  values = dataclasses.replace(description, splits=dict(sorted(splits.items())),
                               path="").to_json()
  tf.io.gfile.makedirs(folder)
  path = path_in(folder)
  temporary = path + ".tmp"
  with tf.io.gfile.GFile(temporary, "w") as f:
    json.dump(values, f, indent=1)
  tf.io.gfile.rename(temporary, path, overwrite=True)
  return path


def folder_of(pattern: str) -> str:
  """The folder of a record pattern's shards (of its first match, or of
  the pattern itself when nothing matches)."""
  matches = sorted(tf.io.gfile.glob(pattern)) if pattern else []
  return os.path.dirname(matches[0] if matches else pattern)


def find(pattern: str) -> Optional[Description]:
  """The description beside the records of ``pattern``, or None."""
  return read_folder(folder_of(pattern)) if pattern else None


def class_names_from(samples: Sequence, num_classes: int) -> Tuple[str, ...]:
  """Class names from classification samples' ``(label, text)``; an id no
  sample names gets ``dataset_table.generic_names``' name."""
  names = collections.OrderedDict((s.label, s.text) for s in samples if s.text)
  return tuple(names.get(i, generic)
               for i, generic in enumerate(dataset_table.generic_names(num_classes)))


def colors(table) -> Optional[Tuple[Tuple[int, int, int], ...]]:
  """A colormap as tuples of ints, or None."""
  if table is None:
    return None
  return tuple(tuple(int(v) for v in c) for c in np.asarray(table).tolist())
