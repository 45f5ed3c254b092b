"""Builds classification records (the ImageNet layout) from a folder of
class folders.

``build`` writes the records and the class list; the tool is
``deeplab-build-class-folders`` (deeplab/cli/build_class_folders.py), whose
docstring says how to use it.
"""

import os
from typing import List, Optional, Tuple

import tensorflow as tf

from deeplab.data import builder

from . import common


def build(image_dir: str, output_dir: str, split: str = "train",
          first_label: int = 0,
          options: Optional[common.BuildOptions] = None
          ) -> Tuple[List[builder.BuildReport], List[str], str]:
  """Writes the images of ``image_dir/<class>/`` as the records of ``split``
  and lists the classes in ``output_dir/labels-<split>.txt``.

  Args:
    image_dir: one folder per class; classes are the folder names, sorted.
    output_dir: folder of the shards and the class list.
    split: split name of the records.
    first_label: label of the first class (1 leaves 0 as background).
    options: how the records are written.

  Returns:
    (one report per split, the class names, the class list's path).
  """
  samples, classes = builder.list_class_folders(image_dir, first_label)
  reports = common.build_classification({split: samples}, output_dir, options)
  path = os.path.join(output_dir, f"labels-{split}.txt")
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("".join(f"{i} {name}\n" for i, name in
                    enumerate(classes, start=first_label)))
  return reports, classes, path
