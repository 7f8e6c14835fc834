"""The textbook experiments on vanishing gradients, each in seconds on real data.

Every experiment is a function returning an :class:`ExperimentResult` (its data as NumPy
arrays, ``summary()``, ``plot(path)``, ``to_dict()``); :data:`EXPERIMENTS` maps names to the
functions and :func:`run` calls one by name (``python -m gradwatch experiment NAME``).
"""

from __future__ import annotations

from gradwatch._validation import choice
from gradwatch.experiments.batchnorm import BatchnormComparison, batchnorm_comparison
from gradwatch.experiments.base import ExperimentResult, load_data
from gradwatch.experiments.histograms import ActivationHistograms, activation_histograms
from gradwatch.experiments.weight_init import WeightInitComparison, weight_init_comparison

EXPERIMENTS = {
    "activation_histograms": activation_histograms,
    "batchnorm_comparison": batchnorm_comparison,
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
    "BatchnormComparison",
    "ExperimentResult",
    "WeightInitComparison",
    "activation_histograms",
    "batchnorm_comparison",
    "load_data",
    "run",
    "weight_init_comparison",
]
