"""Threads, SIMD level and build information."""

import os
import subprocess
import sys

import pytest

import gradwatch


def test_build_info_reports_the_core():
    info = gradwatch.build_info()
    assert info["version"] == gradwatch.__version__
    assert info["simd_level"] in ("baseline", "avx2", "avx512")
    assert info["simd_detected"] in ("baseline", "avx2", "avx512")
    assert info["openmp"] >= 201511
    assert "OpenBLAS" in info["blas_version"]
    assert info["compiler"]
    assert info["num_threads"] == gradwatch.get_num_threads()


def test_set_num_threads_round_trips():
    before = gradwatch.get_num_threads()
    try:
        gradwatch.set_num_threads(1)
        assert gradwatch.get_num_threads() == 1
        gradwatch.set_num_threads(2)
        assert gradwatch.get_num_threads() == 2
    finally:
        gradwatch.set_num_threads(before)


def test_set_num_threads_reaches_openblas():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = gradwatch.get_num_threads()
    try:
        gradwatch.set_num_threads(1)
        pools = [
            p for p in threadpoolctl.threadpool_info()
            if "scipy_openblas32" in p.get("filepath", "")  # NumPy's own OpenBLAS has the same prefix
        ]
        assert pools and all(p["num_threads"] == 1 for p in pools)
    finally:
        gradwatch.set_num_threads(before)


@pytest.mark.parametrize("bad", [0, -1])
def test_set_num_threads_rejects_values_below_one(bad):
    with pytest.raises(ValueError, match="n must be >= 1"):
        gradwatch.set_num_threads(bad)


@pytest.mark.parametrize("bad", [1.5, "2", None, True])
def test_set_num_threads_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="n must be an integer"):
        gradwatch.set_num_threads(bad)


def test_environment_variable_caps_the_simd_level():
    env = dict(os.environ, GRADWATCH_SIMD="baseline")
    out = subprocess.run(
        [sys.executable, "-c", "import gradwatch; print(gradwatch.build_info()['simd_level'])"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "baseline"
