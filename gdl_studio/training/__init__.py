"""Training support shared by the plugins' PyTorch training code (``plugins/<name>/train/``).

Only training code imports this package, and most of it imports torch (the ``[train]``
extra): the app never does (import-linter contracts in ``pyproject.toml``).  It holds what
every trainer needs and nothing about any one model:

- ``errors``: ``TrainError`` (a problem the user can fix) and ``fail`` (one line, exit 2)
- ``cli``: the command around a run: options, ``--resume`` rules, Ctrl+C, progress, ``main``
- ``distributed``: the process's device and rank under torchrun, and the collectives
- ``checkpoints``: atomic files, ``weights_only`` checkpoints and per-rank RNG streams
- ``export``: ONNX export (dynamo, then TorchScript) checked in ONNX Runtime before it lands
- ``cards``: card.json, the record beside every exported model
- ``bench``: timing for ``gdl-studio bench`` (no torch import: it runs in the app's process)

A plugin's trainer imports what it uses from the submodule, e.g.
``from gdl_studio.training.checkpoints import atomic_save``.
"""
