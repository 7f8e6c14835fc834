"""The kernels of the core as NumPy functions: activations, dense layers, batch norm, losses."""

from gradwatch.activations import activation_backward, activation_derivative, activation_forward

__all__: list = ["activation_backward", "activation_derivative", "activation_forward"]
