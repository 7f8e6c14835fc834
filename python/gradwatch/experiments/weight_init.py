"""std 0.01 vs Xavier vs He on MNIST: the loss curves of a deep ReLU network (chapter 6)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import numpy as np

from gradwatch import optim
from gradwatch._validation import positive_int, positive_scalar
from gradwatch.experiments.base import (
    ExperimentResult,
    check_flag,
    check_seed,
    load_data,
    moving_average,
    progress_bar,
    table,
)
from gradwatch.network import MLP

INITS: tuple[tuple[object, str], ...] = (
    (0.01, "std 0.01"),
    ("lecun_normal", "Xavier"),
    ("he_normal", "He"),
)
"""(gradwatch.init scheme, label): the textbook's weight_init_std 0.01, its "Xavier"
N(0, 1/fan_in) (gradwatch's ``"lecun_normal"``) and He N(0, 2/fan_in)."""

CHANCE_LOSS = math.log(10)
"""The cross-entropy of a uniform guess over 10 classes: where a network that learns nothing
stays."""


@dataclasses.dataclass
class WeightInitComparison(ExperimentResult):
    """Loss curves of the same network trained from three initialisations.

    Attributes
    ----------
    data : str
        "mnist", "fashion", "digits" or "arrays".
    layer_sizes : tuple of int
    labels : tuple of str
        "std 0.01", "Xavier", "He".
    init : tuple
        The gradwatch.init scheme of each run.
    losses : ndarray, shape (inits, iterations)
        The training loss of every step's batch, before its update.
    test_accuracy : ndarray, shape (inits,)
        On the test split after training; NaN without one.
    seconds : ndarray, shape (inits,)
        Training time of each run (batches included, evaluation not).
    batch_size, lr, seed
    """

    name = "weight_init_comparison"

    data: str
    layer_sizes: tuple
    labels: tuple
    init: tuple
    losses: np.ndarray
    test_accuracy: np.ndarray
    seconds: np.ndarray
    batch_size: int
    lr: float
    seed: int

    @property
    def iterations(self) -> int:
        return self.losses.shape[1]

    def final_loss(self, window: int = 100) -> np.ndarray:
        """Mean loss of the last ``window`` steps of each run, shape (inits,)."""
        window = min(window, self.iterations)
        return self.losses[:, -window:].mean(axis=1)

    def summary(self) -> str:
        window = min(100, self.iterations)
        sizes = "-".join(map(str, self.layer_sizes))
        lines = [
            f"Weight initialisation on {self.data}: MLP {sizes} with ReLU, SGD lr {self.lr}, "
            f"batch {self.batch_size}, {self.iterations} iterations (same batches for each).",
            "\"Xavier\" is the textbook's N(0, 1/fan_in) = gradwatch's 'lecun_normal'; He is "
            "N(0, 2/fan_in).",
            "",
        ]
        header = ["init", "first loss", f"last {window} mean", "test accuracy", "time"]
        rows = []
        for i, label in enumerate(self.labels):
            accuracy = self.test_accuracy[i]
            rows.append([label, f"{self.losses[i, 0]:.4f}", f"{self.final_loss()[i]:.4f}",
                         "-" if math.isnan(accuracy) else f"{accuracy:.1%}",
                         f"{self.seconds[i]:.2f} s"])
        lines += table(header, rows, 10)
        lines.append("")
        for i, label in enumerate(self.labels):
            final = self.final_loss()[i]
            if final > 0.9 * CHANCE_LOSS:
                lines.append(f"- {label}: the loss stays near ln(10) = {CHANCE_LOSS:.3f}, a uniform "
                             "guess: the network does not learn (its signal and gradients vanish "
                             "through the layers).")
            else:
                lines.append(f"- {label}: the loss falls from {self.losses[i, 0]:.2f} to "
                             f"{final:.2f}: the network learns.")
        return "\n".join(lines)

    def _draw(self, figure) -> None:
        axis = figure.subplots()
        figure.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.94)
        steps = np.arange(self.iterations)
        window = max(1, min(50, self.iterations // 10))
        for i, label in enumerate(self.labels):
            axis.plot(steps, self.losses[i], color=f"C{i}", alpha=0.25, linewidth=0.7)
            smooth = moving_average(self.losses[i], window)
            axis.plot(steps[window - 1:], smooth, color=f"C{i}", label=label)
        axis.axhline(CHANCE_LOSS, color="grey", linestyle=":", label="ln(10): uniform guess")
        axis.set_xlabel("iteration")
        axis.set_ylabel(f"training loss (moving average of {window})")
        axis.set_ylim(0, max(2.6, float(np.nanmax(self.losses[:, : self.iterations // 20 + 1]))))
        axis.set_title(f"Weight initialisation, {self.data}, MLP "
                       f"{'-'.join(map(str, self.layer_sizes))}, ReLU, SGD lr {self.lr}")
        axis.legend()


def weight_init_comparison(data="mnist", *, data_dir=None, iterations: int = 2000,
                           batch_size: int = 128, lr: float = 0.01,
                           hidden: Sequence[int] = (100, 100, 100, 100), seed: int = 0,
                           progress: bool = True) -> WeightInitComparison:
    """Train one deep ReLU network from std 0.01, "Xavier" and He initialisations and compare
    the loss curves (the textbook's chapter 6 experiment).

    The network is D-100-100-100-100-C with ReLU (784-...-10 on MNIST), trained by plain SGD
    on mini-batches; the three runs see the same batches (shuffled epochs drawn from ``seed``)
    and each network's weights come from the same seed, so only the scale differs. With std
    0.01 the signal shrinks ~15-fold per layer and the loss stays at ln(10): nothing is learnt.
    "Xavier" (the textbook's N(0, 1/fan_in), gradwatch's ``"lecun_normal"``) and He
    (N(0, 2/fan_in)) learn, He fastest.

    Parameters
    ----------
    data : {"mnist", "fashion", "digits"} or arrays
        A dataset name (see :func:`gradwatch.experiments.load_data`), ``(x, y)``, or
        ``((x, y), (x_test, y_test))``.
    data_dir : str or os.PathLike, optional
        Where the MNIST files are (see :func:`gradwatch.datasets.load_mnist`).
    iterations : int
        Training steps per initialisation (2000).
    batch_size : int
        128.
    lr : float
        SGD learning rate (0.01).
    hidden : sequence of int
        Hidden widths, (100, 100, 100, 100).
    seed : int
        Seeds the weights and the batch order.
    progress : bool
        A progress bar (tqdm, when installed) over all steps.

    Returns
    -------
    WeightInitComparison

    Raises
    ------
    FileNotFoundError, gradwatch.datasets.DownloadError, gradwatch.datasets.DatasetError
        When the dataset cannot be loaded.
    TypeError, ValueError
        For invalid arguments.

    References
    ----------
    K. He, X. Zhang, S. Ren and J. Sun, "Delving Deep into Rectifiers", ICCV 2015.
    X. Glorot and Y. Bengio, AISTATS 2010. Y. LeCun et al., "Efficient BackProp", 1998.
    """
    iterations = positive_int("iterations", iterations)
    batch_size = positive_int("batch_size", batch_size)
    lr = positive_scalar("lr", lr)
    hidden = tuple(positive_int("hidden width", width) for width in hidden)
    seed = check_seed(seed)
    progress = check_flag("progress", progress)
    dataset = load_data(data, data_dir, progress=progress)
    x, y = dataset.x_train, dataset.y_train
    classes = int(max(y.max(), -1 if dataset.y_test is None else dataset.y_test.max())) + 1
    sizes = (x.shape[1],) + hidden + (max(classes, 2),)

    batch = min(batch_size, len(y))
    rng = np.random.default_rng(seed)
    epochs_needed = -(-iterations * batch // len(y))
    order = np.concatenate([rng.permutation(len(y)) for _ in range(epochs_needed)])
    losses = np.empty((len(INITS), iterations))
    accuracy = np.full(len(INITS), np.nan)
    seconds = np.empty(len(INITS))
    bar = progress_bar(progress, len(INITS) * iterations, "weight_init_comparison")
    try:
        for i, (scheme, label) in enumerate(INITS):
            net = MLP(sizes, activation="relu", init=scheme, seed=seed)
            optimizer = optim.SGD(lr=lr)
            start = time.perf_counter()
            for step in range(iterations):
                rows = order[step * batch:(step + 1) * batch]
                losses[i, step] = net.train_step(x[rows], y[rows], optimizer)[0]
                if bar is not None and step % 50 == 49:
                    bar.update(50)
                    bar.set_postfix_str(f"{label}: loss {losses[i, step]:.3f}", refresh=False)
            seconds[i] = time.perf_counter() - start
            if bar is not None:
                bar.update(iterations % 50)
            if dataset.x_test is not None:
                accuracy[i] = net.evaluate(dataset.x_test, dataset.y_test)["accuracy"]
    finally:
        if bar is not None:
            bar.close()
    return WeightInitComparison(
        data=dataset.name, layer_sizes=sizes, labels=tuple(label for _, label in INITS),
        init=tuple(scheme for scheme, _ in INITS), losses=losses, test_accuracy=accuracy,
        seconds=seconds, batch_size=batch, lr=lr, seed=seed,
    )
