"""The layer table of a config's model and its parameter count
(``print_summary``); the tool is ``deeplab-summary``
(deeplab/cli/summary.py)."""

from deeplab import model as model_lib


def print_summary(config, line_length: int = 140) -> int:
  """Prints the layer table and ``total_params=N``; returns N."""
  crop_height, crop_width = config.data.crop_size
  model = model_lib.build_model(config, input_shape=(crop_height, crop_width, 3))
  model.summary(line_length=line_length, expand_nested=True)
  total = model.count_params()
  trainable = sum(int(v.numpy().size) for v in model.trainable_weights)
  print(f"trainable_params={trainable}")
  print(f"non_trainable_params={total - trainable}")
  print(f"total_params={total}")
  return total
