"""Mean-field signal propagation in wide fully-connected networks at initialisation.

A dense layer ``h = x @ W + b`` with ``Var W = sigma_w^2 / fan_in`` and ``Var b = sigma_b^2``,
followed by an activation ``phi``, maps the second moment of the pre-activations (one unit,
averaged over the weights: ``q = E[h^2]``) by the *length map* (Poole et al. 2016, eq. 3)::

    q^{l+1} = sigma_w^2 E[phi(sqrt(q^l) z)^2] + sigma_b^2,        z ~ N(0, 1)

and, in the backward pass, multiplies the squared norm of the backpropagated gradient by
(Schoenholz et al. 2017, eq. 5 and section 4)::

    chi_1(q) = sigma_w^2 E[phi'(sqrt(q) z)^2]

``chi_1 < 1``: gradients vanish with depth (ordered phase); ``chi_1 > 1``: they explode
(chaotic phase); ``chi_1 = 1``: the edge of chaos. Here ``chi`` of layer ``l`` is the
predicted ratio ``||dL/dx_l||^2 / ||dL/da_l||^2`` between the gradient a layer sends to its
input and the gradient arriving at its output ``a_l = phi(h_l)`` (each the sum over units,
averaged over samples): the ratio that gradwatch's telemetry measures per layer.

With batch norm after the dense layer (``h -> BN(h) -> phi``) the factor no longer depends on
``sigma_w`` and is a function of the batch size (Yang et al. 2019): see
:func:`batchnorm_gradient_growth`.

Numerics. Every Gaussian expectation is computed in float64 by quadrature, not by sampling.
All of gradwatch's activations are smooth except at 0 (relu, leaky_relu: a jump of phi';
elu, selu: a jump of phi' or phi''), where Gauss-Hermite quadrature converges only
algebraically (E[elu'(z)^2] is off by 1.6e-3 with 200 ``hermegauss`` nodes), and for large q
``phi(sqrt(q) z)`` varies on the scale ``1 / sqrt(q)`` near ``z = 0``, which a fixed rule
misses (Gauss-Hermite, or one Gauss-Legendre panel, is off by 1.7e-2 for tanh' at q = 1e4).
So each half-line ``[0, 12]`` (the normal mass beyond 12 is 3.6e-33) is cut into
Gauss-Legendre panels (16 nodes each) ``[6, 12], [3, 6], ...`` halving towards 0 until the
first is shorter than ``0.5 / sqrt(q)``. Two-dimensional expectations (the correlation map)
use polar coordinates: the same panels in the radius, and the angle split at the kink rays
``u_1 = 0``, ``u_2 = 0`` with panels graded towards them (down to ``0.25 / sqrt(q)``).
Measured against a 400-panel composite rule for every activation and q in [1e-4, 1e4]: the
relative error is below 1e-15 in one dimension and 1e-13 in two (tests/test_theory.py checks
closed forms to 1e-12). ``phi`` and ``phi'`` are gradwatch's own float64 kernels
(:mod:`gradwatch.activations`), so the theory sees exactly the functions the networks use.

References
----------
Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli, "Exponential expressivity in deep neural networks
through transient chaos", NeurIPS 2016: the length map, the correlation map
``c^{l+1} = (sigma_w^2 E[phi(u_1) phi(u_2)] + sigma_b^2) / q*``, ``chi_1``.
Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep Information Propagation", ICLR 2017: the
depth scales ``xi_q^{-1} = -log(chi_1 + sigma_w^2 E[phi'' phi])``,
``xi_c^{-1} = -log(sigma_w^2 E[phi'(u_1) phi'(u_2)])`` at ``(q*, c*)`` and the gradient depth
scale ``xi_grad^{-1} = -log chi_1``.
Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz, "A Mean Field Theory of Batch
Normalization", ICLR 2019: gradient explosion in batch-normalised networks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from numpy.polynomial.legendre import leggauss

from gradwatch import _validation
from gradwatch import init as _init
from gradwatch.activations import DEFAULT_ALPHA, KINDS, activation_derivative, activation_forward

_Z_MAX = 12.0  # the normal mass beyond |z| = 12 is 3.6e-33
_PANEL_NODES = 16
_ANGLE_NODES = 16
_INFINITE_Q = 1e150  # a length-map iterate beyond this: no finite fixed point
_TINY_Q = 1e-14  # below this the sign of L(q) - q is lost in rounding: q* is reported as 0
_CRITICAL_TOLERANCE = 1e-9  # |chi_1 - 1| below this is "critical"
_ANGLE_T, _ANGLE_W = leggauss(_ANGLE_NODES)


@functools.lru_cache(maxsize=64)
def _line_rule(halvings: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of E[f(z)], z ~ N(0, 1): on each side of 0, Gauss-Legendre panels
    [0, 12 / 2^halvings], ..., [3, 6], [6, 12]."""
    t, w = leggauss(_PANEL_NODES)
    edges = [0.0] + [_Z_MAX * 0.5**k for k in range(halvings, -1, -1)]
    nodes, weights = [], []
    for start, stop in zip(edges[:-1], edges[1:]):
        half = 0.5 * (stop - start)
        nodes.append(start + half * (t + 1.0))
        weights.append(half * w)
    z = np.concatenate(nodes)
    density = np.concatenate(weights) * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return np.concatenate([-z[::-1], z]), np.concatenate([density[::-1], density])


def _rule(q: float) -> tuple[np.ndarray, np.ndarray]:
    """The line rule for phi(sqrt(q) z): phi varies on the scale |sqrt(q) z| ~ 1, so panels
    halve down to 1 / (2 sqrt(q)) (at least down to 0.75)."""
    finest = 0.5 / math.sqrt(q) if q > 0.0 else math.inf
    halvings = 4
    while halvings < 60 and _Z_MAX * 0.5**halvings > finest:
        halvings += 1
    return _line_rule(halvings)


