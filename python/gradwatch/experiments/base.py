"""What every experiment shares: the result base class, data loading, seeds, progress bars."""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

from gradwatch import datasets
from gradwatch._validation import choice

PLOT_HINT = "plotting needs matplotlib: pip install gradwatch[plot]"
DATA_NAMES: tuple[str, ...] = ("mnist", "fashion", "digits")
"""The named datasets an experiment's ``data`` argument takes."""


class ExperimentResult(abc.ABC):
    """The result of one experiment: its data as NumPy arrays (dataclass fields of the
    subclass), a terminal report and a figure.

    A subclass is a dataclass that sets :attr:`name` (its key in
    :data:`gradwatch.experiments.EXPERIMENTS`) and implements :meth:`summary` and
    :meth:`_draw`; :meth:`plot` and :meth:`to_dict` work for every subclass. Fields named in
    :attr:`not_in_dict` (large raw arrays) stay out of :meth:`to_dict`.
    """

    name = ""
    not_in_dict: tuple[str, ...] = ()

    @abc.abstractmethod
    def summary(self) -> str:
        """A plain-text report for the terminal: the setup, a table of the numbers, and what
        they show."""

    @abc.abstractmethod
    def _draw(self, figure) -> None:
        """Draw the result onto an empty ``matplotlib.figure.Figure``."""

    def plot(self, path) -> Path:
        """Draw the result and save it to ``path`` (format from its suffix, e.g. ``.png``,
        ``.pdf``, ``.svg``; parent folders are created).

        Returns
        -------
        pathlib.Path
            The file written.

        Raises
        ------
        ImportError
            When matplotlib is not installed (``pip install gradwatch[plot]``).
        """
        figure_class = _figure_class()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A bare Figure (no pyplot): no global state, no GUI backend, safe in any thread. No
        # layout engine: with dozens of axes, constrained layout costs seconds.
        figure = figure_class(figsize=(12, 8))
        self._draw(figure)
        figure.savefig(path, dpi=100)
        return path

    def to_dict(self) -> dict:
        """Every field except :attr:`not_in_dict`, as JSON-ready Python values (lists for
        arrays, None for NaN and infinity), plus ``"experiment"``: :attr:`name`."""
        result = {"experiment": self.name}
        for field in dataclasses.fields(self):
            if field.name not in self.not_in_dict:
                result[field.name] = _plain(getattr(self, field.name))
        return result

    def __str__(self) -> str:
        return self.summary()


def _plain(value):
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(PLOT_HINT) from None
    return Figure


class TrainingData(NamedTuple):
    """Float32 images (N, D) and int64 labels; the test split is None when there is none."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: Optional[np.ndarray]
    y_test: Optional[np.ndarray]


def load_data(data, data_dir=None, *, progress: bool = False) -> TrainingData:
    """The training (and test) data an experiment's ``data`` argument names.

    ``"mnist"`` and ``"fashion"``: :func:`gradwatch.datasets.load_mnist` from ``data_dir``
    (flattened, float32 in [0, 1]); ``"digits"``: the bundled UCI digits (no test split);
    a pair ``(x, y)`` of arrays (no test split), or ``((x, y), (x_test, y_test))`` such as the
    result of ``load_mnist``: x is converted to float32 (N, D), y to int64 class indices.
    """
    if isinstance(data, str):
        name = choice("data", data, DATA_NAMES)
        if name == "digits":
            if data_dir is not None:
                raise ValueError("data_dir applies to data='mnist' or 'fashion', not 'digits'")
            x, y = datasets.load_digits()
            return TrainingData(name, x, y, None, None)
        (x, y), (x_test, y_test) = datasets.load_mnist(name, data_dir, progress=progress)
        return TrainingData(name, x, y, x_test, y_test)
    if data_dir is not None:
        raise ValueError("data_dir applies to data='mnist' or 'fashion', not to arrays")
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(
            "data must be 'mnist', 'fashion', 'digits', a pair (x, y) of arrays or "
            f"((x, y), (x_test, y_test)), got {type(data).__name__}"
        )
    if isinstance(data[0], (tuple, list)):
        x, y = _pair(data[0], "data[0]")
        x_test, y_test = _pair(data[1], "data[1]")
        if x_test.shape[1] != x.shape[1]:
            raise ValueError(
                f"the test images have {x_test.shape[1]} features, the training images "
                f"{x.shape[1]}"
            )
        return TrainingData("arrays", x, y, x_test, y_test)
    x, y = _pair(data, "data")
    return TrainingData("arrays", x, y, None, None)


def _pair(pair, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"{what} must be a pair (x, y) of arrays")
    x = np.asarray(pair[0])
    y = np.asarray(pair[1])
    if x.dtype.kind not in "iuf" or x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{what}: x must be a non-empty (N, D) array of numbers, got shape "
                         f"{x.shape} and dtype {x.dtype.name}")
    if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
        raise ValueError(f"{what}: y must be integer class indices of shape ({x.shape[0]},), got "
                         f"shape {y.shape} and dtype {y.dtype.name}")
    if y.min() < 0:
        raise ValueError(f"{what}: class indices must be >= 0, got {y.min()}")
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.int64)


def check_seed(seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    return int(seed)


def check_flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def progress_bar(enabled: bool, total: int, description: str):
    """A tqdm bar on stderr, or None when progress is off or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, dynamic_ncols=True, leave=False)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each run of ``window`` consecutive values (length len - window + 1)."""
    window = max(1, min(window, len(values)))
    sums = np.cumsum(np.concatenate([[0.0], values]))
    return (sums[window:] - sums[:-window]) / window


def table(header: list[str], rows: list[list[str]], first_width: int) -> list[str]:
    """Rows of a plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(1, len(header))]
    lines = []
    for row in [header] + rows:
        cells = [f"{row[0]:<{first_width}}"] + [f"{cell:>{width + 2}}"
                                               for cell, width in zip(row[1:], widths)]
        lines.append("  " + "".join(cells).rstrip())
    return lines
