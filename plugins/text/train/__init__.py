"""Training code of the text plugin (the [train] extra: with ``gdl_studio.training``, the only
place torch is imported).

- ``model``: CharLSTM (training) and CharLSTMStep (the exported one-character graph)
- ``train``: ``python -m gdl_studio_plugins.text.train.train --help``
- ``export``: ONNX export with checks, optional int8, card.json, the manifest table
- ``bench``: ``gdl-studio bench text``

What every plugin's trainer needs (torchrun, checkpoints, ONNX export) is in
``gdl_studio.training``.
"""