def _activation(activation: object, alpha: object) -> tuple[str, float]:
    kind = _validation.choice("activation", activation, KINDS)
    if alpha is None:
        return kind, DEFAULT_ALPHA.get(kind, 0.0)
    if kind not in DEFAULT_ALPHA:
        raise ValueError(
            f"activation {kind!r} takes no alpha (only 'leaky_relu' and 'elu' do), got "
            f"alpha={alpha!r}"
        )
    return kind, _validation.real_scalar("alpha", alpha)


def _phi(x: np.ndarray, kind: str, alpha: float) -> np.ndarray:
    return activation_forward(x, kind, alpha=alpha if kind in DEFAULT_ALPHA else None)


def _dphi(x: np.ndarray, kind: str, alpha: float) -> np.ndarray:
    return activation_derivative(x, kind, alpha=alpha if kind in DEFAULT_ALPHA else None)


def _non_negative(name: str, value: object) -> float:
    result = _validation.real_scalar(name, value)
    if result < 0:
        raise ValueError(f"{name} must be >= 0, got {result}")
    return result


def _second_moment(q: float, kind: str, alpha: float) -> float:
    """E[phi(sqrt(q) z)^2]."""
    z, w = _rule(q)
    return float(w @ _phi(math.sqrt(q) * z, kind, alpha) ** 2)


def _derivative_moment(q: float, kind: str, alpha: float) -> float:
    """E[phi'(sqrt(q) z)^2]."""
    z, w = _rule(q)
    return float(w @ _dphi(math.sqrt(q) * z, kind, alpha) ** 2)


def _length_slope(q: float, kind: str, alpha: float, sigma_w: float) -> float:
    """dL/dq = sigma_w^2 E[phi(u) phi'(u) z] / sqrt(q), u = sqrt(q) z: by Stein's lemma equal to
    chi_1 + sigma_w^2 E[phi phi''] (Schoenholz et al. 2017, eq. 7), without phi''."""
    q = max(q, _TINY_Q)
    z, w = _rule(q)
    u = math.sqrt(q) * z
    return sigma_w**2 * float(w @ (_phi(u, kind, alpha) * _dphi(u, kind, alpha) * z)) / math.sqrt(q)


def _graded_panels(length: float, finest: float) -> list:
    """Panel edges on [0, length], halving towards 0 until the first panel is <= finest."""
    halvings = 0
    while halvings < 60 and length * 0.5**halvings > finest:
        halvings += 1
    return [0.0] + [length * 0.5**k for k in range(halvings, -1, -1)]


