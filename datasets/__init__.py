"""Dataset builders: absl apps that write DeepLab TFRecords (``python -m datasets.X``)."""
