"""The kernels of the core as NumPy functions: activations, dense layers, batch norm, losses."""

__all__: list = []
