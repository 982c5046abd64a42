"""Training code of the style-transfer plugin's "train your own style" (the [train] extra:
with ``gdl_studio.training``, the only place torch is imported).

- ``johnson``: the fast feed-forward style network (Johnson et al., instance norm,
  nearest-neighbour upsampling); ``python -m ...johnson`` times its widths
- ``perceptual``: the perceptual loss through EfficientNet-Lite0 (content, Gram-matrix style,
  total variation)
- ``data``: the content photos (random crops and flips) and the style image
- ``train_style``: ``python -m gdl_studio_plugins.style.train.train_style --help``
- ``export``: one ONNX file with dynamic height and width, checked in ONNX Runtime, its
  card.json and the manifest table
"""
