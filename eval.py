"""Thin entry point; the tool is ``deeplab.tools.eval`` (console script
``deeplab-eval``), whose docstring says how to use it."""

from deeplab.tools import eval

if __name__ == "__main__":
  eval.main()
