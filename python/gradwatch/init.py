"""Weight initialisation for dense layers ``y = x @ W + b``, W of shape (fan_in, fan_out).

Every random scheme draws from a counter-based generator (Philox4x32-10, Salmon et al. 2011) in
the compiled core: entry ``(i, j)`` depends only on the seed, the scheme's family (normal,
uniform or orthogonal) and its index ``i * fan_out + j``, so a seed gives the same weights on any
thread count and SIMD level. Values are computed in float64; float32 weights are those values
rounded once.

Schemes (``std`` is the standard deviation of every entry, ``limit`` the bound of U(-limit,
limit), ``a`` the negative slope for ``nonlinearity="leaky_relu"``, 0 for ``"relu"``):

============================== ======================================================= ===========
scheme                         distribution                                            paper
============================== ======================================================= ===========
``"zeros"``                    all zero                                                 -
``s`` (a number >= 0)          N(0, (gain s)^2), the textbook's ``weight_init_std``     -
``"normal"``                   N(0, (gain std)^2), needs ``std=``                       -
``"uniform"``                  U(-gain limit, gain limit), needs ``limit=``             -
``"xavier_normal"``            std = gain sqrt(2 / (fan_in + fan_out))                  Glorot 2010
``"xavier_uniform"``           limit = gain sqrt(6 / (fan_in + fan_out))                Glorot 2010
``"he_normal"`` (``"he"``)     std = gain sqrt(2 / ((1 + a^2) fan_in))                  He 2015
``"he_uniform"``               limit = gain sqrt(6 / ((1 + a^2) fan_in))                He 2015
``"lecun_normal"``             std = gain sqrt(1 / fan_in)                              LeCun 1998
``"lecun_uniform"``            limit = gain sqrt(3 / fan_in)                            LeCun 1998
``"orthogonal"``               gain Q, Q Haar-distributed orthogonal                    Saxe 2014
============================== ======================================================= ===========

Aliases: ``glorot_normal``/``glorot_uniform`` (= ``xavier_*``), ``kaiming_normal``/
``kaiming_uniform`` (= ``he_*``), ``he`` (= ``he_normal``). The bare name ``"xavier"`` is refused:
the textbook's "Xavier" initialisation is N(0, 1/fan_in), which is ``"lecun_normal"``, while
Glorot and Bengio's is ``"xavier_normal"``, N(0, 2/(fan_in + fan_out)).
"""

from __future__ import annotations

import math
import numbers
import secrets
from typing import NamedTuple, Optional, Union

import numpy as np

from gradwatch import _validation
from gradwatch._core_loader import _core

SCHEMES: tuple[str, ...] = (
    "zeros",
    "normal",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "he",
    "lecun_normal",
    "lecun_uniform",
    "orthogonal",
)
"""Every valid scheme name (a non-negative number is also a scheme: N(0, s^2))."""

ALIASES: dict[str, str] = {
    "glorot_normal": "xavier_normal",
    "glorot_uniform": "xavier_uniform",
    "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform",
    "he": "he_normal",
}
"""Alternative names and the scheme each one means."""

NONLINEARITIES: tuple[str, ...] = ("relu", "leaky_relu")
"""The values of ``nonlinearity`` (used by the He schemes only)."""

_HE_SCHEMES = ("he_normal", "he_uniform")
_SEED_LIMIT = 2**64

_XAVIER_MESSAGE = (
    "scheme 'xavier' is ambiguous: the textbook's 'Xavier' initialisation is N(0, 1/fan_in), "
    "which is 'lecun_normal'; Glorot & Bengio (2010) use N(0, 2/(fan_in + fan_out)), which is "
    "'xavier_normal' (U(-sqrt(6/(fan_in + fan_out)), +sqrt(...)) is 'xavier_uniform'); "
    "name the one you mean"
)


class _Plan(NamedTuple):
    """What a scheme resolves to: a family and its scale (std, limit or gain)."""

    family: str  # "zeros", "normal", "uniform" or "orthogonal"
    scale: float


def _scheme_name(scheme: object) -> Union[str, float]:
    """The canonical scheme name, or the float s of a numeric scheme."""
    if isinstance(scheme, str):
        if scheme == "xavier":
            raise ValueError(_XAVIER_MESSAGE)
        if scheme not in SCHEMES:
            valid = ", ".join(repr(name) for name in SCHEMES)
            raise ValueError(
                f"unknown scheme {scheme!r}; valid schemes are {valid}, "
                "or a number s >= 0 meaning N(0, s^2)"
            )
        return ALIASES.get(scheme, scheme)
    if isinstance(scheme, (bool, np.bool_)) or not isinstance(scheme, numbers.Real):
        raise TypeError(
            "scheme must be a scheme name (see gradwatch.init.SCHEMES) or a number s >= 0 "
            f"meaning N(0, s^2), got {type(scheme).__name__}"
        )
    std = _validation.real_scalar("scheme", scheme)
    if std < 0:
        raise ValueError(f"scheme as a number is a standard deviation and must be >= 0, got {std}")
    return std


