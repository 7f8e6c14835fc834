"""Losses and softmax: forward and gradient in one fused, parallel pass of the compiled core.

Every loss returns ``(loss, grad)``: the loss as a Python float, accumulated in float64 whatever
the input dtype, and its gradient with respect to the first argument in the input's dtype.
The reductions run in a fixed order (per row, or per chunk of 8192 elements, added in index
order), so the loss has the same bits on any number of threads.
NaN in the logits or predictions gives NaN out; NaN in labels or targets is a ValueError.
"""

from __future__ import annotations

import numpy as np

from gradwatch._core_loader import _core
from gradwatch._validation import float_arrays, require_ndim, require_nonempty, shape_text

__all__ = [
    "binary_cross_entropy_with_logits",
    "log_softmax",
    "mse",
    "softmax",
    "softmax_cross_entropy",
]

_INT64_MAX = np.iinfo(np.int64).max


def _floats(*named: tuple[str, object]) -> tuple[np.ndarray, ...]:
    """float_arrays, keeping 0-d inputs 0-d (np.ascontiguousarray makes them 1-d)."""
    converted = float_arrays(*named)
    return tuple(
        array.reshape(()) if array.shape == (1,) and np.ndim(value) == 0 else array
        for array, (_, value) in zip(converted, named)
    )


def _as_rows(logits) -> np.ndarray:
    """``logits`` as a C-contiguous float array of at least one row and one class."""
    (x,) = _floats(("logits", logits))
    if x.ndim == 0:
        raise ValueError("logits must have at least 1 dimension (..., C), got a 0-d array")
    if x.size == 0:
        raise ValueError(
            f"logits is empty (shape {shape_text(x.shape)}); softmax needs at least one row "
            "and one class"
        )
    return x


