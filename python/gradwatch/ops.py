"""The kernels of the core as NumPy functions: activations, dense layers, batch norm, losses."""

from gradwatch.activations import activation_backward, activation_derivative, activation_forward
from gradwatch.batchnorm import batchnorm_backward, batchnorm_forward, batchnorm_inference
from gradwatch.dense import dense_backward, dense_forward
from gradwatch.loss import (
    binary_cross_entropy_with_logits,
    log_softmax,
    mse,
    softmax,
    softmax_cross_entropy,
)

__all__ = [
    "activation_backward",
    "activation_derivative",
    "activation_forward",
    "batchnorm_backward",
    "batchnorm_forward",
    "batchnorm_inference",
    "binary_cross_entropy_with_logits",
    "dense_backward",
    "dense_forward",
    "log_softmax",
    "mse",
    "softmax",
    "softmax_cross_entropy",
]
