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

# (end of batch norm)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------


def softmax(x):
    """x: (N, C) -> (N, C), rows normalised, the row maximum subtracted first."""
    x = as64(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x):
    """x: (N, C) -> (N, C)."""
    x = as64(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def one_hot(labels, classes):
    """labels: (N,) class indices -> (N, C) float64."""
    labels = np.asarray(labels)
    out = np.zeros((labels.shape[0], classes))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def softmax_cross_entropy(logits, probs):
    """logits, probs: (N, C) -> (loss, grad (N, C)).

    loss = -(1/N) sum_n sum_c p[n, c] log_softmax(x)[n, c];
    grad = (softmax(x) * sum_c p[n, c] - p) / N (= (softmax - p) / N for rows of p summing to 1).
    """
    logits, probs = as64(logits), as64(probs)
    batch = logits.shape[0]
    loss = -(probs * log_softmax(logits)).sum() / batch
    grad = (softmax(logits) * probs.sum(axis=1, keepdims=True) - probs) / batch
    return loss, grad


def binary_cross_entropy_with_logits(x, t):
    """x, t: (*) -> (loss, grad (*)); loss = mean(max(x, 0) - x t + log1p(exp(-|x|)))."""
    x, t = as64(x), as64(t)
    decay = np.exp(-np.abs(x))
    loss = np.mean(np.maximum(x, 0) - x * t + np.log1p(decay))
    sigmoid = np.where(x >= 0, 1 / (1 + decay), decay / (1 + decay))
    return loss, (sigmoid - t) / x.size


def mse(pred, target):
    """pred, target: (*) -> (loss, grad (*)); loss = mean((pred - target)^2)."""
    diff = as64(pred) - as64(target)
    return np.mean(diff * diff), 2 * diff / diff.size


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
