"""Masks as people have them, read as class ids.

A mask file takes one of five forms (``MASK_FORMATS``); ``label_ids``
recognises it, or is told it (``mask_format``), and returns the class id
of every pixel:

- ``palette``: a palette PNG (mode P, as PASCAL VOC's): the palette
  indices are the ids, whatever the palette's colours.
- ``grey``: a grey PNG (mode L, or an RGB file whose three channels are
  equal): the values are the ids.
- ``rgb``: an RGB colour map: each colour is a class, through a colour
  table (``color_table``: a table dataset's colormap, a JSON or text file
  with one colour per class, or the palette of a palette PNG).
- ``binary``: a 0/255 mask of two classes: 0 is class 0, 255 is class 1.
- ``id16``: a 16-bit PNG (mode I;16 or I): the values are the ids.

Detection (``mask_format='auto'``): JPEG masks are refused (lossy
compression changes the values at the edges between classes); mode P is
``palette``; mode L (and a 1-bit image, read as 0/1) is ``grey``; modes
I;16 and I are ``id16``; an RGB mask is ``rgb`` when a colour table is
given, ``grey`` when its channels are equal, and refused otherwise. A grey
mask whose values are exactly 0 and 255 with two classes is ``binary``
when 255 cannot be the ignore label; when the ignore label is 255 it is
ambiguous (background and unlabelled pixels, or background and
foreground?) and refused, naming both flags that settle it
(``--mask_format=binary``, ``--mask_format=grey``).

Pixels whose id is neither a class id nor the ignore label, and colours
not in the colour table, are problems listed with the file, the values
and their pixel counts; those pixels become the ignore label. A mask that
cannot be read as labels at all raises ``MaskError`` (the builder leaves
its pair out).
"""

from __future__ import annotations

import io
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
import tensorflow as tf

from deeplab.data import dataset_table
from deeplab.data import image_files

MASK_FORMATS = ("auto", "palette", "grey", "rgb", "binary", "id16")

# Short names of the table's colormaps, for --colormap.
NAMED_COLORMAPS = {"pascal": "pascal_voc_seg", "voc": "pascal_voc_seg"}

# File formats whose compression changes pixel values.
LOSSY_FORMATS = ("JPEG", "MPO")

# PIL modes of each form.
_PALETTE_MODES = ("P", "PA")
_GREY_MODES = ("L", "LA", "1")
_ID16_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_RGB_MODES = ("RGB", "RGBA")
# The modes each form given by --mask_format reads.
_FORMAT_MODES = {"palette": _PALETTE_MODES, "grey": _GREY_MODES + _RGB_MODES,
                 "rgb": _RGB_MODES + _PALETTE_MODES, "binary": _GREY_MODES + _RGB_MODES,
                 "id16": _ID16_MODES + ("L",)}

Color = Tuple[int, int, int]


class MaskError(ValueError):
  """A mask that cannot be read as class ids; the message names the file,
  what was found in it and what to do."""


def check_format(mask_format: str, num_classes: int) -> str:
  """``mask_format`` if it is one of ``MASK_FORMATS`` and fits ``num_classes``.

  Raises:
    ValueError: an unknown form, or ``binary`` with other than 2 classes.
  """
  if mask_format not in MASK_FORMATS:
    raise ValueError(f"--mask_format must be one of {'|'.join(MASK_FORMATS)}, "
                     f"got {mask_format!r}")
  if mask_format == "binary" and num_classes != 2:
    raise ValueError("--mask_format=binary reads 0/255 masks as the classes "
                     f"0 and 1, so it needs --num_classes=2, got {num_classes}")
  return mask_format


_HEX = re.compile(r"#[0-9a-fA-F]{6}")


def _parse_color(text: str, where: str) -> Color:
  """A colour from ``r g b``, ``r,g,b`` or ``#rrggbb``."""
  text = text.strip()
  if _HEX.fullmatch(text):
    return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
  try:
    color = tuple(int(p) for p in text.replace(",", " ").split())
  except ValueError:
    color = ()
  if len(color) != 3 or not all(0 <= c <= 255 for c in color):
    raise ValueError(f"{where}: a colour must be three values 0..255 "
                     f"('r g b', 'r,g,b' or '#rrggbb'), got {text!r}")
  return color


