"""Real datasets: the bundled UCI handwritten digits (offline)."""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources

import numpy as np

from gradwatch._validation import choice

DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


def load_digits(*, dtype="float32") -> tuple[np.ndarray, np.ndarray]:
    """Load the UCI 8x8 handwritten digits bundled with gradwatch.

    1797 images of the digits 0-9 (about 180 per class), each 8x8 pixels counting the "on"
    pixels of a 4x4 block of a 32x32 bitmap, so each pixel is an integer 0..16.

    Parameters
    ----------
    dtype : {"float32", "float64"}
        Dtype of the images.

    Returns
    -------
    images : ndarray, shape (1797, 64)
        Pixels scaled to [0, 1] (divided by 16), row-major 8x8 images.
    labels : ndarray of int64, shape (1797,)
        The digit shown, 0..9.

    Raises
    ------
    ValueError
        If the bundled file does not match its SHA-256 (a damaged installation).

    References
    ----------
    E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine
    Learning Repository, 1998, doi:10.24432/C50P49. License CC BY 4.0.
    """
    dtype_name = choice("dtype", np.dtype(dtype).name if not isinstance(dtype, str) else dtype,
                        ["float32", "float64"])
    raw = resources.files("gradwatch").joinpath("data", "digits.csv.gz").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DIGITS_SHA256:
        raise ValueError(f"bundled digits.csv.gz is damaged: SHA-256 {digest}, expected {DIGITS_SHA256}")
    table = np.loadtxt(gzip.decompress(raw).decode("ascii").splitlines(), delimiter=",")
    images = (table[:, :64] / 16.0).astype(dtype_name)
    labels = table[:, 64].astype(np.int64)
    return images, labels
