"""Datasets: ToyBirds (procedural birds), the CUB + AttnGAN-format reader, tensor caches, downloads."""