def _text_table(text: str, value: str) -> List[Color]:
  """One colour per line, the line's class id its number among colour
  lines; empty lines and lines starting with ``#`` (but not ``#rrggbb``)
  are skipped, words after the colour (a class name) are not read."""
  colors = []
  for number, line in enumerate(text.splitlines(), start=1):
    words = line.replace(",", " ").split()
    if not words or (words[0].startswith("#") and not _HEX.fullmatch(words[0])):
      continue
    head = words[0] if words[0].startswith("#") else " ".join(words[:3])
    colors.append(_parse_color(head, f"--colormap {value} line {number}"))
  return colors


def _json_table(text: str, value: str) -> List[Color]:
  """``[[r, g, b], ...]`` or ``{"0": [r, g, b], ...}`` (ids 0..n-1); a
  colour may also be ``"#rrggbb"``."""
  table = json.loads(text)
  if isinstance(table, dict):
    by_id = {int(k): v for k, v in table.items()}
    if sorted(by_id) != list(range(len(by_id))):
      raise ValueError(f"--colormap {value}: ids must be 0..n-1, got {sorted(by_id)}")
    table = [by_id[i] for i in range(len(by_id))]
  return [_parse_color(rgb if isinstance(rgb, str) else " ".join(str(c) for c in rgb),
                       f"--colormap {value} id {i}")
          for i, rgb in enumerate(table)]


def _palette_table(data: bytes, value: str) -> List[Color]:
  """The palette of a palette PNG, one colour per index."""
  image = Image.open(io.BytesIO(data))
  if image.mode not in _PALETTE_MODES:
    raise ValueError(f"--colormap {value}: an image gives its colour table by its "
                     f"palette, but it is a mode {image.mode} image, not a palette PNG")
  flat = image.getpalette() or []
  return [tuple(flat[i:i + 3]) for i in range(0, len(flat) - 2, 3)]


def color_table(value: str, num_classes: Optional[int] = None) -> Tuple[Color, ...]:
  """The colour of each class id (index = id), for RGB colour masks.

  Args:
    value: a dataset of the table (``pascal_voc_seg`` or ``pascal``,
      ``cityscapes``, ``camvid``, ...), or a file: JSON (``[[r, g, b], ...]``
      or ``{"0": [r, g, b], ...}``), a palette PNG (its palette), or text with
      one colour per line (``r g b``, ``r,g,b`` or ``#rrggbb``, optionally
      followed by the class name, which is not read).
    num_classes: keep the first ``num_classes`` colours (a table or palette
      may have more).

  Returns:
    ``((r, g, b), ...)``, at most ``num_classes`` of them.

  Raises:
    ValueError: ``value`` is neither, a colour is malformed, or two classes
      share a colour.
  """
  name = NAMED_COLORMAPS.get(value, value)
  if name in dataset_table.DATASETS:
    colors = [tuple(int(c) for c in rgb) for rgb in dataset_table.DATASETS[name].colormap]
  elif tf.io.gfile.exists(value):
    data = image_files.read_bytes(value)
    extension = os.path.splitext(value)[1].lower()
    if extension in image_files.IMAGE_EXTENSIONS:
      colors = _palette_table(data, value)
    elif extension == ".json":
      colors = _json_table(data.decode(), value)
    else:
      colors = _text_table(data.decode(), value)
  else:
    raise ValueError(
        f"--colormap={value!r} is neither a dataset of the table "
        f"({sorted(set(dataset_table.DATASETS) | set(NAMED_COLORMAPS))}) nor a "
        "file (JSON, text with one colour per class, or a palette PNG)")
  colors = colors[:num_classes] if num_classes else colors
  if not colors:
    raise ValueError(f"--colormap {value}: no colours in it")
  seen: Dict[Color, int] = {}
  for i, color in enumerate(colors):
    if color in seen:
      raise ValueError(f"--colormap {value}: classes {seen[color]} and {i} "
                       f"share the colour {color}")
    seen[color] = i
  return tuple(colors)


def _counts(values: np.ndarray, limit: int = 8) -> str:
  """``'7 (12 px), 9 (3 px)'``: values by pixel count, most first."""
  found, counts = np.unique(values, return_counts=True)
  order = np.argsort(-counts, kind="stable")[:limit]
  text = ", ".join(f"{found[i]} ({counts[i]} px)" for i in order)
  return text + (f" and {found.size - limit} more" if found.size > limit else "")


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
  """``r << 16 | g << 8 | b`` (int64) of each pixel of an ``[..., 3]`` array."""
  return (rgb[..., 0].astype(np.int64) << 16 | rgb[..., 1].astype(np.int64) << 8 |
          rgb[..., 2])


