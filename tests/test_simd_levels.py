"""Every SIMD level the CPU has computes what the reference says.

The main test run uses the best level (or the one GRADWATCH_SIMD selects). The level is fixed
once per process, so each other level gets a pytest subprocess that reruns the tests marked
`simd` (the reference comparisons) with GRADWATCH_SIMD set to it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import gradwatch

LEVELS = ["baseline", "avx2", "avx512"]
info = gradwatch.build_info()
available = LEVELS[: LEVELS.index(info["simd_detected"]) + 1]
other_levels = [level for level in available if level != info["simd_level"]]


def test_the_level_in_use_is_available():
    assert info["simd_level"] in available


@pytest.mark.parametrize("level", other_levels)
def test_reference_comparisons_pass_at_level(level):
    env = dict(os.environ, GRADWATCH_SIMD=level)
    check = subprocess.run(
        [sys.executable, "-c", "import gradwatch; print(gradwatch.build_info()['simd_level'])"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert check.stdout.strip() == level
    tests_dir = Path(__file__).parent
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "simd", "-p", "no:cacheprovider",
         str(tests_dir)],
        env=env, capture_output=True, text=True, cwd=tests_dir,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout
