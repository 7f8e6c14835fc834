"""Elementwise activation functions: forward, derivative and fused backward.

Each function takes a float32 or float64 array of any shape and returns a new array of the same
shape and dtype. The kernels are vectorised and parallel; see ``activation_forward`` for the
kinds and their formulas.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from gradwatch._core_loader import _core
from gradwatch._validation import choice, float_arrays, real_scalar, shape_text

KINDS = (
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "gelu_tanh",
    "silu",
    "softplus",
)

# The kinds with a parameter, and its default.
DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}

_KIND_CODES = {name: getattr(_core.Activation, name) for name in KINDS}
_FLOAT32 = np.dtype(np.float32)
_FORWARD = {
    _FLOAT32: _core.activation_forward_f32,
    np.dtype(np.float64): _core.activation_forward_f64,
}
_DERIVATIVE = {
    _FLOAT32: _core.activation_derivative_f32,
    np.dtype(np.float64): _core.activation_derivative_f64,
}
_BACKWARD = {
    _FLOAT32: _core.activation_backward_f32,
    np.dtype(np.float64): _core.activation_backward_f64,
}


def _kind_and_alpha(kind: object, alpha: object) -> tuple:
    """The core's code for ``kind`` and the alpha to use; raises for invalid arguments."""
    code = _KIND_CODES.get(kind) if isinstance(kind, str) else None
    if code is None:
        choice("kind", kind, KINDS)  # raises: kind is not one of KINDS
    if alpha is None:
        return code, DEFAULT_ALPHA.get(kind, 0.0)
    if kind not in DEFAULT_ALPHA:
        raise ValueError(
            f"kind {kind!r} takes no alpha (only 'leaky_relu' and 'elu' do), got alpha={alpha!r}"
        )
    return code, real_scalar("alpha", alpha)


def activation_forward(x, kind: str, *, alpha: Optional[float] = None) -> np.ndarray:
    """Apply an activation function elementwise: ``y = f(x)``.

    Parameters
    ----------
    x : array_like of float32 or float64
        Input of any shape. Lists and non-contiguous arrays are accepted (copied once).
    kind : str
        One of (``a`` is ``alpha``; ``Phi`` the standard normal CDF):

        - ``"identity"``: ``x``
        - ``"sigmoid"``: ``1 / (1 + exp(-x))``
        - ``"tanh"``: ``tanh(x)``
        - ``"relu"``: ``max(x, 0)`` (Nair & Hinton 2010)
        - ``"leaky_relu"``: ``x`` for ``x > 0``, else ``a x``; default ``a = 0.01``
          (Maas et al. 2013)
        - ``"elu"``: ``x`` for ``x > 0``, else ``a (exp(x) - 1)``; default ``a = 1``
          (Clevert et al. 2016)
        - ``"selu"``: ``scale * elu(x)`` with PyTorch's ``alpha = 1.6732632423543772848``,
          ``scale = 1.0507009873554804934`` (Klambauer et al. 2017)
        - ``"gelu"``: ``x Phi(x) = x (1 + erf(x / sqrt(2))) / 2`` (Hendrycks & Gimpel 2016)
        - ``"gelu_tanh"``: ``x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2``, the tanh
          approximation of gelu (PyTorch's ``approximate="tanh"``)
        - ``"silu"``: ``x sigmoid(x)`` (Elfwing et al. 2018; "swish", Ramachandran et al. 2017)
        - ``"softplus"``: ``log(1 + exp(x))``, computed as ``max(x, 0) + log1p(exp(-|x|))``
          (Dugas et al. 2001)
    alpha : float, optional
        The parameter of ``"leaky_relu"`` (negative slope) and ``"elu"``; any finite number.
        Other kinds take none.

    Returns
    -------
    numpy.ndarray
        ``f(x)``, same shape and dtype as ``x``.

    Shape
    -----
    ``x``: any shape, including 0-d and empty; the output has the same shape.

    Raises
    ------
    TypeError
        If ``x`` is not float32/float64 (integer, bool, complex, float16 arrays, ...), ``kind``
        is not a string, or ``alpha`` is not a real number.
    ValueError
        If ``kind`` is unknown (the message lists the valid kinds), ``alpha`` is given for a
        kind that takes none, or ``alpha`` is not finite.

    Notes
    -----
    Every formula is evaluated in a form that is stable for all finite inputs: sigmoid through
    ``exp(-|x|)`` (``sigmoid(-1000)`` is 0, not ``1 / inf``), softplus as above
    (``softplus(1000) = 1000``), gelu as ``x erfc(-x / sqrt(2)) / 2`` (no ``1 + erf``
    cancellation for ``x << 0``), gelu_tanh as ``x sigmoid(2u)``. NaN in gives NaN out. At
    infinities the limits are returned where PyTorch's formula gives NaN (``gelu(-inf) = 0``).

    References
    ----------
    Nair & Hinton, "Rectified Linear Units Improve Restricted Boltzmann Machines", ICML 2010.
    Maas, Hannun & Ng, "Rectifier Nonlinearities Improve Neural Network Acoustic Models", 2013.
    Clevert, Unterthiner & Hochreiter, "Fast and Accurate Deep Network Learning by Exponential
    Linear Units (ELUs)", ICLR 2016.
    Klambauer, Unterthiner, Mayr & Hochreiter, "Self-Normalizing Neural Networks", NeurIPS 2017.
    Hendrycks & Gimpel, "Gaussian Error Linear Units (GELUs)", arXiv:1606.08415, 2016.
    Elfwing, Uchibe & Doya, "Sigmoid-Weighted Linear Units for Neural Network Function
    Approximation in Reinforcement Learning", Neural Networks 2018.
    Dugas, Bengio, Belisle, Nadeau & Garcia, "Incorporating Second-Order Functional Knowledge
    for Better Option Pricing", NeurIPS 2001.
    """
    code, alpha_value = _kind_and_alpha(kind, alpha)
    (array,) = float_arrays(("x", x))
    return _FORWARD[array.dtype](array, code, alpha_value)


