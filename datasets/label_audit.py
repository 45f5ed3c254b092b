"""The label audit of records or masks, with a dataset's classes.

``audit`` returns the report; the tool is ``deeplab-inspect``
(deeplab/cli/inspect_labels.py), whose docstring says how to use it.
"""

from typing import List, Optional, Tuple

import tensorflow as tf

from deeplab.data import audit as audit_lib
from deeplab.data import dataset_table
from deeplab.data import description as description_lib


def audit(path: str, dataset: Optional[str] = None,
          num_classes: Optional[int] = None,
          ignore_label: Optional[int] = None) -> Tuple[str, List[str]]:
  """The audit of the masks or records at ``path`` (``deeplab.data.audit``).

  Args:
    path: a folder of masks, a folder of .tfrecord shards, or a glob of
      either.
    dataset: a dataset table entry (classes, ignore label, class names).
      Without it and ``num_classes``, records that describe themselves
      (their ``dataset.json``) give the classes, ignore label and names.
    num_classes: number of classes (default: the ``dataset``'s).
    ignore_label: ignore label (default: the ``dataset``'s, or 255).

  Returns:
    (the report's text, its warnings); a warning about values that break
    training says ``break training``.
  """
  names = ()
  if not dataset and num_classes is None:
    described = (description_lib.read_folder(path) if tf.io.gfile.isdir(path)
                 else description_lib.find(path))
    if described is not None and described.task == "segmentation":
      num_classes, names = described.num_classes, described.class_names
      if ignore_label is None:
        ignore_label = described.ignore_label
  if dataset:
    info = dataset_table.get(dataset, num_classes, ignore_label)
    num_classes, ignore_label, names = info.num_classes, info.ignore_label, info.class_names
  ignore_label = 255 if ignore_label is None else ignore_label
  return audit_lib.report(audit_lib.audit_path(path), num_classes, ignore_label, names)


def breaks_training(warnings: List[str]) -> bool:
  """Whether a warning of ``audit`` is about values that break training."""
  return any("break training" in w for w in warnings)
