"""Argument checks shared by the public functions: dtypes, shapes, names, scalars.

Every check raises TypeError or ValueError with a message that names the argument, so that the
compiled core only ever sees C-contiguous float32/float64 arrays of matching dtype and shape.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Optional, Sequence

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype_name(dtype: np.dtype) -> str:
    return np.dtype(dtype).name


def float_arrays(*named: tuple[str, object]) -> tuple[Optional[np.ndarray], ...]:
    """Convert ``(name, value)`` pairs to C-contiguous arrays of one float dtype.

    NumPy arrays must already be float32 or float64, all the same; they are copied only when
    not C-contiguous. Other values (lists, tuples, Python numbers) are converted to the dtype of
    the arrays among the arguments, float64 if there are none. ``None`` stays ``None``.

    Raises
    ------
    TypeError
        For an array of another dtype (integer, bool, complex, float16, object, ...), for values
        that are not numbers, and for float32 mixed with float64 in one call.
    """
    # Fast path (the common call): C-contiguous arrays, all of one float dtype, or None.
    first_dtype = None
    for _, value in named:
        if value is None:
            continue
        if type(value) is not np.ndarray or not value.flags.c_contiguous:
            break
        if first_dtype is None:
            if value.dtype not in FLOAT_DTYPES:
                break
            first_dtype = value.dtype
        elif value.dtype != first_dtype:
            break
    else:
        return tuple(value for _, value in named)

    array_dtypes: dict[str, np.dtype] = {}
    for name, value in named:
        if isinstance(value, (np.ndarray, np.generic)):
            if value.dtype not in FLOAT_DTYPES:
                raise TypeError(
                    f"{name} must be a float32 or float64 array, got dtype {_dtype_name(value.dtype)}"
                )
            array_dtypes[name] = value.dtype
    distinct = set(array_dtypes.values())
    if len(distinct) > 1:
        described = ", ".join(f"{name} is {_dtype_name(d)}" for name, d in array_dtypes.items())
        raise TypeError(
            f"cannot mix float32 and float64 in one call ({described}); convert with .astype()"
        )
    dtype = distinct.pop() if distinct else np.dtype(np.float64)

    converted: list[Optional[np.ndarray]] = []
    for name, value in named:
        if value is None:
            converted.append(None)
            continue
        if not isinstance(value, (np.ndarray, np.generic)):
            try:
                value = np.asarray(value)
            except (ValueError, TypeError) as error:
                raise TypeError(f"{name} must be array-like of numbers: {error}") from None
            if value.dtype.kind not in "iuf":
                raise TypeError(
                    f"{name} must hold real numbers, got dtype {_dtype_name(value.dtype)}"
                )
        converted.append(np.asarray(value, dtype=dtype, order="C"))  # keeps 0-d arrays 0-d
    return tuple(converted)


def shape_text(shape: Sequence[object]) -> str:
    """``(32, 784)`` for a shape, with ``N``-style names left as they are."""
    inner = ", ".join(str(s) for s in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def require_ndim(name: str, array: np.ndarray, ndim: int, description: str = "") -> None:
    """Raise ValueError unless ``array.ndim == ndim``."""
    if array.ndim != ndim:
        what = f" ({description})" if description else ""
        raise ValueError(
            f"{name} must be {ndim}-dimensional{what}, got shape {shape_text(array.shape)}"
        )


def require_shape(name: str, array: np.ndarray, expected: Sequence[int], legend: str = "") -> None:
    """Raise ValueError unless ``array.shape == expected``; ``legend`` explains the letters."""
    if tuple(array.shape) != tuple(expected):
        extra = f" ({legend})" if legend else ""
        raise ValueError(
            f"{name} must have shape {shape_text(expected)}{extra}, got {shape_text(array.shape)}"
        )


def require_nonempty_batch(name: str, array: np.ndarray) -> None:
    """Raise ValueError when the batch (first) dimension is empty."""
    if array.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {shape_text(array.shape)})")


def require_nonempty(name: str, array: np.ndarray) -> None:
    """Raise ValueError when the array has no elements."""
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {shape_text(array.shape)})")


def choice(name: str, value: object, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise, listing the valid values."""
    allowed = list(allowed)
    valid = ", ".join(repr(a) for a in allowed)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {valid}; got {value!r}")
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; valid values are {valid}")
    return value


def real_scalar(name: str, value: object) -> float:
    """Return ``value`` as a finite float; TypeError for non-numbers, ValueError for inf/NaN."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {result}")
    return result


def positive_scalar(name: str, value: object) -> float:
    """Return ``value`` as a finite float > 0, else raise naming ``name``."""
    result = real_scalar(name, value)
    if result <= 0:
        raise ValueError(f"{name} must be > 0, got {result}")
    return result


def positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int >= 1, else raise naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    result = int(value)
    if result < 1:
        raise ValueError(f"{name} must be >= 1, got {result}")
    return result
