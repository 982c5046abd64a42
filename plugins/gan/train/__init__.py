"""Training code of the GAN plugin (the [train] extra: with ``gdl_studio.training``, the only
place torch is imported).

- ``models``: Generator, Discriminator (DCGAN / WGAN critic / conditional / AC-GAN), Classifier
- ``train_gan``: ``python -m gdl_studio_plugins.gan.train.train_gan --help``
- ``train_classifier``: the independent evaluation classifier
- ``export``: ONNX export with checks, card.json, and ``torch_generator_from_onnx``
- ``common``: sample grids and the loss log

What every plugin's trainer needs (torchrun, checkpoints, ONNX export) is in
``gdl_studio.training``.
"""
