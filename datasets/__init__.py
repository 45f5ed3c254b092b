"""Dataset builders: plain functions that write DeepLab TFRecords.

Installed as ``deeplab_datasets``; their command-line tools
(``deeplab-build-*``, ``deeplab-inspect``, ``deeplab-make-synthetic``) are
in ``deeplab/cli/``.
"""
