"""Dataset builders: absl apps that write DeepLab TFRecords.

Installed as ``deeplab_datasets`` with console scripts (``deeplab-build-*``,
``deeplab-inspect``, ``deeplab-make-synthetic``); ``python -m datasets.X`` in
a checkout.
"""