def _pair_expectation(c: float, q: float, f, g) -> float:
    """E[f(u_1) g(u_2)], (u_1, u_2) ~ N(0, q [[1, c], [c, 1]]).

    Polar coordinates z = r (cos t, sin t), u_1 = sqrt(q) z_1, u_2 = sqrt(q) (c z_1 + s z_2):
    the kinks of f and g at 0 are rays of fixed angle, so the angle is split there; near those
    rays (and near r = 0) f and g vary on the scale 1 / sqrt(q), so the panels are graded
    towards them.
    """
    s = math.sqrt(max(0.0, 1.0 - c * c))
    kinks = np.sort(np.mod([0.5 * math.pi, 1.5 * math.pi, math.atan2(-c, s), math.atan2(c, -s)],
                           2.0 * math.pi))
    edges = np.append(kinks, kinks[0] + 2.0 * math.pi)
    # Radii: the positive half of the line rule, whose weights carry exp(-r^2/2) / sqrt(2 pi);
    # the polar density is r exp(-r^2/2) / (2 pi).
    nodes, weights = _rule(q)
    radii = nodes[nodes.size // 2:]
    radial = weights[nodes.size // 2:] * radii / math.sqrt(2.0 * math.pi)
    finest = 0.25 / math.sqrt(q) if q > 0.0 else math.inf
    angles, angle_weights = [], []
    for start, stop in zip(edges[:-1], edges[1:]):
        half = 0.5 * (stop - start)
        if half <= 0.0:
            continue
        offsets = _graded_panels(half, finest)
        for low, high in zip(offsets[:-1], offsets[1:]):
            width = 0.5 * (high - low)
            points = low + width * (_ANGLE_T + 1.0)
            angles += [start + points, stop - points]
            angle_weights += [width * _ANGLE_W] * 2
    angles = np.concatenate(angles)
    z1 = np.outer(np.cos(angles), radii)
    z2 = np.outer(np.sin(angles), radii)
    values = f(math.sqrt(q) * z1) * g(math.sqrt(q) * (c * z1 + s * z2))
    return float(np.concatenate(angle_weights) @ values @ radial)


# -- the maps ----------------------------------------------------------------------------------


def length_map(
    q: float,
    activation: str = "tanh",
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
    *,
    alpha: Optional[float] = None,
) -> float:
    """One step of the length map: ``sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2``.

    Parameters
    ----------
    q : float
        The second moment of the pre-activations of one layer, >= 0.
    activation : str
        Any of :data:`gradwatch.activations.KINDS`.
    sigma_w, sigma_b : float
        >= 0; the weights have variance ``sigma_w^2 / fan_in``, the biases ``sigma_b^2``.
    alpha : float, optional
        The parameter of ``leaky_relu`` and ``elu`` (default 0.01 and 1, as in the networks).

    Returns
    -------
    float
        The second moment of the next layer's pre-activations.

    Raises
    ------
    TypeError, ValueError
        For an unknown activation, an alpha for a kind without one, negative or non-finite
        numbers.

    References
    ----------
    Poole et al. 2016, eq. 3.
    """
    kind, alpha_value = _activation(activation, alpha)
    q = _non_negative("q", q)
    sigma_w = _non_negative("sigma_w", sigma_w)
    sigma_b = _non_negative("sigma_b", sigma_b)
    return sigma_w**2 * _second_moment(q, kind, alpha_value) + sigma_b**2


def chi_1(
    q: float, activation: str = "tanh", sigma_w: float = 1.0, *, alpha: Optional[float] = None
) -> float:
    """``sigma_w^2 E[phi'(sqrt(q) z)^2]``: the factor by which one layer whose pre-activations
    have second moment ``q`` multiplies the squared norm of the backpropagated gradient.

    Arguments and errors as in :func:`length_map`. At the fixed point ``q*`` this is also the
    slope of the correlation map at ``c = 1`` (Poole et al. 2016, eq. 6).
    """
    kind, alpha_value = _activation(activation, alpha)
    q = _non_negative("q", q)
    sigma_w = _non_negative("sigma_w", sigma_w)
    return sigma_w**2 * _derivative_moment(q, kind, alpha_value)


def correlation_map(
    c: float,
    q: float,
    activation: str = "tanh",
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
    *,
    alpha: Optional[float] = None,
) -> float:
    """One step of the correlation map of two inputs whose pre-activations both have second
    moment ``q`` and correlation ``c``: ``(sigma_w^2 E[phi(u_1) phi(u_2)] + sigma_b^2) / q'``
    with ``q'`` the length map of ``q`` (Poole et al. 2016, eq. 5; at ``q = q*``, ``q' = q*``).

    ``c`` must lie in [-1, 1]; other arguments and errors as in :func:`length_map`.
    """
    kind, alpha_value = _activation(activation, alpha)
    c = _validation.real_scalar("c", c)
    if not -1.0 <= c <= 1.0:
        raise ValueError(f"c must be a correlation in [-1, 1], got {c}")
    q = _non_negative("q", q)
    sigma_w = _non_negative("sigma_w", sigma_w)
    sigma_b = _non_negative("sigma_b", sigma_b)
    q_next = sigma_w**2 * _second_moment(q, kind, alpha_value) + sigma_b**2
    if q_next == 0.0:
        raise ValueError("the correlation is undefined: the next layer's pre-activations are 0")
    return _correlation_step(c, q, q_next, kind, alpha_value, sigma_w, sigma_b)


def _correlation_step(c, q, q_next, kind, alpha, sigma_w, sigma_b) -> float:
    def phi(u):
        return _phi(u, kind, alpha)

    return (sigma_w**2 * _pair_expectation(c, q, phi, phi) + sigma_b**2) / q_next


# -- the fixed point ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedPoint:
    """The mean-field fixed point of an infinitely deep net of identical layers.

    Attributes
    ----------
    activation : str
    alpha : float
        The activation's parameter (0 for kinds without one).
    sigma_w, sigma_b : float
    q_star : float
        The stable fixed point of the length map reached from ``q_start``; ``inf`` when the
        length map grows without bound (an unbounded activation with ``chi_1 > 1``, or
        ``chi_1 = 1`` and ``sigma_b > 0`` for relu-like kinds); 0 when the pre-activations
        shrink to 0 (e.g. tanh with ``sigma_w <= 1``, ``sigma_b = 0``).
    chi_1 : float
        ``sigma_w^2 E[phi'(sqrt(q*) z)^2]``: the predicted per-layer growth factor of the
        squared backpropagated gradient norm deep in the net (at ``q* = inf``: its limit).
    phase : str
        ``"ordered"`` (chi_1 < 1, gradients vanish), ``"critical"`` (|chi_1 - 1| < 1e-9) or
        ``"chaotic"`` (chi_1 > 1, gradients explode).
    c_star : float
        The stable fixed point of the correlation map (1 in the ordered phase); NaN when
        ``q*`` is 0 or infinite (the correlation map is not defined there).
    chi_c : float
        ``sigma_w^2 E[phi'(u_1) phi'(u_2)]`` at ``(q*, c*)``: the slope of the correlation map at
        its fixed point (``= chi_1`` when ``c* = 1``); NaN with ``c_star``.
    gradient_depth_scale : float
        ``xi_grad = -1 / log(chi_1)`` (Schoenholz et al. 2017): the squared gradient norm
        changes by ``exp(-l / xi_grad)`` over ``l`` layers; positive when it vanishes,
        negative when it explodes, ``inf`` at criticality.
    correlation_depth_scale : float
        ``xi_c = -1 / log(chi_c)``: the depth over which the correlation of two inputs
        approaches ``c*``; ``inf`` at criticality.
    length_depth_scale : float
        ``xi_q = -1 / log(dL/dq at q*)``: the depth over which ``q`` approaches ``q*``; NaN
        when ``q*`` is infinite.
    note : str
        What the numbers mean in this case, in one line.
    """

    activation: str
    alpha: float
    sigma_w: float
    sigma_b: float
    q_star: float
    chi_1: float
    phase: str
    c_star: float
    chi_c: float
    gradient_depth_scale: float
    correlation_depth_scale: float
    length_depth_scale: float
    note: str

    def to_dict(self) -> dict:
        """The fields as a dict of str, float (JSON-ready except for inf/NaN)."""
        return dataclasses.asdict(self)

    def __repr__(self) -> str:
        return (
            f"FixedPoint({self.activation}, sigma_w={self.sigma_w:g}, sigma_b={self.sigma_b:g}: "
            f"q*={self.q_star:.6g}, chi_1={self.chi_1:.6g} ({self.phase}), c*={self.c_star:.6g}, "
            f"xi_grad={self.gradient_depth_scale:.4g}, xi_c={self.correlation_depth_scale:.4g}, "
            f"xi_q={self.length_depth_scale:.4g})"
        )


def _depth_scale(slope: float) -> float:
    if math.isnan(slope):
        return math.nan
    if slope <= 0.0:
        return 0.0
    if abs(slope - 1.0) < _CRITICAL_TOLERANCE:
        return math.inf
    return -1.0 / math.log(slope)


def _solve_length(q_start: float, kind: str, alpha: float, sigma_w: float, sigma_b: float) -> float:
    """The stable fixed point of the length map reached from q_start (inf when it diverges).

    A few plain iterations land in the basin; then bisection (in log q) on the sign of
    L(q) - q, with the bracket grown away from the iterate in the direction it moves.
    """

    def excess(q: float) -> float:
        return sigma_w**2 * _second_moment(q, kind, alpha) + sigma_b**2 - q

    q = q_start
    for _ in range(100):
        q = q + excess(q)
        if q > _INFINITE_Q:
            return math.inf
    if q < _TINY_Q and sigma_b == 0.0:
        return 0.0
    step = excess(q)
    if abs(step) <= 1e-13 * q:
        return q
    # The bracket grows until the excess is clearly of the other sign: at large q rounding in
    # L(q) is about 1e-16 q, which for relu at chi_1 = 1 with a small bias can outweigh
    # sigma_b^2 and fake a fixed point.
    if step > 0.0:
        low, high = q, 2.0 * q
        while excess(high) > -1e-12 * high:
            low, high = high, 2.0 * high
            if high > _INFINITE_Q:
                return math.inf
    else:
        low, high = 0.5 * q, q
        while excess(low) < 1e-12 * low:
            low, high = 0.5 * low, low
            if low < _TINY_Q:
                if sigma_b == 0.0:
                    return 0.0
                low = 0.0
                break
    for _ in range(200):
        middle = math.sqrt(low * high) if low > 0.0 else 0.5 * high
        if excess(middle) > 0.0:
            low = middle
        else:
            high = middle
        if high - low <= 1e-15 * high:
            break
    return 0.5 * (low + high)


def _solve_correlation(q: float, kind: str, alpha: float, sigma_w: float, sigma_b: float,
                       chi: float) -> tuple[float, float]:
    """(c*, chi_c): c* = 1 unless chi_1 > 1, then the root of C(c) - c in [0, 1) (C(0) >= 0
    and C is below the diagonal just under 1 because its slope there is chi_1 > 1)."""

    def dphi(u):
        return _dphi(u, kind, alpha)

    if chi <= 1.0 + _CRITICAL_TOLERANCE:
        return 1.0, chi

    def excess(c: float) -> float:
        return _correlation_step(c, q, q, kind, alpha, sigma_w, sigma_b) - c

    low, high = 0.0, 1.0 - 1e-9
    f_low = excess(low)
    if f_low <= 0.0:
        c_star = 0.0
    else:
        # Regula falsi with the Illinois modification (superlinear; each step costs a 2-D
        # quadrature, so bisection's 40 steps would be slow).
        f_high = excess(high)
        side = 0
        c_star = high
        for _ in range(100):
            c_star = (low * f_high - high * f_low) / (f_high - f_low)
            value = excess(c_star)
            if value > 0.0:
                low, f_low = c_star, value
                if side == 1:
                    f_high *= 0.5
                side = 1
            else:
                high, f_high = c_star, value
                if side == -1:
                    f_low *= 0.5
                side = -1
            if high - low < 1e-14 or value == 0.0:
                break
    return c_star, sigma_w**2 * _pair_expectation(c_star, q, dphi, dphi)


def fixed_point(
    activation: str = "tanh",
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
    *,
    alpha: Optional[float] = None,
    q_start: float = 1.0,
) -> FixedPoint:
    """The length-map fixed point ``q*``, ``chi_1`` there, the phase and the depth scales.

    Parameters
    ----------
    activation, sigma_w, sigma_b, alpha
        As in :func:`length_map`.
    q_start : float, default 1.0
        Where the search starts (> 0). It matters only when several fixed points exist; for
        relu-like kinds with ``sigma_w^2 (1 + alpha^2) / 2 = 1`` and ``sigma_b = 0`` every q is
        a fixed point and ``q* = q_start``.

    Returns
    -------
    FixedPoint
        Frozen; ``repr`` is one line, ``to_dict()`` gives the fields.

    Raises
    ------
    TypeError, ValueError
        As :func:`length_map`; ``q_start`` not a number > 0.

    Notes
    -----
    ``q*``: 100 iterations of the length map, then bisection in ``log q`` on the sign of
    ``L(q) - q`` to relative precision 1e-15. An iterate above 1e150 means no finite fixed
    point (``q* = inf``; ``chi_1`` is then its ``q -> inf`` limit, evaluated at q = 1e16);
    a fixed point below 1e-14 with ``sigma_b = 0`` is reported as 0 (the sign of
    ``L(q) - q`` is lost in rounding there). ``c*``: bisection on ``C(c) - c`` in [0, 1).

    References
    ----------
    Poole et al. 2016; Schoenholz et al. 2017 (eqs. 7, 9 and the gradient depth scale).

    Examples
    --------
    >>> from gradwatch import theory
    >>> theory.fixed_point("relu", sigma_w=2 ** 0.5).chi_1
    1.0
    """
    kind, alpha_value = _activation(activation, alpha)
    sigma_w = _non_negative("sigma_w", sigma_w)
    sigma_b = _non_negative("sigma_b", sigma_b)
    q_start = _validation.positive_scalar("q_start", q_start)
    q_star = _solve_length(q_start, kind, alpha_value, sigma_w, sigma_b)
    # At q* = inf or 0, chi_1 is the limit q -> inf or q -> 0+ (relu' at exactly 0 is 0).
    q_eval = 1e16 if math.isinf(q_star) else max(q_star, 1e-300)
    chi = sigma_w**2 * _derivative_moment(q_eval, kind, alpha_value)
    if abs(chi - 1.0) < _CRITICAL_TOLERANCE:
        phase = "critical"
    else:
        phase = "ordered" if chi < 1.0 else "chaotic"
    if math.isinf(q_star) or q_star == 0.0:
        c_star = chi_c = math.nan
        length_slope = math.nan if math.isinf(q_star) else _length_slope(0.0, kind, alpha_value,
                                                                        sigma_w)
        note = (
            "no finite fixed point: q grows without bound layer after layer; chi_1 is its "
            "limit as q -> inf"
            if math.isinf(q_star)
            else "the pre-activations shrink to 0 (q* = 0); chi_1 is its limit as q -> 0"
        )
    else:
        c_star, chi_c = _solve_correlation(q_star, kind, alpha_value, sigma_w, sigma_b, chi)
        length_slope = _length_slope(q_star, kind, alpha_value, sigma_w)
        note = {
            "ordered": "gradients vanish with depth; inputs become perfectly correlated",
            "critical": "edge of chaos: gradients keep their norm deep in the network",
            "chaotic": "gradients explode with depth; correlations decay to c*",
        }[phase]
    return FixedPoint(
        activation=kind,
        alpha=alpha_value,
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        q_star=q_star,
        chi_1=chi,
        phase=phase,
        c_star=c_star,
        chi_c=chi_c,
        gradient_depth_scale=_depth_scale(chi),
        correlation_depth_scale=_depth_scale(chi_c),
        length_depth_scale=_depth_scale(length_slope),
        note=note,
    )


# -- finite networks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerPrediction:
    """The mean-field prediction for one dense layer (0-based ``index``, the output layer last).

    Attributes
    ----------
    index : int
    activation : str
        ``"identity"`` for the output layer (its logits).
    sigma_w, sigma_b : float
        ``sigma_w^2 = fan_in Var W``, ``sigma_b^2 = Var b`` (from the init scheme, or the
        current weights).
    q : float
        The predicted second moment of the layer's pre-activations (after batch norm: 1).
    chi : float
        The predicted ``||dL/dx||^2 / ||dL/da||^2``: the squared norm of the gradient this
        layer sends to its input over that arriving at its output.
    gradient_growth : float
        The predicted ``||dL/dx||^2`` of this layer over ``||dL/dlogits||^2``: the product of
        ``chi`` of this and every later layer.
    batchnorm : bool
    """

    index: int
    activation: str
    sigma_w: float
    sigma_b: float
    q: float
    chi: float
    gradient_growth: float
    batchnorm: bool

    def to_dict(self) -> dict:
        """The fields as a dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NetworkPrediction:
    """Per-layer mean-field predictions for a network (see :func:`for_network`, :func:`trajectory`).

    Attributes
    ----------
    layers : tuple of LayerPrediction
    q_input : float
        The second moment of the inputs (mean of ``x**2``).
    batch_size : int or None
        The batch size used for the batch-norm layers.
    """

    layers: tuple
    q_input: float
    batch_size: Optional[int] = None

    @property
    def q(self) -> np.ndarray:
        """(layers,) the predicted pre-activation second moments."""
        return np.array([layer.q for layer in self.layers])

    @property
    def chi(self) -> np.ndarray:
        """(layers,) the predicted per-layer growth of the squared gradient norm."""
        return np.array([layer.chi for layer in self.layers])

    @property
    def gradient_growth(self) -> np.ndarray:
        """(layers,) the predicted squared input-gradient norm of each layer over that of the
        logits."""
        return np.array([layer.gradient_growth for layer in self.layers])

    def to_dict(self) -> dict:
        """JSON-ready: ``q_input``, ``batch_size`` and a list of per-layer dicts."""
        return {
            "q_input": self.q_input,
            "batch_size": self.batch_size,
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def __repr__(self) -> str:
        rows = [
            f"  {layer.index:>5} {layer.activation:>10}{' +bn' if layer.batchnorm else '    '} "
            f"{layer.sigma_w:>8.4g} {layer.sigma_b:>8.4g} {layer.q:>11.5g} {layer.chi:>9.5g} "
            f"{layer.gradient_growth:>11.5g}"
            for layer in self.layers
        ]
        batch = f", batch_size={self.batch_size}" if self.batch_size is not None else ""
        header = (f"NetworkPrediction(q_input={self.q_input:.6g}{batch})\n"
                  "  layer activation        sigma_w  sigma_b           q       chi  grad_growth")
        return "\n".join([header, *rows])


def _cumulative(chis: list) -> list:
    growth, total = [], 1.0
    for chi in reversed(chis):
        total *= chi
        growth.append(total)
    return growth[::-1]


def _predict(q_input, kinds, alphas, sigma_ws, sigma_bs, batchnorms, keep, batch_size,
             input_variance=None):
    """The forward trajectory and per-layer chi. kinds[i] is layer i's activation ("identity"
    for the output layer); keep[i] = 1 - dropout of layer i; input_variance: the inputs' batch
    variance per coordinate (for a first batch-norm layer)."""
    rows = []
    moment = q_input  # E[x^2] of the layer's input, per unit
    # The unbiased batch variance of the layer's input per unit: E|G a|^2 / (B - 1).
    variance = input_variance
    for i, kind in enumerate(kinds):
        sigma_w, sigma_b, alpha = sigma_ws[i], sigma_bs[i], alphas[i]
        if batchnorms[i]:
            # lambda assumes an input whose batch variance is that of the previous batch-norm
            # layer's output, E|G phi(x)|^2 / (B - 1); chi scales as its inverse (sigma_w
            # cancels).
            rate, sphere_variance = _batchnorm_parts(batch_size, kind, alpha)
            q = 1.0
            chi = rate if math.isinf(rate) else rate * sphere_variance / (variance * keep[i])
            moment = _second_moment(1.0, kind, alpha) / keep[i]
            variance = sphere_variance / keep[i]
        else:
            q = sigma_w**2 * moment + sigma_b**2
            chi = sigma_w**2 * _derivative_moment(q, kind, alpha) / keep[i]
            moment = _second_moment(q, kind, alpha) / keep[i]
        rows.append([i, kind, sigma_w, sigma_b, q, chi, batchnorms[i]])
    growth = _cumulative([row[5] for row in rows])
    return tuple(
        LayerPrediction(index=i, activation=kind, sigma_w=sw, sigma_b=sb, q=q, chi=chi,
                        gradient_growth=g, batchnorm=bn)
        for (i, kind, sw, sb, q, chi, bn), g in zip(rows, growth)
    )


def trajectory(
    depth: int,
    activation: str = "tanh",
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
    *,
    alpha: Optional[float] = None,
    q_input: float = 1.0,
) -> NetworkPrediction:
    """Layer-by-layer predictions for ``depth`` identical hidden layers, from inputs of second
    moment ``q_input``: ``q^1 = sigma_w^2 q_input + sigma_b^2``,
    ``q^{l+1} = sigma_w^2 E[phi(sqrt(q^l) z)^2] + sigma_b^2``, and
    ``chi^l = sigma_w^2 E[phi'(sqrt(q^l) z)^2]``.

    The transient matters in real nets: ``chi^l`` approaches the fixed point's ``chi_1`` only
    over ``xi_q`` layers. Every layer here is hidden (has the activation); ``gradient_growth``
    is relative to the gradient arriving at the last layer's output.

    Parameters
    ----------
    depth : int
        >= 1.
    activation, sigma_w, sigma_b, alpha
        As in :func:`length_map`.
    q_input : float, default 1.0
        The mean of ``x**2`` over the input coordinates, >= 0.

    Returns
    -------
    NetworkPrediction
    """
    depth = _validation.positive_int("depth", depth)
    kind, alpha_value = _activation(activation, alpha)
    sigma_w = _non_negative("sigma_w", sigma_w)
    sigma_b = _non_negative("sigma_b", sigma_b)
    q_input = _non_negative("q_input", q_input)
    layers = _predict(q_input, [kind] * depth, [alpha_value] * depth, [sigma_w] * depth,
                      [sigma_b] * depth, [False] * depth, [1.0] * depth, None)
    return NetworkPrediction(layers=layers, q_input=q_input)


def for_network(
    net,
    q_input: Optional[float] = None,
    *,
    x=None,
    from_weights: bool = False,
    batch_size: Optional[int] = None,
) -> NetworkPrediction:
    """Mean-field predictions per layer of a :class:`gradwatch.MLP`.

    Each dense layer's ``sigma_w^2 = fan_in * std^2``, with ``std`` the standard deviation of
    its init scheme (:func:`gradwatch.init.std_for`): ``he_normal``/``he_uniform`` give
    ``2 / (1 + a^2)``, ``lecun_*`` 1, ``xavier_*`` ``2 fan_in / (fan_in + fan_out)``, a number
    ``s`` gives ``s^2 fan_in``, ``orthogonal`` ``gain^2 fan_in / max(fan_in, fan_out)`` (exact
    for the mean square of the entries), ``zeros`` 0; biases start at 0, so ``sigma_b = 0``.
    With ``from_weights=True`` they are measured instead: ``sigma_w^2 = fan_in mean(W^2)``,
    ``sigma_b^2 = mean(b^2)`` (useful after training; the prediction then treats the trained
    weights as if they were random with that variance).

    Hidden layers with dropout ``p`` are predicted in training mode (as in ``train_step``):
    inverted dropout multiplies the next layer's input second moment and this layer's ``chi``
    by ``1 / (1 - p)``. Hidden layers with batch norm (``gamma = 1``, ``beta = 0``) have
    ``q = 1`` and ``chi = batchnorm_gradient_growth(batch_size, activation)``, except the first:
    its ``chi`` scales as the inverse of the inputs' batch variance (the unbiased variance over
    the batch, averaged over the input coordinates: from ``x``, else ``q_input``, as for inputs
    of zero mean), so it is ``lambda * v_sphere / v_input`` with ``v_sphere`` the batch variance
    of a batch-norm layer's activations. The output layer after batch norm sees
    ``E[phi(z)^2]``, z ~ N(0, 1) (the batch-norm output's marginal for large B). The theory
    assumes inputs whose batch Gram matrix is permutation-symmetric (e.g. independent random
    inputs); for structured data the first layer's prediction is approximate.

    Parameters
    ----------
    net : gradwatch.MLP
    q_input : float, optional
        The mean of ``x**2`` over the inputs' coordinates; default 1.0, or computed from ``x``.
    x : array_like, optional
        Input data (N, inputs): gives ``q_input = mean(x**2)`` and, for batch norm, the default
        ``batch_size = N``.
    from_weights : bool, default False
    batch_size : int, optional
        Required for networks with batch norm unless ``x`` is given.

    Returns
    -------
    NetworkPrediction
        One :class:`LayerPrediction` per dense layer, the output layer last.

    Raises
    ------
    TypeError
        ``net`` not an MLP; ``x`` not numeric.
    ValueError
        Residual networks (the theory here is for plain feed-forward nets); both ``q_input`` and
        ``x``; ``x`` of the wrong shape; batch norm without a batch size.
    """
    from gradwatch.network import MLP

    if not isinstance(net, MLP):
        raise TypeError(f"net must be a gradwatch.MLP, got {type(net).__name__}")
    if net.residual_layers:
        raise ValueError(
            "theory.for_network covers plain feed-forward networks; layers "
            f"{list(net.residual_layers)} are residual"
        )
    if not isinstance(from_weights, (bool, np.bool_)):
        raise TypeError(f"from_weights must be True or False, got {type(from_weights).__name__}")
    sizes = net.layer_sizes
    if x is not None:
        if q_input is not None:
            raise ValueError("give q_input or x, not both")
        (array,) = _validation.float_arrays(("x", x))
        if array.ndim != 2 or array.shape[1] != sizes[0]:
            raise ValueError(
                f"x must have shape (N, {sizes[0]}), got {_validation.shape_text(array.shape)}"
            )
        _validation.require_nonempty_batch("x", array)
        data = np.asarray(array, dtype=np.float64)
        q_input = float(np.mean(data**2))
        input_variance = float(np.mean(data.var(axis=0, ddof=1))) if len(data) > 1 else 0.0
        if batch_size is None and net.batchnorm:
            batch_size = array.shape[0]
    else:
        input_variance = None
    q_input = 1.0 if q_input is None else _non_negative("q_input", q_input)
    if net.batchnorm:
        if batch_size is None:
            raise ValueError(
                "this network has batch norm: its gradient growth depends on the batch size; "
                "pass batch_size= (or x)"
            )
        batch_size = _validation.positive_int("batch_size", batch_size)
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 for batch norm, got {batch_size}")
        if input_variance is None:
            input_variance = q_input  # inputs of zero mean: the unbiased batch variance is q
    else:
        batch_size = None

    layers = len(sizes) - 1
    hidden = layers - 1
    kinds = list(net.activation) + ["identity"]
    alphas = [DEFAULT_ALPHA.get(kind, 0.0) for kind in kinds]
    keep = [1.0 - p for p in net.dropout] + [1.0]
    batchnorms = [net.batchnorm] * hidden + [False]
    if from_weights:
        state = net.state_dict()
        sigma_ws = [
            math.sqrt(sizes[i] * float(np.mean(state[f"dense{i}.weight"].astype(np.float64) ** 2)))
            for i in range(layers)
        ]
        sigma_bs = [
            math.sqrt(float(np.mean(state[f"dense{i}.bias"].astype(np.float64) ** 2)))
            for i in range(layers)
        ]
    else:
        sigma_ws = [_init_sigma_w(net, i) for i in range(layers)]
        sigma_bs = [0.0] * layers
    return NetworkPrediction(
        layers=_predict(q_input, kinds, alphas, sigma_ws, sigma_bs, batchnorms, keep, batch_size,
                        input_variance),
        q_input=q_input,
        batch_size=batch_size,
    )


def _init_sigma_w(net, layer: int) -> float:
    from gradwatch.network import _he_arguments

    fan_in, fan_out = net.layer_sizes[layer], net.layer_sizes[layer + 1]
    scheme = net.init[layer]
    std = _init.std_for(scheme, fan_in, fan_out, **_he_arguments(scheme, layer, net.activation))
    return std * math.sqrt(fan_in)


# -- batch norm ---------------------------------------------------------------------------------

_SPHERE_RADIAL_NODES = 64


def batchnorm_gradient_growth(
    batch_size: int, activation: str = "relu", *, alpha: Optional[float] = None
) -> float:
    """The factor per layer by which the squared gradient norm grows in a wide network of
    ``dense -> batch norm -> activation`` layers at initialisation (``gamma = 1``, ``beta = 0``),
    as a function of the batch size B: Yang et al.'s (2019) gradient explosion rate.

    Derivation (mean field, with Yang et al.'s assumptions: infinite width, the gradient
    independence assumption, the batch's Gram matrix at its permutation-symmetric (BSB1) fixed
    point, ``eps = 0``). One unit's pre-activations over the batch, ``h ~ N(0, Sigma*)`` with
    ``G Sigma* G = a G`` (``G = I - 11^T / B``), so the batch-norm output ``x = sqrt(B) Gh /
    |Gh|`` is uniform on the sphere of radius sqrt(B) in ``1^perp`` and independent of
    ``|Gh|^2 ~ a chi^2_{B-1}``. The batch-norm Jacobian is ``J = sqrt(B) / |Gh| (G - x x^T /
    B)``, symmetric; the gradient covariance over the batch ``Pi`` obeys ``Pi^{l-1} =
    sigma_w^2 E[J D Pi^l D J]``, ``D = diag(phi'(x))``, whose permutation-symmetric solution is
    ``Pi ∝ G``. Its growth factor per layer::

        lambda = B E|G A|_F^2 / ((B - 3) E|G phi(x)|^2),    A = D (G - x x^T / B)

    using ``E[1 / chi^2_{B-1}] = 1 / (B - 3)`` (sigma_w cancels). ``E|G A|_F^2`` and
    ``E|G phi(x)|^2`` reduce to one- and two-coordinate expectations over the sphere. For relu
    these are closed forms (Sheppard's orthant probability and the arc-cosine kernel at
    correlation ``-1 / (B - 1)``); the result falls to ``pi / (pi - 1) = 1.4669`` as B -> inf,
    the limit Yang et al. state. For the other activations the two-coordinate marginal of the
    sphere is integrated by quadrature (Gauss-Jacobi in the radius, Gauss-Legendre in the angle,
    split at the kinks), which reproduces the relu closed form to 1e-14.

    The closed form is our derivation in the paper's setting; we did not have the paper's text
    at hand to compare its finite-B expression term by term. It is checked against the B -> inf
    limit and against Monte Carlo of wide random networks (tests/test_theory.py: within 1% for
    B = 6 ... 64).

    At the first batch-norm layer of a real network the factor also depends on the inputs'
    batch variance (``chi`` scales as its inverse): :func:`for_network` accounts for it.

    Parameters
    ----------
    batch_size : int
        B >= 2. For B <= 3 the expectation ``E[B / |Gh|^2]`` diverges and ``inf`` is returned:
        the mean-field prediction is unbounded (in finite nets a few units with tiny batch
        variance dominate the gradient).
    activation : str, default "relu"
        Any of :data:`gradwatch.activations.KINDS`.
    alpha : float, optional
        The parameter of ``leaky_relu`` and ``elu``.

    Returns
    -------
    float
        The per-layer factor of the squared gradient norm (> 1 means explosion).

    Raises
    ------
    TypeError, ValueError
        batch_size not an integer >= 2; unknown activation; alpha for a kind without one.

    References
    ----------
    Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz, "A Mean Field Theory of Batch
    Normalization", ICLR 2019.
    """
    batch = _validation.positive_int("batch_size", batch_size)
    if batch < 2:
        raise ValueError(
            f"batch_size must be >= 2 (batch norm of one sample is undefined), got {batch}"
        )
    kind, alpha_value = _activation(activation, alpha)
    return _batchnorm_parts(batch, kind, alpha_value)[0]


def _batchnorm_parts(B: int, kind: str, alpha: float) -> tuple[float, float]:
    """(lambda, E|G phi(x)|^2 / (B - 1)): the rate and the batch variance per unit of the
    activations (the next layer's input), for x uniform on the batch-norm sphere."""
    if B <= 3:
        return math.inf, math.nan  # E[1 / chi^2_{B-1}] diverges
    return _batchnorm_rate(B, *_sphere_moments(B, kind, alpha))


def _batchnorm_rate(B, d2, d2x2, d1d1, dxdx, f2, ff) -> tuple[float, float]:
    """(lambda, E|G phi(x)|^2 / (B - 1)) from one- and two-coordinate moments of x uniform on
    the BN sphere: d2 = E[d_1^2], d2x2 = E[d_1^2 x_1^2], d1d1 = E[d_1 d_2],
    dxdx = E[d_1 x_1 d_2 x_2], f2 = E[phi(x_1)^2], ff = E[phi(x_1) phi(x_2)], d = phi'(x)."""
    s2 = B * d2
    sum_d2x2 = B * d2x2
    s1_squared = B * d2 + B * (B - 1) * d1d1
    p_squared = B * d2x2 + B * (B - 1) * dxdx
    a_norm = s2 * (1.0 - 1.0 / B) - sum_d2x2 / B  # E|A|_F^2
    r_norm = s2 - s1_squared / B - p_squared / B  # E|1^T A|^2
    ga_norm = a_norm - r_norm / B  # E|G A|_F^2
    g_phi = B * f2 - (B * f2 + B * (B - 1) * ff) / B  # E|G phi(x)|^2
    return B * ga_norm / ((B - 3) * g_phi), g_phi / (B - 1)


def _relu_sphere_moments(B: int) -> tuple:
    """Exact moments for relu. x_1, x_2 have E[x_i^2] = 1 and correlation rho = -1/(B-1); by
    symmetry E[1{x_1>0}] = 1/2, E[relu(x_1)^2] = 1/2. The orthant probability is scale-free
    (Sheppard: 1/4 + asin(rho) / (2 pi)); x = sqrt(B) y / |y| with y = Gg Gaussian and |y|
    independent of y / |y|, so E[relu(x_1) relu(x_2)] = B / (B - 1) E[relu(y_1) relu(y_2)],
    the arc-cosine kernel (Cho & Saul 2009) at variance 1 - 1/B."""
    rho = -1.0 / (B - 1)
    orthant = 0.25 + math.asin(rho) / (2.0 * math.pi)
    variance = 1.0 - 1.0 / B
    kernel = variance / (2.0 * math.pi) * (math.sqrt(1.0 - rho * rho)
                                            + (math.pi - math.acos(rho)) * rho)
    relu_pair = B / (B - 1) * kernel
    return 0.5, 0.5, orthant, relu_pair, 0.5, relu_pair


def _gauss_jacobi(n: int, a: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Jacobi nodes on [-1, 1] for the weight (1 - t)^a, weights summing to 1
    (Golub & Welsch 1969, from the monic Jacobi recurrence with b = 0)."""
    k = np.arange(n, dtype=np.float64)
    total = 2.0 * k + a
    diagonal = -a * a / np.where(k == 0, 1.0, total * (total + 2.0))
    diagonal[0] = -a / (a + 2.0)
    m = np.arange(1, n, dtype=np.float64)
    total = 2.0 * m + a
    off = np.sqrt(4.0 * m * m * (m + a) * (m + a) / (total * total * (total + 1.0) * (total - 1.0)))
    nodes, vectors = np.linalg.eigh(np.diag(diagonal) + np.diag(off, 1) + np.diag(off, -1))
    return nodes, vectors[0] ** 2


def _sphere_moments(B: int, kind: str, alpha: float) -> tuple:
    """The moments of _batchnorm_rate. relu: closed forms; other kinds: quadrature over the
    exact two-coordinate marginal of x uniform on the batch-norm sphere.

    x = sqrt(B) u, u uniform on the unit sphere of the (B-1)-dimensional space 1^perp. Project
    u on the plane of Ge_1, Ge_2 (orthonormal basis e'_1 = Ge_1 / |Ge_1|, e'_2): w = (w_1, w_2)
    has density proportional to (1 - |w|^2)^((B-5)/2) on the unit disk, x_1 = sqrt(B) |Ge_1|
    w_1, x_2 = sqrt(B) (c_1 w_1 + c_2 w_2) with Ge_2 = c_1 e'_1 + c_2 e'_2. In polar
    coordinates w = r (cos t, sin t) with s = r^2 the radial density is (1 - s)^((B-5)/2): a
    Gauss-Jacobi rule in s (64 nodes) is exact for the even-in-r part, so each angle t in
    [0, pi) is paired with t + pi; the angle is split where x_1 = 0 or x_2 = 0 (the kinks) and
    each arc integrated by 48-node Gauss-Legendre.
    """
    if kind == "relu":
        return _relu_sphere_moments(B)
    t, radial_weights = _gauss_jacobi(_SPHERE_RADIAL_NODES, 0.5 * (B - 5))
    radii = np.sqrt(0.5 * (1.0 + t))
    norm = math.sqrt(1.0 - 1.0 / B)
    c1 = -1.0 / B / norm
    c2 = math.sqrt(norm * norm - c1 * c1)
    kinks = sorted([0.5 * math.pi, math.atan2(-c1, c2) % math.pi])
    edges = [kinks[0], kinks[1], kinks[0] + math.pi]
    sums = np.zeros(6)
    for start, stop in zip(edges[:-1], edges[1:]):
        half = 0.5 * (stop - start)
        angles = start + half * (_ANGLE_T + 1.0)
        w1 = np.outer(np.cos(angles), radii)
        w2 = np.outer(np.sin(angles), radii)
        for sign in (1.0, -1.0):
            x1 = sign * math.sqrt(B) * norm * w1
            x2 = sign * math.sqrt(B) * (c1 * w1 + c2 * w2)
            d1, d2 = _dphi(x1, kind, alpha), _dphi(x2, kind, alpha)
            f1, f2 = _phi(x1, kind, alpha), _phi(x2, kind, alpha)
            values = (d1 * d1, (d1 * x1) ** 2, d1 * d2, d1 * x1 * d2 * x2, f1 * f1, f1 * f2)
            sums += [half * float(_ANGLE_W @ v @ radial_weights) for v in values]
    return tuple(float(value) for value in sums / (2.0 * math.pi))


__all__ = [
    "FixedPoint",
    "LayerPrediction",
    "NetworkPrediction",
    "batchnorm_gradient_growth",
    "chi_1",
    "correlation_map",
    "fixed_point",
    "for_network",
    "length_map",
    "trajectory",
]
