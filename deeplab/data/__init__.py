"""Data: the record schema, the dataset table, builders, the tf.data pipeline."""
