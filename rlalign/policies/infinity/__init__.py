"""Infinity (FoundationVision) text-to-image next-scale family: BSQ VAE, transformer, sampler, policy."""
