"""Metrics: R-precision, FID/IS, ToyBirds oracle, mask IoU."""
