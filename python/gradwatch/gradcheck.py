"""Central-difference check of a network's analytic gradients."""

from __future__ import annotations

import numpy as np

from gradwatch._validation import positive_scalar
from gradwatch.network import MLP


def gradcheck(net: MLP, x, y, *, eps: float = 1e-6, floor: float = 1e-4) -> dict:
    """Compare every analytic gradient of a float64 network with central differences.

    For each entry ``w`` of every parameter, the training-mode loss ``f`` is evaluated at
    ``w + eps`` and ``w - eps`` (the entry is restored exactly afterwards), and::

        numeric = (f(w + eps) - f(w - eps)) / (2 eps)
        error = |analytic - numeric| / max(|analytic|, |numeric|, floor)

    Batch norm uses the batch statistics and dropout the masks of the current
    ``net.dropout_step`` in every evaluation, so the loss is one smooth function of the
    parameters (away from the kinks of relu-like activations). Nothing is left changed.

    Parameters
    ----------
    net : gradwatch.MLP
        A float64 network (float32 differences would be swamped by rounding).
    x, y : array_like
        A batch, as for :meth:`gradwatch.MLP.loss_and_gradients`.
    eps : float, default 1e-6
        The step of the central differences.
    floor : float, default 1e-4
        The smallest denominator: gradients far below it (e.g. a bias followed by batch norm,
        whose gradient is 0 up to rounding) are compared absolutely, in units of floor.

    Returns
    -------
    dict of str to float
        The worst error of each parameter, keyed like ``net.parameters``.

    Raises
    ------
    TypeError
        If ``net`` is not an MLP or not float64.
    ValueError
        If ``eps`` or ``floor`` is not a finite number > 0, or for invalid ``x``/``y`` (see
        :meth:`gradwatch.MLP.loss_and_gradients`).

    References
    ----------
    The central difference has error O(eps^2) in exact arithmetic; with rounding the total is
    about eps^2 |f'''| + ulp(f) / eps, smallest near eps = 1e-5 .. 1e-6 for f of order 1.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a gradwatch.MLP, got {type(net).__name__}")
    if net.dtype != np.float64:
        raise TypeError(
            f"gradcheck needs a float64 network (float32 rounding swamps the differences), got "
            f"{net.dtype.name}; build one with dtype='float64'"
        )
    eps = positive_scalar("eps", eps)
    floor = positive_scalar("floor", floor)
    x = net._x(x)
    y = net._y(y, x.shape[0])
    _, grads = net.loss_and_gradients(x, y)
    core = net._core
    worst = {}
    index = 0
    for (name, analytic), values in zip(grads.items(), core.parameters()):
        errors = []
        for value, original in zip(analytic.reshape(-1), values.reshape(-1)):
            core.exchange_parameter(index, original + eps)
            plus = core.loss(x, y)
            core.exchange_parameter(index, original - eps)
            minus = core.loss(x, y)
            core.exchange_parameter(index, original)
            numeric = (plus - minus) / (2 * eps)
            errors.append(abs(value - numeric) / max(abs(value), abs(numeric), floor))
            index += 1
        worst[name] = float(max(errors))
    return worst


__all__ = ["gradcheck"]
