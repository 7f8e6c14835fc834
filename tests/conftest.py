"""Shared test settings: the hypothesis profiles, tolerances keyed by dtype, the shared MNIST
folder and a one-thread fixture."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import gradwatch

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

DTYPES = [np.float32, np.float64]


def shared_data_dir():
    """../shared/data beside the project (or $GRADWATCH_DATA) when it holds MNIST, else None."""
    candidates = [Path(__file__).resolve().parents[1].parent / "shared" / "data"]
    if os.environ.get("GRADWATCH_DATA"):
        candidates.append(Path(os.environ["GRADWATCH_DATA"]))
    for candidate in candidates:
        if (candidate / "mnist" / "train-images-idx3-ubyte.gz").is_file():
            return candidate
    return None


@pytest.fixture
def one_thread():
    """One thread for tests about training loops and results, not threads (thread equivalence
    has tests of its own): it keeps them fast on a loaded machine."""
    before = gradwatch.get_num_threads()
    gradwatch.set_num_threads(1)
    yield
    gradwatch.set_num_threads(before)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


def tolerance(dtype) -> dict:
    """rtol/atol for comparing a kernel in `dtype` with the float64 reference."""
    if np.dtype(dtype) == np.float32:
        return {"rtol": 2e-5, "atol": 2e-6}
    return {"rtol": 1e-11, "atol": 1e-13}


def assert_close(actual, expected, dtype, scale: float = 1.0, **overrides):
    """assert_allclose with the dtype's tolerance; `scale` widens it for longer reductions."""
    tol = tolerance(dtype)
    tol = {"rtol": tol["rtol"] * scale, "atol": tol["atol"] * scale}
    tol.update(overrides)
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, **tol)
