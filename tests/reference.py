"""The oracle: plain NumPy float64 forward and backward of every kernel in gradwatch.

Readable first, fast never. Every function takes and returns float64 arrays; tests compare the
compiled kernels (in float32 and float64) against these.
Dims: N = batch, I = fan_in, O = fan_out, F = features, C = classes.
"""

import math

import numpy as np


def as64(a):
    return np.asarray(a, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------

# (end of activations)


# ---------------------------------------------------------------------------------------------
# dense
# ---------------------------------------------------------------------------------------------

# (end of dense)


# ---------------------------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------------------------

# Dims: N = batch, F = features; statistics per feature, over the batch (axis 0).


def batchnorm_statistics(x):
    """Mean and biased variance per feature, by the corrected two-pass algorithm.

    x: (N, F) -> mean, var: (F,). The correction term (Chan, Golub & LeVeque 1983) makes both
    accurate to rounding even when a large common offset dwarfs the spread (x = 1e4 + noise),
    where x.mean(axis=0), a running sum down the rows, is not.
    """
    x = as64(x)
    n = x.shape[0]
    mean = x.mean(axis=0)
    centred = x - mean
    mean = mean + centred.sum(axis=0) / n
    centred = x - mean
    var = ((centred**2).sum(axis=0) - centred.sum(axis=0) ** 2 / n) / n
    return mean, var


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Training mode. x: (N, F)  gamma, beta: (F,) -> y: (N, F), mean, var: (F,)."""
    mean, var = batchnorm_statistics(x)
    y = as64(gamma) * (as64(x) - mean) / np.sqrt(var + eps) + as64(beta)
    return y, mean, var


def batchnorm_backward(grad_y, x, gamma, mean, var, eps=1e-5):
    """Training mode, through the batch statistics (mean, var as the forward returned them).

    grad_y, x: (N, F)  gamma, mean, var: (F,) -> grad_x: (N, F), grad_gamma, grad_beta: (F,).
    """
    grad_y = as64(grad_y)
    n = grad_y.shape[0]
    inv_std = 1.0 / np.sqrt(as64(var) + eps)
    x_hat = (as64(x) - as64(mean)) * inv_std
    grad_beta = grad_y.sum(axis=0)
    grad_gamma = (grad_y * x_hat).sum(axis=0)
    grad_x = as64(gamma) * inv_std * (grad_y - grad_beta / n - x_hat * grad_gamma / n)
    return grad_x, grad_gamma, grad_beta


def batchnorm_inference(x, gamma, beta, running_mean, running_var, eps=1e-5):
    """x: (N, F)  gamma, beta, running_mean, running_var: (F,) -> y: (N, F)."""
    inv_std = 1.0 / np.sqrt(as64(running_var) + eps)
    return as64(gamma) * (as64(x) - as64(running_mean)) * inv_std + as64(beta)


# (end of batch norm)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------

# (end of losses)


# ---------------------------------------------------------------------------------------------
# initialisation
# ---------------------------------------------------------------------------------------------

# (end of initialisation)


# ---------------------------------------------------------------------------------------------
# finite differences
# ---------------------------------------------------------------------------------------------


def numerical_gradient(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function f at x (float64), same shape as x."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    grad_flat = grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        f_plus = f(x)
        flat[i] = original - eps
        f_minus = f(x)
        flat[i] = original
        grad_flat[i] = (f_plus - f_minus) / (2 * eps)
    return grad
