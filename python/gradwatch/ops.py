"""The kernels of the core as NumPy functions: activations, dense layers, batch norm, losses."""

from gradwatch.dense import dense_backward, dense_forward

__all__: list = ["dense_backward", "dense_forward"]
