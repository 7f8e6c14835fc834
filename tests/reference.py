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


def dense_forward(x, w, b=None):
    """y = x @ w + b.  x: (N, I)  w: (I, O)  b: (O,) or None  ->  y: (N, O)"""
    y = as64(x) @ as64(w)
    return y if b is None else y + as64(b)


def dense_backward(grad_y, x, w):
    """Gradients of y = x @ w + b.  grad_y: (N, O)  x: (N, I)  w: (I, O)
    ->  grad_x: (N, I), grad_w: (I, O), grad_b: (O,)"""
    grad_y, x, w = as64(grad_y), as64(x), as64(w)
    return grad_y @ w.T, x.T @ grad_y, grad_y.sum(axis=0)


# (end of dense)


# ---------------------------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------------------------

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