def _non_negative(name: str, value: object) -> float:
    result = _validation.real_scalar(name, value)
    if result < 0:
        raise ValueError(f"{name} must be >= 0, got {result}")
    return result


def _plan(
    fan_in: object,
    fan_out: object,
    scheme: object,
    gain: object,
    negative_slope: object,
    nonlinearity: object,
    std: object,
    limit: object,
) -> tuple[int, int, _Plan]:
    """Validate the arguments shared by weights() and std_for(); resolve the scheme."""
    fan_in = _validation.positive_int("fan_in", fan_in)
    fan_out = _validation.positive_int("fan_out", fan_out)
    name = _scheme_name(scheme)
    gain = _validation.positive_scalar("gain", gain)
    nonlinearity = _validation.choice("nonlinearity", nonlinearity, NONLINEARITIES)
    negative_slope = _validation.real_scalar("negative_slope", negative_slope)
    if nonlinearity == "leaky_relu" and name not in _HE_SCHEMES:
        raise ValueError(
            "nonlinearity='leaky_relu' applies only to the He schemes "
            f"('he_normal', 'he_uniform' and their aliases), got scheme {scheme!r}"
        )
    if std is not None and name != "normal":
        raise ValueError(f"std applies only to scheme 'normal', got scheme {scheme!r}")
    if limit is not None and name != "uniform":
        raise ValueError(f"limit applies only to scheme 'uniform', got scheme {scheme!r}")

    if isinstance(name, float):
        return fan_in, fan_out, _Plan("normal", gain * name)
    if name == "zeros":
        return fan_in, fan_out, _Plan("zeros", 0.0)
    if name == "normal":
        if std is None:
            raise ValueError("scheme 'normal' needs the keyword std (N(0, std^2)), e.g. std=0.01")
        return fan_in, fan_out, _Plan("normal", gain * _non_negative("std", std))
    if name == "uniform":
        if limit is None:
            raise ValueError(
                "scheme 'uniform' needs the keyword limit (U(-limit, limit)), e.g. limit=0.05"
            )
        return fan_in, fan_out, _Plan("uniform", gain * _non_negative("limit", limit))
    if name == "orthogonal":
        return fan_in, fan_out, _Plan("orthogonal", gain)

    slope = negative_slope if nonlinearity == "leaky_relu" else 0.0
    family, distribution = name.rsplit("_", 1)  # e.g. ("xavier", "normal")
    variance = {
        "xavier": 2.0 / (fan_in + fan_out),
        "he": 2.0 / ((1.0 + slope * slope) * fan_in),
        "lecun": 1.0 / fan_in,
    }[family]
    if distribution == "normal":
        return fan_in, fan_out, _Plan("normal", gain * math.sqrt(variance))
    # U(-limit, limit) has variance limit^2 / 3.
    return fan_in, fan_out, _Plan("uniform", gain * math.sqrt(3.0 * variance))


def _dtype(dtype: object) -> np.dtype:
    expected = "dtype must be float32 or float64 (a string or a numpy dtype)"
    if dtype is None:
        raise TypeError(f"{expected}, got None")
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{expected}, got {dtype!r}") from None
    if resolved not in _validation.FLOAT_DTYPES:
        raise TypeError(f"{expected}, got {resolved.name}")
    return resolved


def _seed(seed: object) -> int:
    if seed is None:
        return secrets.randbits(64)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be None or an integer, got {type(seed).__name__}")
    value = int(seed)
    if not 0 <= value < _SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**64), got {value}")
    return value


