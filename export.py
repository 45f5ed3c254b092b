"""Thin entry point; the tool is ``deeplab.tools.export`` (console script
``deeplab-export``), whose docstring says how to use it."""

from deeplab.tools import export

if __name__ == "__main__":
  export.main()
