"""Batch norm vs none across weight scales on 1000 MNIST images (the textbook's chapter 6)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from gradwatch import optim
from gradwatch._validation import positive_int, positive_scalar, real_scalar
from gradwatch.experiments.base import (
    ExperimentResult,
    check_flag,
    check_seed,
    load_data,
    progress_bar,
    table,
)
from gradwatch.network import MLP

DEFAULT_WEIGHT_SCALES = np.logspace(0, -4, 16)
"""The textbook's 16 weight standard deviations, 1 down to 1e-4."""

BN_EPS = 1e-5
"""gradwatch.MLP's default bn_eps (PyTorch's), added to the batch variance."""


@dataclasses.dataclass
class BatchnormComparison(ExperimentResult):
    """Training accuracy per epoch with and without batch norm, per weight scale.

    Attributes
    ----------
    data : str
    layer_sizes : tuple of int
    weight_scales : ndarray, shape (S,)
        The std of every weight matrix, N(0, scale^2).
    accuracy : ndarray, shape (S, epochs)
        Without batch norm: accuracy on the training images after each epoch (inference mode).
    accuracy_batchnorm : ndarray, shape (S, epochs)
        The same network with batch norm after every hidden dense layer (the accuracy uses the
        running statistics).
    skipped_batches : ndarray of int, shape (S, 2)
        Steps skipped because the loss or a gradient overflowed (without, with batch norm).
    input_power : float
        The mean squared norm of a training image, E||x||^2: the first layer's pre-activations
        have variance scale^2 E||x||^2.
    n_train, epochs, batch_size, lr, seed
    """

    name = "batchnorm_comparison"

    data: str
    layer_sizes: tuple
    weight_scales: np.ndarray
    accuracy: np.ndarray
    accuracy_batchnorm: np.ndarray
    skipped_batches: np.ndarray
    input_power: float
    n_train: int
    epochs: int
    batch_size: int
    lr: float
    seed: int

    def summary(self) -> str:
        sizes = "-".join(map(str, self.layer_sizes))
        lines = [
            f"Batch norm on {self.n_train} {self.data} training images: MLP {sizes} with ReLU, "
            f"weights N(0, scale^2), SGD lr {self.lr}, batch {self.batch_size}, {self.epochs} "
            "epochs.",
            "Training accuracy after the last epoch (chance is about 10%):",
            "",
        ]
        overflow = bool(self.skipped_batches.any())
        header = ["weight scale", "without BN", "with BN", "best without", "best with"]
        header += ["overflowed steps (without/with)"] if overflow else []
        rows = []
        for s, scale in enumerate(self.weight_scales):
            row = [f"{scale:.2e}", f"{self.accuracy[s, -1]:.1%}",
                   f"{self.accuracy_batchnorm[s, -1]:.1%}", f"{self.accuracy[s].max():.1%}",
                   f"{self.accuracy_batchnorm[s].max():.1%}"]
            if overflow:
                row.append(f"{self.skipped_batches[s, 0]} / {self.skipped_batches[s, 1]}")
            rows.append(row)
        lines += table(header, rows, 14)
        final, final_bn = self.accuracy[:, -1], self.accuracy_batchnorm[:, -1]
        ahead = int(np.sum(final_bn > final))
        lines += ["", f"- Batch norm ends ahead at {ahead} of {len(self.weight_scales)} weight "
                      "scales: it renormalises every layer, so the scale of the weights matters "
                      "far less."]
        stuck = self.accuracy.max(axis=1) < 0.2
        best = self.weight_scales[np.argmax(final)]
        small = self.weight_scales[stuck & (self.weight_scales < best)]
        large = self.weight_scales[stuck & (self.weight_scales > best)]
        if len(small):
            lines.append(f"- Without batch norm, no scale <= {small.max():.1e} passes 20%: the "
                         "signal and its gradient vanish through the layers.")
        if len(large):
            lines.append(f"- Without batch norm, no scale >= {large.min():.1e} passes 20%: the "
                         "activations explode through the layers.")
        # The first layer's pre-activation variance is scale^2 * E||x||^2.
        below_eps = self.weight_scales**2 * self.input_power < BN_EPS
        bn_failed = self.weight_scales[(self.accuracy_batchnorm.max(axis=1) < 0.2) & below_eps]
        if len(bn_failed):
            lines.append(f"- With batch norm, scales <= {bn_failed.max():.1e} fail too: there the "
                         f"variance of x @ W (scale^2 E||x||^2) is below bn_eps ({BN_EPS:g}), so "
                         "batch norm can no longer restore unit variance.")
        return "\n".join(lines)

    def _draw(self, figure) -> None:
        count = len(self.weight_scales)
        columns = math.ceil(math.sqrt(count))
        rows = math.ceil(count / columns)
        figure.set_size_inches(3.0 * columns, 2.4 * rows)
        axes = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
        figure.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.9, hspace=0.35)
        epochs = np.arange(1, self.epochs + 1)
        for s, scale in enumerate(self.weight_scales):
            axis = axes[s]
            axis.plot(epochs, self.accuracy_batchnorm[s], label="batch norm")
            axis.plot(epochs, self.accuracy[s], linestyle="--", label="without")
            axis.set_title(f"W ~ N(0, {scale:.2g}^2)", fontsize=9)
            axis.set_ylim(0, 1)
            axis.tick_params(labelsize=7)
        for axis in axes[count:]:
            axis.set_visible(False)
        axes[0].legend(fontsize=7)
        figure.supxlabel("epoch")
        figure.supylabel("training accuracy")
        figure.suptitle(f"Batch norm vs none, {self.n_train} {self.data} images, "
                        f"MLP {'-'.join(map(str, self.layer_sizes))}, ReLU")


