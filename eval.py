"""Thin entry point; the tool is ``deeplab.tools.eval`` (console script
``deeplab-eval``), whose docstring says how to use it. The runtime is
chosen before the tool (and TensorFlow) is imported: deeplab/runtime.py."""

from deeplab import runtime

if __name__ == "__main__":
  runtime.launch("deeplab.tools.eval")
