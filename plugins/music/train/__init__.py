"""Training code of the music plugin (the [train] extra: with ``gdl_studio.training``, the only
place torch is imported).

- ``model``: MusicTransformer (training) and the exported PrefillGraph / StepGraph
- ``data``: the JSB chorales (Jsb16thSeparated.npz) and solo-line MIDI folders as token
  sequences, batches, transposition
- ``train``: ``python -m gdl_studio_plugins.music.train.train --help``
- ``export``: the two ONNX graphs, checked against torch, card.json, the manifest table
- ``bench``: ``gdl-studio bench music``
"""