def weights(
    fan_in: int,
    fan_out: int,
    scheme: Union[str, float],
    *,
    seed: Optional[int] = None,
    dtype: object = "float32",
    gain: float = 1.0,
    negative_slope: float = 0.01,
    nonlinearity: str = "relu",
    std: Optional[float] = None,
    limit: Optional[float] = None,
) -> np.ndarray:
    """A weight matrix for ``y = x @ W + b``, drawn from ``scheme``.

    Parameters
    ----------
    fan_in, fan_out : int
        Inputs and outputs of the layer (>= 1). W has fan_in rows: the layout is ours, not
        PyTorch's (out, in); ``fan_in`` means the same thing in both.
    scheme : str or float
        One of :data:`SCHEMES` (table in the module docstring), or a number s >= 0 for
        N(0, s^2): ``weights(784, 100, 0.01)`` is the textbook's ``weight_init_std=0.01``.
    seed : int or None
        In [0, 2**64). The same seed and arguments give the same weights on any thread count and
        SIMD level. None draws a fresh seed from the operating system's entropy (``secrets``).
    dtype : str or numpy dtype
        float32 (default) or float64.
    gain : float
        Finite and > 0 (a zero gain would silently turn every scheme into ``"zeros"``: ask for
        that by name). Multiplies the standard deviation, or the bound, of every random scheme,
        including ``s``, ``"normal"`` and ``"uniform"``; for ``"orthogonal"`` W = gain Q. It is
        an extra factor like ``torch.nn.init``'s ``gain``: the He schemes already contain their
        sqrt(2 / (1 + a^2)), so leave it at 1 for ReLU layers.
    negative_slope : float
        The slope ``a`` of leaky ReLU for x < 0 (finite), used when
        ``nonlinearity="leaky_relu"``.
    nonlinearity : {"relu", "leaky_relu"}
        The activation after the layer, for the He schemes only: ``"relu"`` (a = 0, variance
        2 / fan_in, as ``torch.nn.init.kaiming_normal_(w, nonlinearity="relu")``) or
        ``"leaky_relu"`` (a = negative_slope). Other schemes refuse ``"leaky_relu"``.
    std : float
        For scheme ``"normal"`` only (required there): N(0, std^2), std >= 0.
    limit : float
        For scheme ``"uniform"`` only (required there): U(-limit, limit), limit >= 0.

    Returns
    -------
    numpy.ndarray
        C-contiguous, of the requested dtype. Normal entries use Box-Muller on two uniforms in
        the open interval (0, 1) (never log 0), so |W| < 8.58 std. Uniform entries lie in the
        open interval (-limit, limit) in float64; rounding to float32 may reach +-limit.
        Orthogonal: W^T W = gain^2 I when fan_in >= fan_out (orthonormal columns), else
        W W^T = gain^2 I (orthonormal rows).

    Shape
    -----
    (fan_in, fan_out)

    Raises
    ------
    TypeError
        fan_in/fan_out not integers, scheme neither a string nor a number, seed not an integer,
        dtype not float32/float64, gain/negative_slope/std/limit not real numbers.
    ValueError
        fan_in or fan_out < 1; unknown scheme (the message lists the valid ones); ``"xavier"``
        (ambiguous, see the module docstring); a negative or non-finite number as scheme, std or
        limit; ``"normal"`` without std or ``"uniform"`` without limit; std or limit with another
        scheme; ``nonlinearity="leaky_relu"`` with a scheme other than He; gain <= 0 or not
        finite; seed outside [0, 2**64).

    References
    ----------
    Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS 2010: Var W = 2 / (fan_in + fan_out).
    He, Zhang, Ren & Sun, "Delving deep into rectifiers", ICCV 2015: Var W = 2 / ((1 + a^2)
    fan_in).
    LeCun, Bottou, Orr & Mueller, "Efficient BackProp", 1998: Var W = 1 / fan_in.
    Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep
    linear neural networks", ICLR 2014: orthogonal W. Q comes from the Householder QR of a
    Gaussian matrix (its transpose when fan_in < fan_out) with the columns of Q multiplied by
    sign(R_jj), which makes Q Haar-distributed (Mezzadri, "How to generate random matrices from
    the classical compact groups", Notices AMS 2007).
    Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011:
    Philox4x32-10.
    """
    fan_in, fan_out, plan = _plan(
        fan_in, fan_out, scheme, gain, negative_slope, nonlinearity, std, limit
    )
    resolved = _dtype(dtype)
    seed_value = _seed(seed)
    if plan.family == "zeros":
        return np.zeros((fan_in, fan_out), dtype=resolved)
    suffix = "f32" if resolved == np.float32 else "f64"
    kernel = getattr(_core, f"init_{plan.family}_{suffix}")
    return kernel(fan_in, fan_out, plan.scale, seed_value)


def std_for(
    scheme: Union[str, float],
    fan_in: int,
    fan_out: int,
    *,
    gain: float = 1.0,
    negative_slope: float = 0.01,
    nonlinearity: str = "relu",
    std: Optional[float] = None,
    limit: Optional[float] = None,
) -> float:
    """The standard deviation of each entry of ``weights(fan_in, fan_out, scheme, ...)``.

    The formulas of :func:`weights`; a uniform scheme's std is limit / sqrt(3); for
    ``"orthogonal"`` it is gain / sqrt(max(fan_in, fan_out)) (each orthonormal column, or row,
    is a unit vector of that length, uniform on the sphere); 0 for ``"zeros"``. Arguments and
    errors as in :func:`weights`.
    """
    fan_in, fan_out, plan = _plan(
        fan_in, fan_out, scheme, gain, negative_slope, nonlinearity, std, limit
    )
    if plan.family == "uniform":
        return plan.scale / math.sqrt(3.0)
    if plan.family == "orthogonal":
        return plan.scale / math.sqrt(max(fan_in, fan_out))
    return plan.scale


__all__ = ["ALIASES", "NONLINEARITIES", "SCHEMES", "std_for", "weights"]
