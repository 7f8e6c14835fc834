"""The kernels of the core as NumPy functions: activations, dense layers, batch norm, losses."""

from gradwatch.loss import (
    binary_cross_entropy_with_logits,
    log_softmax,
    mse,
    softmax,
    softmax_cross_entropy,
)

__all__: list = [
    "binary_cross_entropy_with_logits",
    "log_softmax",
    "mse",
    "softmax",
    "softmax_cross_entropy",
]
