"""Loads the compiled core after the OpenBLAS it links against."""

# The core links libscipy_openblas.so but carries no path to it: importing scipy_openblas32
# loads the library into the process first (with RTLD_GLOBAL), so the import below finds it.
import scipy_openblas32  # noqa: F401

from gradwatch import _core  # noqa: E402

__all__ = ["_core"]
