"""The kernels of the core as NumPy functions: activations, dense layers, batch norm, losses."""

from gradwatch.batchnorm import batchnorm_backward, batchnorm_forward, batchnorm_inference

__all__: list = ["batchnorm_backward", "batchnorm_forward", "batchnorm_inference"]
