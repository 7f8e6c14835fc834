"""batchnorm (being written)."""
