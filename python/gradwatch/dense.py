"""Dense (fully connected) layers: ``y = x @ w + b`` and its gradients.

The weights are stored ``(fan_in, fan_out)``, so a layer is one GEMM without a transpose (PyTorch's
``nn.Linear`` stores the transpose, ``(fan_out, fan_in)``). Dims: N = batch, I = fan_in,
O = fan_out.
"""

from __future__ import annotations

import numpy as np

from gradwatch._core_loader import _core
from gradwatch._validation import float_arrays, require_ndim, shape_text

# OpenBLAS from scipy-openblas32 takes every dimension as a 32-bit int.
_BLAS_INT_MAX = 2**31 - 1

_FORWARD = {
    np.dtype(np.float32): _core.dense_forward_f32,
    np.dtype(np.float64): _core.dense_forward_f64,
}
_BACKWARD = {
    np.dtype(np.float32): _core.dense_backward_f32,
    np.dtype(np.float64): _core.dense_backward_f64,
}


def _check_x_and_w(x: np.ndarray, w: np.ndarray) -> tuple[int, int, int]:
    """Ranks and the shared fan_in of x (N, I) and w (I, O); returns (N, I, O)."""
    require_ndim("x", x, 2, "(N, I)")
    require_ndim("w", w, 2, "(I, O)")
    batch, fan_in = x.shape
    if w.shape[0] != fan_in:
        raise ValueError(
            f"w must have shape ({fan_in}, O) to match x of shape {shape_text(x.shape)}, "
            f"got {shape_text(w.shape)}"
        )
    return batch, fan_in, w.shape[1]


def _check_sizes(x: np.ndarray, w: np.ndarray) -> None:
    """Every dimension fits OpenBLAS's 32-bit integers, and none is empty."""
    batch, fan_in = x.shape
    fan_out = w.shape[1]
    for what, value, name, array in (
        ("N (batch)", batch, "x", x),
        ("I (fan_in)", fan_in, "x", x),
        ("O (fan_out)", fan_out, "w", w),
    ):
        if value > _BLAS_INT_MAX:
            raise ValueError(
                f"{what} = {value} of {name} (shape {shape_text(array.shape)}) does not fit "
                f"OpenBLAS's 32-bit integers (at most {_BLAS_INT_MAX})"
            )
    if batch == 0:
        raise ValueError(f"x is an empty batch (shape {shape_text(x.shape)})")
    if fan_in == 0:
        raise ValueError(f"x has no features: I (fan_in) is 0 (shape {shape_text(x.shape)})")
    if fan_out == 0:
        raise ValueError(f"w has no outputs: O (fan_out) is 0 (shape {shape_text(w.shape)})")


def dense_forward(x, w, b=None) -> np.ndarray:
    """Forward pass of a dense layer: ``x @ w + b``.

    Parameters
    ----------
    x : array_like
        Inputs, one row per sample.
    w : array_like
        Weights, ``(fan_in, fan_out)``.
    b : array_like or None, optional
        Bias, one per output; ``None`` for a layer without bias.

    Returns
    -------
    numpy.ndarray
        The outputs, in the dtype of the inputs.

    Shape
    -----
    x: (N, I), w: (I, O), b: (O,) -> (N, O); N = batch, I = fan_in, O = fan_out.

    Raises
    ------
    TypeError
        If an array is not float32 or float64 (integer, bool, complex, float16, ...), or float32
        is mixed with float64.
    ValueError
        If x or w is not 2-dimensional, w's first dimension is not x's second, b is not of
        shape (O,), N, I or O is 0, or a dimension exceeds OpenBLAS's 32-bit integers.

    Notes
    -----
    The product runs in OpenBLAS's GEMM with the bias as its starting value, so NaN and inf
    propagate as BLAS propagates them. The GEMM is split into blocks fixed by the shapes, each
    a single-threaded OpenBLAS call on one of gradwatch's threads, so the result is bitwise the
    same for any thread count. Non-contiguous or list inputs are copied once.

    References
    ----------
    Rumelhart, Hinton & Williams, "Learning representations by back-propagating errors",
    Nature 323 (1986): a layer computes ``y_j = sum_i x_i w_ij + b_j``.
    """
    x, w, b = float_arrays(("x", x), ("w", w), ("b", b))
    _, _, fan_out = _check_x_and_w(x, w)
    if b is not None and b.shape != (fan_out,):
        raise ValueError(
            f"b must have shape ({fan_out},) to match w of shape {shape_text(w.shape)}, "
            f"got {shape_text(b.shape)}"
        )
    _check_sizes(x, w)
    return _FORWARD[x.dtype](x, w, b)


def dense_backward(grad_y, x, w) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of a dense layer ``y = x @ w + b``.

    Parameters
    ----------
    grad_y : array_like
        Gradient of the loss with respect to the outputs y.
    x : array_like
        The inputs of the forward pass.
    w : array_like
        The weights of the forward pass, ``(fan_in, fan_out)``.

    Returns
    -------
    grad_x : numpy.ndarray
        ``grad_y @ w.T``, the gradient with respect to x.
    grad_w : numpy.ndarray
        ``x.T @ grad_y``, the gradient with respect to w.
    grad_b : numpy.ndarray
        ``grad_y.sum(0)``, the gradient with respect to b (whether or not the layer has one).

    Shape
    -----
    grad_y: (N, O), x: (N, I), w: (I, O) -> grad_x: (N, I), grad_w: (I, O), grad_b: (O,).

    Raises
    ------
    TypeError
        If an array is not float32 or float64, or float32 is mixed with float64.
    ValueError
        If an argument is not 2-dimensional, w does not match x, grad_y is not of shape (N, O),
        N, I or O is 0, or a dimension exceeds OpenBLAS's 32-bit integers.

    Notes
    -----
    grad_b sums the rows in a fixed order (chunks of 64 rows, then the chunk sums). grad_x and
    grad_w come from OpenBLAS's GEMM, split into blocks fixed by the shapes, each one
    single-threaded call. So every output is bitwise the same for any thread count.

    References
    ----------
    Rumelhart, Hinton & Williams, "Learning representations by back-propagating errors",
    Nature 323 (1986): with ``y = x w + b``, ``dL/dx = dL/dy w^T``, ``dL/dw = x^T dL/dy`` and
    ``dL/db = sum_n dL/dy_n``.
    """
    grad_y, x, w = float_arrays(("grad_y", grad_y), ("x", x), ("w", w))
    batch, _, fan_out = _check_x_and_w(x, w)
    require_ndim("grad_y", grad_y, 2, "(N, O)")
    if grad_y.shape != (batch, fan_out):
        raise ValueError(
            f"grad_y must have shape ({batch}, {fan_out}) to match x of shape "
            f"{shape_text(x.shape)} and w of shape {shape_text(w.shape)}, "
            f"got {shape_text(grad_y.shape)}"
        )
    _check_sizes(x, w)
    return _BACKWARD[x.dtype](grad_y, x, w)


__all__ = ["dense_backward", "dense_forward"]
