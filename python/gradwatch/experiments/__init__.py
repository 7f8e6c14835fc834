"""The textbook experiments on vanishing gradients, each in seconds on real data.

Every experiment is a function returning an :class:`ExperimentResult` (its data as NumPy
arrays, ``summary()``, ``plot(path)``, ``to_dict()``); :data:`EXPERIMENTS` maps names to the
functions and :func:`run` calls one by name (``python -m gradwatch experiment NAME``).

Adding one: a module here with a dataclass subclass of :class:`ExperimentResult` (set ``name``,
write ``summary()`` and ``_draw(figure)``; ``plot`` and ``to_dict`` come with the base) and a
function taking keyword arguments and returning it, entered in :data:`EXPERIMENTS`. The command
line passes ``data``, ``data_dir``, ``seed`` and ``progress`` to the functions whose signature
has them (and refuses ``--data`` / ``--data-dir`` for the others); :func:`load_data` turns
``data``/``data_dir`` into arrays.
"""

from __future__ import annotations

from gradwatch._validation import choice
from gradwatch.experiments.base import ExperimentResult, load_data
from gradwatch.experiments.batchnorm import BatchnormComparison, batchnorm_comparison
from gradwatch.experiments.bn_batch_size import BatchnormBatchSize, batchnorm_batch_size
from gradwatch.experiments.depth import DepthSweep, depth_sweep
from gradwatch.experiments.histograms import ActivationHistograms, activation_histograms
from gradwatch.experiments.weight_init import WeightInitComparison, weight_init_comparison

EXPERIMENTS = {
    "activation_histograms": activation_histograms,
    "batchnorm_batch_size": batchnorm_batch_size,
    "batchnorm_comparison": batchnorm_comparison,
    "depth_sweep": depth_sweep,
    "weight_init_comparison": weight_init_comparison,
}
"""Experiment name -> function (keyword arguments only, returning an ExperimentResult)."""


def run(name: str, **kwargs) -> ExperimentResult:
    """Run the experiment called ``name`` with ``kwargs``; see each function for its arguments.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).
    """
    return EXPERIMENTS[choice("name", name, EXPERIMENTS)](**kwargs)


__all__ = [
    "EXPERIMENTS",
    "ActivationHistograms",
    "BatchnormBatchSize",
    "BatchnormComparison",
    "DepthSweep",
    "ExperimentResult",
    "WeightInitComparison",
    "activation_histograms",
    "batchnorm_batch_size",
    "batchnorm_comparison",
    "depth_sweep",
    "load_data",
    "run",
    "weight_init_comparison",
]
