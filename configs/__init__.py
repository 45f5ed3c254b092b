"""Experiment configs: one ``ml_collections`` file per experiment.

Each file's ``get_config()`` starts from ``deeplab.config.base_config()``
(where every field is documented) and changes what its experiment needs.
Use them with ``--config=configs/<name>.py --config.train.batch_size=8``.
"""
