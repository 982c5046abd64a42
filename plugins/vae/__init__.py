"""The VAE latent explorer plugin: encoders and decoders trained by plugins/vae/train, run
through ONNX Runtime."""