def activation_derivative(x, kind: str, *, alpha: Optional[float] = None) -> np.ndarray:
    """Elementwise derivative ``f'(x)`` of an activation function.

    Parameters
    ----------
    x : array_like of float32 or float64
        Input of any shape.
    kind : str
        The activation, see ``activation_forward``.
    alpha : float, optional
        The parameter of ``"leaky_relu"`` and ``"elu"``.

    Returns
    -------
    numpy.ndarray
        ``f'(x)``, same shape and dtype as ``x``.

    Shape
    -----
    ``x``: any shape; the output has the same shape.

    Raises
    ------
    TypeError, ValueError
        As ``activation_forward``.

    Notes
    -----
    At kinks PyTorch's choice: ``relu'(0) = 0``, ``leaky_relu'(0) = alpha``,
    ``elu'(0) = alpha`` (the ``x <= 0`` branch ``alpha exp(x)``), ``selu'(0) = scale alpha``.
    Other derivatives: ``sigmoid' = s (1 - s)`` (as ``e / (1 + e)^2``, ``e = exp(-|x|)``),
    ``tanh' = 1 - tanh^2`` (as ``4e / (1 + e)^2``, ``e = exp(-2|x|)``),
    ``gelu' = Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi)``,
    ``gelu_tanh' = s + x s (1 - s) 2u'`` with ``s = sigmoid(2u)``,
    ``silu' = s + x s (1 - s)`` with ``s = sigmoid(x)``, ``softplus' = sigmoid``.
    NaN in gives NaN out, also for the piecewise constant derivatives (where PyTorch returns a
    constant); at infinities the limits are returned (``gelu'(+inf) = 1``).

    References
    ----------
    See ``activation_forward``.
    """
    code, alpha_value = _kind_and_alpha(kind, alpha)
    (array,) = float_arrays(("x", x))
    return _DERIVATIVE[array.dtype](array, code, alpha_value)


def activation_backward(grad_y, x, kind: str, *, alpha: Optional[float] = None) -> np.ndarray:
    """Gradient through an activation: ``grad_x = grad_y * f'(x)``, fused in one pass.

    Parameters
    ----------
    grad_y : array_like of float32 or float64
        Gradient of the loss with respect to ``y = f(x)``.
    x : array_like of float32 or float64
        The input of the forward pass, same shape and dtype as ``grad_y``.
    kind : str
        The activation, see ``activation_forward``.
    alpha : float, optional
        The parameter of ``"leaky_relu"`` and ``"elu"``.

    Returns
    -------
    numpy.ndarray
        ``grad_y * f'(x)``, same shape and dtype as ``x``; exactly the product, so a NaN or
        infinite ``grad_y`` meets a zero derivative as ``nan`` (``inf * 0``), unlike PyTorch's
        masking backward of relu.

    Shape
    -----
    ``grad_y``, ``x``: the same, any shape.

    Raises
    ------
    TypeError
        As ``activation_forward``; also if ``grad_y`` and ``x`` mix float32 and float64.
    ValueError
        As ``activation_forward``; also if ``grad_y`` and ``x`` differ in shape (the message
        gives both shapes).

    References
    ----------
    See ``activation_forward`` and ``activation_derivative``.
    """
    code, alpha_value = _kind_and_alpha(kind, alpha)
    grad_array, x_array = float_arrays(("grad_y", grad_y), ("x", x))
    if grad_array.shape != x_array.shape:
        raise ValueError(
            "grad_y and x must have the same shape, got "
            f"grad_y {shape_text(grad_array.shape)} and x {shape_text(x_array.shape)}"
        )
    return _BACKWARD[x_array.dtype](grad_array, x_array, code, alpha_value)
