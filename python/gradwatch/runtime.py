"""Threads, SIMD level and build information of the compiled core."""

from __future__ import annotations

import operator

from gradwatch._core_loader import _core


def set_num_threads(n: int) -> None:
    """Set one thread budget for gradwatch's own kernels (OpenMP) and for OpenBLAS.

    Parameters
    ----------
    n : int
        Number of threads, at least 1. The budget is process-wide, like
        ``torch.set_num_threads``; results do not depend on it (reductions run in a fixed
        order).

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n < 1``.
    """
    if isinstance(n, bool):
        raise TypeError(f"n must be an integer, got {type(n).__name__}")
    try:
        count = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an integer, got {type(n).__name__}") from None
    if count < 1:
        raise ValueError(f"n must be >= 1, got {count}")
    _core.set_num_threads(count)


def get_num_threads() -> int:
    """Return the thread budget shared by gradwatch's kernels and OpenBLAS."""
    return _core.get_num_threads()


def build_info() -> dict:
    """Describe the compiled core.

    Returns
    -------
    dict
        ``version``, ``compiler``, ``simd_level`` (the level the kernels use now),
        ``simd_detected`` (the best level this CPU supports; the environment variable
        ``GRADWATCH_SIMD=baseline|avx2|avx512`` caps the level in use), ``openmp`` (the
        OpenMP version, yyyymm), ``blas`` (the BLAS library), ``blas_version``,
        ``blas_core`` (the kernel OpenBLAS chose for this CPU) and ``num_threads``.
    """
    return {
        "version": _core.__version__,
        "compiler": _core.compiler(),
        "simd_level": _core.simd_level(),
        "simd_detected": _core.detected_simd_level(),
        "openmp": _core.openmp_version(),
        "blas": "OpenBLAS (scipy-openblas32)",
        "blas_version": _core.blas_version().strip(),
        "blas_core": _core.blas_core_name().strip(),
        "num_threads": _core.get_num_threads(),
    }
