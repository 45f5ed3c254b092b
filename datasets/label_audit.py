"""The label audit of records or masks, with a dataset's classes.

``audit`` returns the report; the tool is ``deeplab-inspect``
(deeplab/cli/inspect_labels.py), whose docstring says how to use it.
"""

from typing import List, Optional, Tuple

from deeplab.data import audit as audit_lib
from deeplab.data import dataset_table


def audit(path: str, dataset: Optional[str] = None,
          num_classes: Optional[int] = None,
          ignore_label: Optional[int] = None) -> Tuple[str, List[str]]:
  """The audit of the masks or records at ``path`` (``deeplab.data.audit``).

  Args:
    path: a folder of masks, a folder of .tfrecord shards, or a glob of
      either.
    dataset: a dataset table entry (classes, ignore label, class names).
    num_classes: number of classes (default: the ``dataset``'s).
    ignore_label: ignore label (default: the ``dataset``'s, or 255).

  Returns:
    (the report's text, its warnings); a warning about values that break
    training says ``break training``.
  """
  names = ()
  if dataset:
    info = dataset_table.get(dataset, num_classes, ignore_label)
    num_classes, ignore_label, names = info.num_classes, info.ignore_label, info.class_names
  ignore_label = 255 if ignore_label is None else ignore_label
  return audit_lib.report(audit_lib.audit_path(path), num_classes, ignore_label, names)


def breaks_training(warnings: List[str]) -> bool:
  """Whether a warning of ``audit`` is about values that break training."""
  return any("break training" in w for w in warnings)
