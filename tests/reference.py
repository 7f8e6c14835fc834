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

# Elementwise, any shape: x, y, grad_y, grad_x all have the shape of x. alpha: leaky_relu's negative
# slope (default 0.01) or elu's alpha (default 1.0); ignored by the other kinds.

ACTIVATION_KINDS = (
    "identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh",
    "silu", "softplus",
)
ACTIVATION_DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}
# Kinds whose derivative is a function of the output (activation_backward_from_output).
ACTIVATION_FROM_OUTPUT_KINDS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu")

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_TANH_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_CUBIC = 0.044715

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _sigmoid(x):
    # Two branches so that neither exp overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _normal_cdf(x):
    return 0.5 * _erfc(-x / math.sqrt(2.0))


def _normal_pdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _gelu_tanh_inner(x):
    return GELU_TANH_SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x**3)


def activation_alpha(kind, alpha=None):
    """The alpha a kind uses: the given one or its default (None for kinds without alpha)."""
    return ACTIVATION_DEFAULT_ALPHA.get(kind) if alpha is None else alpha


def activation_forward(x, kind, alpha=None):
    """y = f(x).  x: any shape -> y: same shape."""
    x = as64(x)
    a = activation_alpha(kind, alpha)
    if kind == "identity":
        return x.copy()
    if kind == "sigmoid":
        return _sigmoid(x)
    if kind == "tanh":
        return np.tanh(x)
    if kind == "relu":
        return np.where(x < 0, 0.0, x)
    if kind == "leaky_relu":
        return np.where(x < 0, a * x, x)
    if kind == "elu":
        return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0)))
    if kind == "selu":
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))
    if kind == "gelu":
        return x * _normal_cdf(x)
    if kind == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(_gelu_tanh_inner(x)))
    if kind == "silu":
        return x * _sigmoid(x)
    if kind == "softplus":
        return np.logaddexp(0.0, x)
    raise ValueError(f"unknown kind {kind!r}")


def activation_derivative(x, kind, alpha=None):
    """f'(x), PyTorch's choice at kinks (relu'(0) = 0, leaky_relu'(0) = elu'(0) = alpha).
    x: any shape -> same shape."""
    x = as64(x)
    a = activation_alpha(kind, alpha)
    if kind == "identity":
        return np.ones_like(x)
    if kind == "sigmoid":
        s = _sigmoid(x)
        return s * (1.0 - s)
    if kind == "tanh":
        return 1.0 - np.tanh(x) ** 2
    if kind == "relu":
        return np.where(x > 0, 1.0, 0.0)
    if kind == "leaky_relu":
        return np.where(x > 0, 1.0, a)
    if kind == "elu":
        return np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0.0)))
    if kind == "selu":
        return SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))
    if kind == "gelu":
        return _normal_cdf(x) + x * _normal_pdf(x)
    if kind == "gelu_tanh":
        t = np.tanh(_gelu_tanh_inner(x))
        inner_slope = GELU_TANH_SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_CUBIC * x * x)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner_slope
    if kind == "silu":
        s = _sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    if kind == "softplus":
        return _sigmoid(x)
    raise ValueError(f"unknown kind {kind!r}")


def activation_backward(grad_y, x, kind, alpha=None):
    """grad_x = grad_y * f'(x).  grad_y, x: same shape -> grad_x: same shape."""
    return as64(grad_y) * activation_derivative(x, kind, alpha)


def activation_backward_from_output(grad_y, y, kind, alpha=None):
    """grad_x = grad_y * f'(x) written in terms of y = f(x) (alpha > 0 for leaky_relu and elu).
    grad_y, y: same shape -> grad_x: same shape."""
    y = as64(y)
    a = activation_alpha(kind, alpha)
    if kind == "identity":
        slope = np.ones_like(y)
    elif kind == "sigmoid":
        slope = y * (1.0 - y)
    elif kind == "tanh":
        slope = 1.0 - y * y
    elif kind == "relu":
        slope = np.where(y > 0, 1.0, 0.0)
    elif kind == "leaky_relu":
        slope = np.where(y > 0, 1.0, a)
    elif kind == "elu":
        slope = np.where(y > 0, 1.0, y + a)
    elif kind == "selu":
        slope = np.where(y > 0, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA)
    else:
        raise ValueError(f"{kind!r} has no derivative in terms of its output")
    return as64(grad_y) * slope


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
