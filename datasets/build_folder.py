"""Builds records from a folder of images and a folder of masks (user data).

``build`` writes the records; the tool is ``deeplab-build-folder``
(deeplab/cli/build_folder.py), whose docstring says how to use it.
"""

from typing import List, Optional, Sequence

from deeplab.data import builder
from deeplab.data import dataset_table
from deeplab.data import masks

from . import common


def label_spec(num_classes: Optional[int] = None,
               ignore_label: Optional[int] = None,
               dataset: Optional[str] = None, colormap: Optional[str] = None,
               ignore_color: Optional[Sequence[int]] = None,
               mask_format: str = "auto") -> builder.LabelSpec:
  """The masks' label encoding (the forms and their detection:
  ``deeplab.data.masks``).

  Args:
    num_classes: ids 0..num_classes-1 (default: the ``dataset``'s).
    ignore_label: label of unlabelled pixels (default: the ``dataset``'s,
      or 255).
    dataset: a dataset table entry whose classes the masks use.
    colormap: for RGB masks, the color of each class id: a table dataset
      name (``pascal``, ``cityscapes``, ``camvid``, ...), a JSON or text
      file, or a palette PNG (``masks.color_table``).
    ignore_color: for RGB masks, the color of unlabelled pixels.
    mask_format: one of ``masks.MASK_FORMATS``; ``auto`` recognises each
      mask's form.

  Raises:
    ValueError: neither ``num_classes`` nor ``dataset``, a bad colormap, or
      a ``mask_format`` that cannot work (``masks.check_spec``).
  """
  if dataset:
    info = dataset_table.get(dataset, num_classes, ignore_label)
    num_classes, ignore = info.num_classes, info.ignore_label
  elif num_classes:
    ignore = 255 if ignore_label is None else ignore_label
  else:
    raise ValueError("give --num_classes or --dataset")
  table = masks.color_table(colormap, num_classes) if colormap else None
  ignore_color = tuple(int(c) for c in ignore_color) if ignore_color else None
  masks.check_spec(mask_format, num_classes, ignore, table, ignore_color)
  return builder.LabelSpec(num_classes, ignore, color_table=table,
                           ignore_color=ignore_color, mask_format=mask_format)


def build(images: str, masks: str, output_dir: str, spec: builder.LabelSpec,
          split: str = "train", mask_suffix: str = "",
          options: Optional[common.BuildOptions] = None
          ) -> List[builder.BuildReport]:
  """Writes the pairs of ``images`` and ``masks`` (by file stem, mask stems
  ending in ``mask_suffix``) as the records of ``split``."""
  samples = builder.pair_by_stem(images, masks, mask_suffix)
  return common.build({split: samples}, spec, output_dir, options)
