"""Thin entry point: the tool ``deeplab-eval`` of the table ``deeplab.cli.TOOLS``
(deeplab/cli/eval.py says how to use it), its runtime chosen before
TensorFlow is imported."""

from deeplab import cli

if __name__ == "__main__":
  cli.tool("eval")()
