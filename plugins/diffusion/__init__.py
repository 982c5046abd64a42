"""Diffusion plugin: a DDPM-trained U-Net denoiser, sampled with DDIM or DDPM ancestral steps."""
