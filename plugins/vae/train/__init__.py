"""Training code of the VAE plugin (the [train] extra: the only place torch is imported).

- ``models``: Encoder, Decoder, VAE and the loss (discretised logistic NLL + beta * KL)
- ``train_vae``: ``python -m gdl_studio_plugins.vae.train.train_vae --help``
- ``export``: the encoder and decoder as two ONNX graphs, checked, with card.json and the
  manifest table (the map projection of a larger latent included)
- ``bench``: ``gdl-studio bench vae``
"""