def unpack_rgb(packed: int) -> Color:
  """The ``(r, g, b)`` of a ``pack_rgb`` value."""
  return ((packed >> 16) & 255, (packed >> 8) & 255, packed & 255)


def _color_counts(packed: np.ndarray, limit: int = 5) -> str:
  """``'(1, 2, 3) in 40 pixels, ...'``: colours by pixel count, most first."""
  found, counts = np.unique(packed, return_counts=True)
  order = np.argsort(-counts, kind="stable")[:limit]
  text = ", ".join(f"{unpack_rgb(int(found[i]))} in {counts[i]} pixels" for i in order)
  return text + (f" and {found.size - limit} more colours" if found.size > limit else "")


def _form(mask: Image.Image, spec, name: str) -> str:
  """The mask's form: ``spec.mask_format``, or detected from the file."""
  if (mask.format or "").upper() in LOSSY_FORMATS:
    raise MaskError(
        f"{name}: a JPEG mask: lossy compression changes the values at the edges "
        "between classes, so they no longer name classes; save masks as PNG (from "
        "the tool that drew them, or with nearest-neighbour colours, never resampled)")
  mode, forced = mask.mode, spec.mask_format
  if forced != "auto":
    if mode not in _FORMAT_MODES[forced]:
      raise MaskError(f"{name}: --mask_format={forced} reads modes "
                      f"{', '.join(_FORMAT_MODES[forced])}, but this mask is mode {mode}")
    return forced
  if mode in _PALETTE_MODES:
    return "palette"
  if mode in _ID16_MODES:
    return "id16"
  if mode in _RGB_MODES and spec.color_table is not None:
    return "rgb"
  if mode in _GREY_MODES + _RGB_MODES:
    return "grey"
  raise MaskError(f"{name}: mask mode {mode} is not an id, palette or RGB mask "
                  "(see 'Mask formats' in docs/datasets.md)")


def _grey(mask: Image.Image, name: str, notes: List[str]) -> np.ndarray:
  """The values of a grey mask (or of an RGB mask with equal channels)."""
  if mask.mode in _RGB_MODES:
    rgb = np.asarray(mask.convert("RGB"))
    if not (np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])):
      raise MaskError(
          f"{name}: RGB color mask, but no color-to-id table was given (pass "
          "--colormap: a dataset of the table, a JSON or text file with one colour "
          "per class, or a palette PNG whose palette is the table); its colours: "
          f"{_color_counts(pack_rgb(rgb))}")
    notes.append("gray RGB mask read as ids")
    return rgb[..., 0].astype(np.int64)
  if mask.mode == "1":
    notes.append("1-bit mask read as 0/1")
  return np.asarray(mask.convert("L") if mask.mode == "LA" else mask).astype(np.int64)


def _binary(values: np.ndarray, spec, name: str, notes: List[str],
            problems: List[str]) -> np.ndarray:
  """0 -> 0 and 255 -> 1; other values are problems (set to ignore)."""
  notes.append("0/255 binary mask read as 0/1")
  ids = np.where(values == 255, 1, values)
  other = (values != 0) & (values != 255)
  if np.any(other):
    problems.append(
        f"{name}: a binary mask holds values other than 0 and 255: "
        f"{_counts(values[other])}; set to ignore (anti-aliased edges? threshold "
        "the mask, or draw it without smoothing)")
    ids[other] = spec.ignore_label
  return ids


def _is_zero_255(values: np.ndarray) -> bool:
  present = np.unique(values)
  return 255 in present and set(present.tolist()) <= {0, 255}


def _rgb(mask: Image.Image, spec, name: str, notes: List[str],
         problems: List[str]) -> np.ndarray:
  """Class ids of an RGB colour mask, through ``spec.color_table``."""
  if spec.color_table is None:
    raise MaskError(f"{name}: --mask_format=rgb needs the colour table (--colormap)")
  notes.append("RGB color mask mapped through the color table")
  packed = pack_rgb(np.asarray(mask.convert("RGB")))
  lookup = {int(pack_rgb(np.array(c))): i for i, c in enumerate(spec.color_table)}
  if spec.ignore_color is not None:
    lookup[int(pack_rgb(np.array(spec.ignore_color)))] = spec.ignore_label
  found, where = np.unique(packed, return_inverse=True)
  ids = np.array([lookup.get(int(color), -1) for color in found.tolist()], np.int64)
  values = ids[where].reshape(packed.shape)
  unknown = values < 0
  if np.any(unknown):
    problems.append(
        f"{name}: colors not in the color table: {_color_counts(packed[unknown])}; "
        "set to ignore (give each class's colour in --colormap, and the colour of "
        "unlabelled pixels as --ignore_color)")
    values[unknown] = spec.ignore_label
  return values


