"""Thin entry point; the tool is ``deeplab.tools.train`` (console script
``deeplab-train``), whose docstring says how to use it."""

from deeplab.tools import train

if __name__ == "__main__":
  train.main()