def batchnorm_comparison(data="mnist", *, data_dir=None, n_train: int = 1000,
                         weight_scales: Sequence[float] = DEFAULT_WEIGHT_SCALES,
                         epochs: int = 20, batch_size: int = 100, lr: float = 0.01,
                         hidden: Sequence[int] = (100, 100, 100, 100, 100), seed: int = 0,
                         progress: bool = True) -> BatchnormComparison:
    """Train a deep ReLU network with and without batch norm for a range of weight scales and
    record the training accuracy per epoch (the textbook's chapter 6 experiment).

    The first ``n_train`` training images train a D-100-100-100-100-100-C ReLU network whose
    weights are N(0, scale^2), by plain SGD on shuffled mini-batches, with and without batch
    norm after every hidden dense layer (same weights, same batches). Batch norm learns over
    almost the whole range of scales; without it, small scales vanish and large ones explode.
    Steps whose loss or gradients overflow are skipped and counted (``skipped_batches``).
    Batch norm uses PyTorch's eps 1e-5 (the textbook's is 1e-6): at the smallest scales the
    variance of ``x @ W`` falls below it and batch norm fails too.

    Parameters
    ----------
    data : {"mnist", "fashion", "digits"} or arrays
        See :func:`gradwatch.experiments.load_data`.
    data_dir : str or os.PathLike, optional
        Where the MNIST files are (see :func:`gradwatch.datasets.load_mnist`).
    n_train : int
        Training images used, the first ones (1000).
    weight_scales : sequence of float
        Weight standard deviations, each finite and >= 0; default ``np.logspace(0, -4, 16)``.
    epochs : int
        20.
    batch_size : int
        100.
    lr : float
        SGD learning rate (0.01).
    hidden : sequence of int
        Hidden widths, five of 100.
    seed : int
        Seeds the weights and the batch order.
    progress : bool
        A progress bar (tqdm, when installed) over the runs.

    Returns
    -------
    BatchnormComparison

    References
    ----------
    S. Ioffe and C. Szegedy, "Batch Normalization: Accelerating Deep Network Training by
    Reducing Internal Covariate Shift", ICML 2015.
    """
    n_train = positive_int("n_train", n_train)
    scales = np.array([real_scalar("weight_scales", scale) for scale in weight_scales])
    if len(scales) == 0 or (scales < 0).any():
        raise ValueError(f"weight_scales must be one or more numbers >= 0, got {list(scales)}")
    epochs = positive_int("epochs", epochs)
    batch_size = positive_int("batch_size", batch_size)
    lr = positive_scalar("lr", lr)
    hidden = tuple(positive_int("hidden width", width) for width in hidden)
    if not hidden:
        raise ValueError("hidden must name at least one hidden layer (batch norm needs one)")
    seed = check_seed(seed)
    progress = check_flag("progress", progress)
    dataset = load_data(data, data_dir, progress=progress)
    x, y = dataset.x_train[:n_train], dataset.y_train[:n_train]
    if len(y) < 2:
        raise ValueError(f"batch norm needs at least 2 training images, got {len(y)}")
    classes = int(max(dataset.y_train.max(), 1)) + 1
    sizes = (x.shape[1],) + hidden + (classes,)

    accuracy = np.empty((2, len(scales), epochs))
    skipped = np.zeros((len(scales), 2), np.int64)
    bar = progress_bar(progress, 2 * len(scales), "batchnorm_comparison")
    try:
        for s, scale in enumerate(scales):
            for with_batchnorm in (False, True):
                net = MLP(sizes, activation="relu", init=float(scale),
                          batchnorm=with_batchnorm, seed=seed)
                history = net.fit(x, y, optimizer=optim.SGD(lr=lr), epochs=epochs,
                                  batch_size=batch_size, seed=seed, progress=False,
                                  on_nonfinite="skip")
                accuracy[int(with_batchnorm), s] = history.epoch_accuracy
                skipped[s, int(with_batchnorm)] = history.skipped_batches
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return BatchnormComparison(
        data=dataset.name, layer_sizes=sizes, weight_scales=scales, accuracy=accuracy[0],
        accuracy_batchnorm=accuracy[1], skipped_batches=skipped,
        input_power=float(np.mean(np.sum(x.astype(np.float64) ** 2, axis=1))), n_train=len(y), epochs=epochs,
        batch_size=min(batch_size, len(y)), lr=lr, seed=seed,
    )
