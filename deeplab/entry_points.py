"""The console scripts of setup.cfg: each chooses its job's runtime
(``deeplab.runtime.launch``) before importing its tool, whose imports load
TensorFlow. Nothing here may import TensorFlow."""

from deeplab import runtime


def _tool(module: str):
  def main():
    runtime.launch(module)
  main.__doc__ = f"``{module}``'s main(), after the runtime is chosen."
  return main


train = _tool("deeplab.tools.train")
eval = _tool("deeplab.tools.eval")
export = _tool("deeplab.tools.export")
predict = _tool("deeplab.predict")
convert = _tool("deeplab.convert")
summary = _tool("deeplab.summary")
make_synthetic = _tool("deeplab_datasets.make_synthetic")
build_voc = _tool("deeplab_datasets.build_voc")
build_cityscapes = _tool("deeplab_datasets.build_cityscapes")
build_ade20k = _tool("deeplab_datasets.build_ade20k")
build_camvid = _tool("deeplab_datasets.build_camvid")
build_folder = _tool("deeplab_datasets.build_folder")
build_class_folders = _tool("deeplab_datasets.build_class_folders")
build_tfds = _tool("deeplab_datasets.build_tfds")
inspect = _tool("deeplab_datasets.inspect")
