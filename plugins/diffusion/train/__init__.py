"""Training the diffusion plugin's denoiser (the [train] extra: PyTorch)."""
