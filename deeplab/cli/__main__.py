"""``python -m deeplab.cli TOOL [FLAGS...]``: runs a tool of the table
(``deeplab.cli.TOOLS``) as its console script ``deeplab-TOOL`` does, its
runtime chosen before TensorFlow is imported."""

import sys

from deeplab import cli


def main() -> None:
  names = ", ".join(t.name for t in cli.TOOLS)
  if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
    sys.exit(f"usage: python -m deeplab.cli TOOL [FLAGS...]; tools: {names}")
  try:
    found = cli.tool(sys.argv[1])
  except KeyError as e:
    sys.exit(str(e.args[0]))
  sys.argv = [found.script] + sys.argv[2:]
  found()


if __name__ == "__main__":
  main()