def softmax(logits) -> np.ndarray:
    """Softmax over the last axis.

    Parameters
    ----------
    logits : array_like of float32 or float64
        Scores, at least 1-D; every row along the last axis is normalised independently.

    Returns
    -------
    numpy.ndarray
        Probabilities, same shape and dtype as ``logits``; each row sums to 1 up to rounding.

    Shape
    -----
    logits: (..., C) -> (..., C)

    Raises
    ------
    TypeError
        If ``logits`` is not float32 or float64 (integer, bool, complex, float16 arrays).
    ValueError
        If ``logits`` is 0-d or empty.

    Notes
    -----
    The row maximum is subtracted first, so any finite logits are safe (no overflow). A row with
    a NaN is NaN; a row with a +inf, or whose entries are all -inf, is NaN as in PyTorch; a -inf
    entry among finite ones gets probability 0.

    References
    ----------
    Bridle, J. S. (1990). Probabilistic interpretation of feedforward classification network
    outputs. softmax(x)_c = exp(x_c - max_k x_k) / sum_k exp(x_k - max_k x_k).
    """
    x = _as_rows(logits)
    return _core.softmax(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def log_softmax(logits) -> np.ndarray:
    """Logarithm of the softmax over the last axis, computed without forming the softmax.

    Parameters
    ----------
    logits : array_like of float32 or float64
        Scores, at least 1-D; rows along the last axis are independent.

    Returns
    -------
    numpy.ndarray
        ``log(softmax(logits))``, same shape and dtype as ``logits``; finite for any finite
        logits (no log(0)).

    Shape
    -----
    logits: (..., C) -> (..., C)

    Raises
    ------
    TypeError
        If ``logits`` is not float32 or float64.
    ValueError
        If ``logits`` is 0-d or empty.

    Notes
    -----
    NaN and infinities follow PyTorch: a row with a NaN or a +inf, or of all -inf, is NaN; a
    -inf entry among finite ones gives -inf.

    References
    ----------
    log_softmax(x)_c = (x_c - m) - log(sum_k exp(x_k - m)), m = max_k x_k.
    """
    x = _as_rows(logits)
    return _core.log_softmax(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _class_indices(labels: np.ndarray, batch: int, classes: int) -> np.ndarray:
    """Integer ``labels`` as a C-contiguous int64 (N,) array; the range is checked in C++."""
    if labels.ndim != 1:
        raise ValueError(
            f"integer labels are class indices and must have shape (N,) = ({batch},), got "
            f"{shape_text(labels.shape)}; pass probabilities as a float array of shape "
            f"({batch}, {classes})"
        )
    if labels.shape[0] != batch:
        raise ValueError(
            f"labels must have shape (N,) = ({batch},) to match logits of shape "
            f"({batch}, {classes}), got {shape_text(labels.shape)}"
        )
    if labels.dtype == np.uint64 and labels.max() > _INT64_MAX:
        raise ValueError(
            f"labels must be class indices in [0, {classes}), got {int(labels.max())}"
        )
    return np.ascontiguousarray(labels, dtype=np.int64)


def softmax_cross_entropy(logits, labels) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against labels, and its gradient, in one pass.

    Parameters
    ----------
    logits : array_like of float32 or float64
        Unnormalised scores, shape (N, C).
    labels : array_like
        Either class indices, an integer array (any integer dtype) of shape (N,) with values in
        [0, C), or target probabilities, a float array of shape (N, C) in the dtype of
        ``logits`` (rows normally summing to 1, as PyTorch's ``cross_entropy`` with
        probabilities).

    Returns
    -------
    loss : float
        ``(1/N) sum_n -sum_c p[n, c] log softmax(logits)[n, c]`` (p one-hot for class indices),
        accumulated in float64; identical bits on any number of threads.
    grad_logits : numpy.ndarray
        d loss / d logits = ``(softmax(logits) * sum_c p[n, c] - p) / N``, which is
        ``(softmax(logits) - p) / N`` when each row of p sums to 1; dtype of ``logits``.

    Shape
    -----
    logits: (N, C), labels: (N,) or (N, C) -> (), (N, C)

    Raises
    ------
    TypeError
        If ``logits`` is not float32/float64; if ``labels`` is bool, complex or non-numeric; if
        ``labels`` is a 1-D float array (class indices must be integers); if float probabilities
        have another dtype than ``logits``.
    ValueError
        If ``logits`` is not 2-D or is empty; if class indices have the wrong length or a value
        outside [0, C) (the message names it); if probabilities do not have shape (N, C) or
        contain NaN.

    Notes
    -----
    Stable for any finite logits: the row maximum is subtracted, and the label's logit minus the
    maximum is taken in float64. NaN logits give a NaN loss and NaN gradient rows (no error);
    +inf and -inf logits give what PyTorch gives (a -inf logit of the true class: loss inf).

    References
    ----------
    Goodfellow, Bengio & Courville (2016), Deep Learning, sec. 6.2.2.3:
    loss = -(1/N) sum_n sum_c p[n, c] (x[n, c] - logsumexp(x[n, :])).
    """
    (x,) = _floats(("logits", logits))
    require_ndim("logits", x, 2, "shape (N, C)")
    if x.size == 0:
        raise ValueError(
            f"logits is empty (shape {shape_text(x.shape)}); need N >= 1 samples and C >= 1 classes"
        )
    batch, classes = x.shape
    if isinstance(labels, np.ndarray):
        label_array = labels
    else:
        try:
            label_array = np.asarray(labels)
        except (ValueError, TypeError) as error:
            raise TypeError(f"labels must be array-like of numbers: {error}") from None
    kind = label_array.dtype.kind
    if kind in "iu":
        return _core.softmax_cross_entropy(x, _class_indices(label_array, batch, classes))
    if kind == "f":
        if label_array.ndim == 1:
            raise TypeError(
                f"labels is a 1-D float array ({label_array.dtype.name}): class indices must be "
                "integers (use labels.astype(np.int64)); probabilities must have shape "
                f"(N, C) = ({batch}, {classes})"
            )
        x, probs = _floats(("logits", x), ("labels", labels))
        if probs.shape != x.shape:
            raise ValueError(
                f"probability labels must have the shape of logits ({batch}, {classes}), got "
                f"{shape_text(probs.shape)}"
            )
        return _core.softmax_cross_entropy(x, probs)
    raise TypeError(
        "labels must be integer class indices of shape (N,) or float probabilities of shape "
        f"(N, C), got dtype {label_array.dtype.name}"
    )


def _same_shape_pair(first: str, a, second: str, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _floats((first, a), (second, b))
    require_nonempty(first, a)
    if a.shape != b.shape:
        raise ValueError(
            f"{second} must have the shape of {first} {shape_text(a.shape)}, got "
            f"{shape_text(b.shape)}"
        )
    return a, b


def binary_cross_entropy_with_logits(logits, targets) -> tuple[float, np.ndarray]:
    """Mean binary cross-entropy of sigmoid(logits) against targets, and its gradient.

    Parameters
    ----------
    logits : array_like of float32 or float64
        Scores of any shape, non-empty.
    targets : array_like
        Same shape and dtype as ``logits``; usually in [0, 1], but, as in PyTorch, any real
        value is accepted.

    Returns
    -------
    loss : float
        ``mean(max(x, 0) - x t + log1p(exp(-|x|)))`` over all elements, accumulated in float64;
        identical bits on any number of threads.
    grad : numpy.ndarray
        d loss / d logits = ``(sigmoid(x) - t) / x.size``, dtype of ``logits``.

    Shape
    -----
    logits: (*), targets: (*) -> (), (*)

    Raises
    ------
    TypeError
        If an argument is not float32/float64, or float32 is mixed with float64.
    ValueError
        If ``logits`` is empty, the shapes differ, or ``targets`` contains NaN.

    Notes
    -----
    The stable form never evaluates exp of a positive number, so any finite logit is safe
    (logit 1e4 with target 0 costs 1e4). NaN logits give NaN (no error).

    References
    ----------
    PyTorch ``binary_cross_entropy_with_logits`` (reduction "mean"):
    loss = mean(-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))).
    """
    x, t = _same_shape_pair("logits", logits, "targets", targets)
    return _core.binary_cross_entropy_with_logits(x, t)


def mse(pred, target) -> tuple[float, np.ndarray]:
    """Mean squared error and its gradient with respect to ``pred``.

    Parameters
    ----------
    pred : array_like of float32 or float64
        Predictions of any shape, non-empty.
    target : array_like
        Same shape and dtype as ``pred``.

    Returns
    -------
    loss : float
        ``mean((pred - target)^2)`` over all elements, accumulated in float64; identical bits on
        any number of threads.
    grad : numpy.ndarray
        d loss / d pred = ``2 (pred - target) / pred.size``, dtype of ``pred``.

    Shape
    -----
    pred: (*), target: (*) -> (), (*)

    Raises
    ------
    TypeError
        If an argument is not float32/float64, or float32 is mixed with float64.
    ValueError
        If ``pred`` is empty, the shapes differ, or ``target`` contains NaN.

    References
    ----------
    PyTorch ``mse_loss`` (reduction "mean"): loss = mean((pred - target)^2).
    """
    p, t = _same_shape_pair("pred", pred, "target", target)
    return _core.mse(p, t)
