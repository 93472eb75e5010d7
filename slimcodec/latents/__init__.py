"""Latent codecs: how each architecture codes its latents into a payload and back."""
