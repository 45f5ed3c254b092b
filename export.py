"""Thin entry point; the tool is ``deeplab.tools.export`` (console script
``deeplab-export``), whose docstring says how to use it. The runtime is
chosen before the tool (and TensorFlow) is imported: deeplab/runtime.py."""

from deeplab import runtime

if __name__ == "__main__":
  runtime.launch("deeplab.tools.export")
