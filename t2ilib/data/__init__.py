"""Datasets: ToyBirds, the CUB + AttnGAN-format reader, tensor caches, downloads."""
