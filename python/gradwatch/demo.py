"""`python -m gradwatch demo`: vanishing gradients seen happen, offline, in well under a minute.

On the bundled UCI digits (no download) it runs the textbook's weight-initialisation comparison
(ReLU with std 0.01, "Xavier" and He) and its batch-norm comparison (a range of weight scales,
with and without batch norm). For each weight-initialisation network it prints the per-layer
gradient norms the core recorded while training (:attr:`gradwatch.MLP.telemetry`) and the
diagnosis of the network as initialised (:func:`gradwatch.diagnose`); for batch norm, the
diagnosis of the same deep network at a small weight scale without and with it. Plots go to
``out_dir`` when matplotlib is installed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gradwatch import optim
from gradwatch.datasets import load_digits
from gradwatch.diagnosis import diagnose
from gradwatch.experiments import batchnorm_comparison, weight_init_comparison
from gradwatch.experiments.base import PLOT_HINT
from gradwatch.experiments.weight_init import INITS
from gradwatch.network import MLP

HIDDEN = (100, 100, 100, 100)
BATCH_SIZE = 128
LR = 0.01
SMALL_SCALE = 0.01
"""The weight std of the batch-norm diagnosis: small enough that plain ReLU layers vanish."""


def _rule(out, title: str) -> None:
    out("")
    out(title)
    out("=" * len(title))


def _gradient_table(out, names: list, norms: np.ndarray, steps: np.ndarray) -> None:
    """Rows: recorded steps; columns: the weight-gradient norm of each dense layer."""
    out("  " + f"{'step':>6}" + "".join(f"{name:>11}" for name in names))
    for step, row in zip(steps, norms):
        out("  " + f"{int(step):>6}" + "".join(f"{value:>11.2e}" for value in row))


def _train_recorded(sizes, scheme, x, y, iterations: int, seed: int) -> MLP:
    """The weight-init comparison's network, trained with telemetry every tenth of the run."""
    net = MLP(sizes, activation="relu", init=scheme, seed=seed,
              telemetry_every=max(1, iterations // 5), telemetry_capacity=16)
    optimizer = optim.SGD(lr=LR)
    order = np.random.default_rng(seed).permutation(np.resize(np.arange(len(y)),
                                                              iterations * BATCH_SIZE))
    for step in range(iterations):
        rows = order[step * BATCH_SIZE:(step + 1) * BATCH_SIZE]
        net.train_step(x[rows], y[rows], optimizer)
    return net


def _plot(out, result, path: Path) -> bool:
    try:
        out(f"plot written to {result.plot(path)}")
    except ImportError:
        return False
    return True


def run_demo(*, out_dir="gradwatch-demo", iterations: int = 1000, seed: int = 0,
             progress: bool = True, out=print) -> dict:
    """Run the demo and print it; returns the two experiment results and the diagnoses.

    Parameters
    ----------
    out_dir : str or os.PathLike or None
        Folder for the plots (created); None writes none.
    iterations : int
        Training steps per initialisation in the weight-init comparison.
    seed : int
    progress : bool
        Progress bars (tqdm, when installed).
    out : callable
        Receives each line of the report.
    """
    start = time.perf_counter()
    x, y = load_digits()
    sizes = (x.shape[1],) + HIDDEN + (10,)
    probe_x, probe_y = x[:256], y[:256]
    out(f"gradwatch demo: the UCI handwritten digits bundled with gradwatch ({len(y)} images "
        f"of 8x8), MLP {'-'.join(map(str, sizes))}")

    _rule(out, "1. Weight initialisation: ReLU with std 0.01, \"Xavier\" (LeCun) and He")
    weights = weight_init_comparison("digits", iterations=iterations, batch_size=BATCH_SIZE,
                                     lr=LR, hidden=HIDDEN, seed=seed, progress=progress)
    out(weights.summary())
    diagnoses = {}
    for scheme, label in INITS:
        net = MLP(sizes, activation="relu", init=scheme, seed=seed)
        diagnoses[label] = diagnose(net, probe_x, probe_y)
        trained = _train_recorded(sizes, scheme, x, y, iterations, seed)
        record = trained.telemetry
        out("")
        out(f"--- {label}: weight-gradient norm per layer while training (dense0 = input side)")
        _gradient_table(out, record.layer_names, record.grad_weight_norm, record.steps)
        out("")
        out(f"--- {label}: diagnosis at initialisation")
        out(str(diagnoses[label]))

    _rule(out, "2. Batch normalisation: training accuracy at several weight scales")
    norms = batchnorm_comparison("digits", seed=seed, progress=progress)
    out(norms.summary())
    deep = (x.shape[1],) + (100,) * 5 + (10,)
    for batchnorm in (False, True):
        label = f"std {SMALL_SCALE}, {'with' if batchnorm else 'without'} batch norm"
        net = MLP(deep, activation="relu", init=SMALL_SCALE, batchnorm=batchnorm, seed=seed)
        diagnoses[label] = diagnose(net, probe_x, probe_y)
        out("")
        out(f"--- {label}: diagnosis at initialisation")
        out(str(diagnoses[label]))

    _rule(out, "Plots")
    if out_dir is None:
        out("no plots written (out_dir=None)")
    else:
        folder = Path(out_dir)
        if _plot(out, weights, folder / "weight_init_comparison.png"):
            _plot(out, norms, folder / "batchnorm_comparison.png")
        else:
            out(f"no plots: {PLOT_HINT}")
    out(f"\ndemo finished in {time.perf_counter() - start:.1f} s. Next: python -m gradwatch "
        "experiment --help, python -m gradwatch diagnose --help")
    return {"weight_init_comparison": weights, "batchnorm_comparison": norms,
            "diagnoses": diagnoses}