_ADVICE = {
    "palette": "palette indices are the ids; if the palette's colours name the "
               "classes instead, pass --mask_format=rgb with --colormap",
    "grey": "check --num_classes and --ignore_label; deeplab-inspect on the mask "
            "folder lists every value",
    "id16": "16-bit ids must be class ids or the ignore label; remap them first, "
            "or check --num_classes",
}


def label_ids(mask: Image.Image, spec, name: str, notes: List[str],
              problems: List[str]) -> np.ndarray:
  """Class ids of a mask image, as uint8 [h, w].

  Args:
    mask: the decoded mask, upright (``image_files.open_upright``); its
      ``format`` tells a JPEG mask.
    spec: a ``builder.LabelSpec``: ``num_classes``, ``ignore_label``,
      ``color_table``, ``ignore_color``, ``id_map``, ``mask_format``.
    name: the mask's file name, for messages.
    notes: conversions are appended here (counted in the build report).
    problems: pixels set to ignore are listed here, with the file, the
      values (or colours) and their pixel counts.

  Returns:
    The ids, every pixel a class id or ``spec.ignore_label``.

  Raises:
    MaskError: a JPEG mask, an RGB colour mask without a colour table, an
      ambiguous 0/255 mask, a mode the form cannot read.
  """
  form = _form(mask, spec, name)
  if form == "rgb":
    return _rgb(mask, spec, name, notes, problems).astype(np.uint8)
  if form == "palette":
    notes.append("palette mask read as ids")
    values = np.asarray(mask if mask.mode == "P" else mask.convert("P")).astype(np.int64)
  elif form == "id16":
    if mask.mode != "L":
      notes.append("16-bit id mask read as ids")
    values = np.asarray(mask).astype(np.int64)
  else:
    values = _grey(mask, name, notes)
    detected = spec.mask_format == "auto"
    if mask.mode != "1" and (form == "binary" or (
        detected and spec.num_classes == 2 and _is_zero_255(values))):
      if form != "binary" and spec.ignore_label == 255:
        raise MaskError(
            f"{name}: values exactly 0 and 255 ({_counts(values)}) with 2 classes "
            "and ignore label 255: is 255 the foreground class (a binary mask) or "
            "unlabelled pixels? Pass --mask_format=binary (255 -> class 1) or "
            "--mask_format=grey (255 -> ignore)")
      return _binary(values, spec, name, notes, problems).astype(np.uint8)
  if spec.id_map is not None:
    mapped = np.full(values.shape, spec.ignore_label, np.int64)
    for source, target in spec.id_map:
      mapped[values == source] = target
    values = mapped
  bad = ((values >= spec.num_classes) & (values != spec.ignore_label)) | (values < 0)
  if np.any(bad):
    found = np.unique(values[bad])
    problems.append(
        f"{name}: values {found[:10].tolist()} are neither class ids "
        f"(0..{spec.num_classes - 1}) nor the ignore label {spec.ignore_label} in "
        f"{int(bad.sum())} pixels ({_counts(values[bad])}); set to ignore "
        f"({_ADVICE.get(form, _ADVICE['grey'])})")
    values[bad] = spec.ignore_label
  return values.astype(np.uint8)


def check_spec(mask_format: str, num_classes: int, ignore_label: int,
               table: Optional[Sequence[Color]],
               ignore_color: Optional[Color]) -> None:
  """Refuses a label encoding that cannot work, before any file is read.

  Raises:
    ValueError: an unknown ``mask_format``, ``binary`` without 2 classes,
      ``rgb`` without a colour table, ids that do not fit the records' 8-bit
      labels, or an ``ignore_color`` that is a class's colour.
  """
  check_format(mask_format, num_classes)
  if mask_format == "rgb" and table is None:
    raise ValueError("--mask_format=rgb needs the colour table: pass --colormap")
  if num_classes > 256 or not 0 <= ignore_label <= 255:
    raise ValueError("records store labels as 8-bit PNGs: num_classes must be "
                     f"<= 256 and the ignore label 0..255, got {num_classes} and "
                     f"{ignore_label}")
  if table is not None and ignore_color is not None and tuple(ignore_color) in table:
    raise ValueError(f"--ignore_color={tuple(ignore_color)} is the colour of class "
                     f"{list(table).index(tuple(ignore_color))} in --colormap")
