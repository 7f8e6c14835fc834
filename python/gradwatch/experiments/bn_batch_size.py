"""ReLU + batch norm: the gradient explosion at initialisation, how training ends it, and the
remedies at small and large batch sizes (Yang et al. 2019; Paik & Choi 2023)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from gradwatch import optim, schedules, theory
from gradwatch._validation import positive_int, positive_scalar
from gradwatch.errors import NonFiniteError
from gradwatch.experiments.base import (
    ExperimentResult,
    check_flag,
    check_seed,
    load_data,
    progress_bar,
    table,
)
from gradwatch.network import MLP
from gradwatch.telemetry import probe

REMEDIES: tuple[str, ...] = ("none", "warmup", "clipping", "LARS", "Adam")
"""The training variants compared: plain SGD with momentum, and four remedies."""

REFERENCE_BATCH = 256
"""The batch size at which ``lr`` (and Adam's 1e-3) applies; other batch sizes scale it
linearly (Goyal et al. 2017)."""


def _hidden_growth(grad_in: np.ndarray, grad_out: np.ndarray) -> np.ndarray:
    """(..., layers) gradient norms -> (...) geometric mean over the hidden layers after the
    first of the squared gradient-norm growth across a layer (the first hidden layer sees the
    raw inputs, the output layer has no batch norm: both are left out)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = (grad_in[..., 1:-1] / grad_out[..., 1:-1]) ** 2
        return np.exp(np.mean(np.log(growth), axis=-1))


@dataclasses.dataclass
class BatchnormBatchSize(ExperimentResult):
    """The three parts of the experiment.

    Attributes
    ----------
    data : str
    layer_sizes : tuple of int
    batch_sizes : ndarray of int, shape (B,)
        Batch sizes probed at initialisation.
    measured_growth : ndarray, shape (B,)
        Geometric mean over the hidden layers (after the first) of the squared gradient-norm
        growth per layer, at initialisation, averaged over ``repeats`` batches.
    predicted_growth : ndarray, shape (B,)
        :func:`gradwatch.theory.batchnorm_gradient_growth` of each batch size.
    train_batch_size : int
    train_loss : ndarray, shape (T,)
        The loss of each of the first T training steps (SGD with momentum).
    train_growth : ndarray, shape (T,)
        The per-layer gradient growth (as ``measured_growth``) at each step.
    train_cosine : ndarray, shape (T,)
        The mean over hidden layers of the mean pairwise cosine similarity of the
        activations across the batch, at each step.
    remedies : tuple of str
    remedy_batch_sizes : ndarray of int, shape (2,)
        The small and the large batch size.
    remedy_lr : ndarray, shape (2,)
        SGD's learning rate at each (``lr`` scaled linearly from batch 256).
    remedy_loss : ndarray, shape (remedies, 2, steps)
        Loss curves; NaN after a step that produced a non-finite value.
    lr, seed
    """

    name = "batchnorm_batch_size"

    data: str
    layer_sizes: tuple
    batch_sizes: np.ndarray
    measured_growth: np.ndarray
    predicted_growth: np.ndarray
    train_batch_size: int
    train_loss: np.ndarray
    train_growth: np.ndarray
    train_cosine: np.ndarray
    remedies: tuple
    remedy_batch_sizes: np.ndarray
    remedy_lr: np.ndarray
    remedy_loss: np.ndarray
    lr: float
    seed: int

    def summary(self) -> str:
        sizes = "-".join(map(str, self.layer_sizes))
        lines = [f"ReLU + batch norm, MLP {sizes}, {self.data}", "",
                 "1. At initialisation: growth of the squared gradient norm per layer"]
        rows = [[str(int(b)), f"{m:.3f}", f"{p:.3f}"] for b, m, p in
                zip(self.batch_sizes, self.measured_growth, self.predicted_growth)]
        lines += table(["batch size", "measured", "theory"], rows, first_width=12)
        lines.append("   The gradient grows at every layer, more at larger batches, towards "
                     "pi/(pi-1) = 1.467 (Yang et al. 2019).")
        steps = len(self.train_loss)
        marks = sorted({0, steps // 10, steps // 4, steps // 2, steps - 1})
        lines += ["", f"2. The first {steps} training steps (batch {self.train_batch_size}, "
                  f"SGD lr {self.lr}, momentum 0.9)"]
        rows = [[str(t), f"{self.train_loss[t]:.4f}", f"{self.train_growth[t]:.3f}",
                 f"{self.train_cosine[t]:.3f}"] for t in marks]
        lines += table(["step", "loss", "growth", "activation cosine"], rows, first_width=6)
        tenth = max(1, steps // 10)
        growth_start = self.train_growth[:tenth].mean()
        growth_end = self.train_growth[-tenth:].mean()
        cosine_start = self.train_cosine[:tenth].mean()
        cosine_end = self.train_cosine[-tenth:].mean()
        lines.append(
            f"   First to last tenth of the steps: growth per layer {growth_start:.3f} -> "
            f"{growth_end:.3f}, activation cosine {cosine_start:.3f} -> {cosine_end:.3f}. "
            "Paik & Choi (2023): the explosion ends as the samples' activations become "
            "correlated."
        )
        lines += ["", "3. Remedies, lr scaled linearly with the batch: final loss (mean of the "
                  "last 10% of steps)"]
        window = max(1, self.remedy_loss.shape[2] // 10)
        header = ["remedy"] + [f"batch {int(b)} (lr {lr:.3g})"
                               for b, lr in zip(self.remedy_batch_sizes, self.remedy_lr)]
        rows = []
        for r, remedy in enumerate(self.remedies):
            cells = []
            for b in range(len(self.remedy_batch_sizes)):
                tail = self.remedy_loss[r, b, -window:]
                cells.append("diverged" if not np.isfinite(tail).all() else f"{tail.mean():.4f}")
            rows.append([remedy] + cells)
        lines += table(header, rows, first_width=10)
        return "\n".join(lines)

    def _draw(self, figure) -> None:
        first, second, third = figure.subplots(1, 3)
        first.plot(self.batch_sizes, self.measured_growth, "o-", label="measured")
        first.plot(self.batch_sizes, self.predicted_growth, "--", label="theory")
        first.axhline(np.pi / (np.pi - 1), color="grey", lw=0.8)
        first.set_xscale("log", base=2)
        first.set_xlabel("batch size")
        first.set_ylabel("squared gradient growth per layer")
        first.set_title("At initialisation")
        first.legend()
        steps = np.arange(len(self.train_loss))
        second.plot(steps, self.train_growth, label="gradient growth per layer")
        twin = second.twinx()
        twin.plot(steps, self.train_cosine, color="C1", label="activation cosine")
        second.set_xlabel("step")
        second.set_ylabel("growth")
        twin.set_ylabel("activation cosine")
        second.set_title("Training")
        for r, remedy in enumerate(self.remedies):
            for b, batch in enumerate(self.remedy_batch_sizes):
                third.plot(self.remedy_loss[r, b], color=f"C{r}",
                           linestyle="-" if b else ":", label=f"{remedy}, batch {int(batch)}")
        third.set_yscale("log")
        third.set_xlabel("step")
        third.set_ylabel("loss")
        third.set_title("Remedies")
        third.legend(fontsize=6)


def _remedy_run(remedy: str, sizes, x, y, batch: int, lr: float, steps: int, rng, seed: int,
                bar) -> np.ndarray:
    net = MLP(sizes, activation="relu", init="he_normal", batchnorm=True, seed=seed,
              telemetry=False)
    scale = batch / REFERENCE_BATCH
    if remedy == "Adam":
        optimizer = optim.Adam(lr=1e-3 * scale)
    elif remedy == "LARS":
        optimizer = optim.LARS(lr=lr, momentum=0.9, trust_coefficient=0.02, mode="clip")
    else:
        optimizer = optim.SGD(lr=lr, momentum=0.9)
    warmup = schedules.LinearWarmup(max(1, steps // 5), start_factor=0.01)
    clip = 1.0 if remedy == "clipping" else None
    losses = np.full(steps, np.nan)
    for step in range(steps):
        if remedy == "warmup":
            optimizer.lr = warmup(step, lr)
        rows = rng.choice(len(y), batch, replace=False)
        try:
            losses[step] = net.train_step(x[rows], y[rows], optimizer, clip_grad_norm=clip)[0]
        except NonFiniteError:
            if bar is not None:
                bar.update(steps - step)
            break
        if bar is not None:
            bar.update(1)
    return losses


def batchnorm_batch_size(data="mnist", *, data_dir=None, depth: int = 10, width: int = 100,
                         batch_sizes: Sequence[int] = (4, 8, 16, 32, 64, 128, 256, 512),
                         repeats: int = 3, train_steps: int = 300, train_batch_size: int = 256,
                         lr: float = 0.1, remedy_steps: int = 200,
                         remedy_batch_sizes: Sequence[int] = (32, 1024), seed: int = 0,
                         progress: bool = True) -> BatchnormBatchSize:
    """ReLU + batch norm networks: gradient growth per layer at initialisation against batch
    size (with theory), its decline over the first training steps as the activations become
    correlated, and the remedies (none, warmup, clipping, LARS, Adam) at a small and a large
    batch with the learning rate scaled linearly with the batch.

    The network is ``D - width x depth - C``, each hidden layer dense -> batch norm -> ReLU, He
    initialisation. Part 1 probes it (:func:`gradwatch.probe`) on ``repeats`` random batches
    of each size. Part 2 trains it with SGD (momentum 0.9, ``lr``) for ``train_steps`` steps,
    reading the per-layer gradient norms and activation cosines from :attr:`MLP.telemetry`.
    Part 3 trains fresh copies for ``remedy_steps`` steps per remedy and batch size, with SGD's
    rate ``lr * batch / 256``: ``warmup`` ramps it up linearly over the first fifth of the
    steps from 1% (Goyal et al. 2017); ``clipping`` clips the global gradient norm at 1;
    ``LARS`` caps each layer's rate at ``0.02 ||w|| / ||g||`` (``mode="clip"``, as LARC);
    ``Adam`` uses ``1e-3 * batch / 256``.

    Parameters
    ----------
    data : {"mnist", "fashion", "digits"} or arrays
        See :func:`gradwatch.experiments.load_data`.
    data_dir : str or os.PathLike, optional
    depth, width : int
        Hidden layers (>= 3) and their width.
    batch_sizes : sequence of int
        Batch sizes of part 1 (each >= 4: below, the mean-field prediction is unbounded).
    repeats : int
        Batches averaged per batch size in part 1.
    train_steps, train_batch_size, lr : int, int, float
        Part 2, and the base learning rate (at batch 256) of part 3.
    remedy_steps : int
    remedy_batch_sizes : pair of int
        The small and the large batch of part 3.
    seed : int
    progress : bool

    Returns
    -------
    BatchnormBatchSize

    References
    ----------
    G. Yang, J. Pennington, V. Rao, J. Sohl-Dickstein, S. S. Schoenholz, "A Mean Field Theory
    of Batch Normalization", ICLR 2019. S. Paik, S. Choi, "Understanding the gradient explosion
    of batch normalization with ReLU", 2023. P. Goyal et al., "Accurate, Large Minibatch SGD",
    2017. Y. You, I. Gitman, B. Ginsburg, "Large Batch Training of Convolutional Networks" (LARS),
    2017.
    """
    depth = positive_int("depth", depth)
    if depth < 3:
        raise ValueError(f"depth must be >= 3 (hidden layers), got {depth}")
    width = positive_int("width", width)
    batch_sizes = np.array(sorted({positive_int("batch size", b) for b in batch_sizes}), np.int64)
    if batch_sizes.size == 0 or batch_sizes.min() < 4:
        raise ValueError(f"batch_sizes must be >= 4, got {batch_sizes.tolist()}")
    repeats = positive_int("repeats", repeats)
    train_steps = positive_int("train_steps", train_steps)
    train_batch_size = positive_int("train_batch_size", train_batch_size)
    if train_batch_size < 2:
        raise ValueError(f"train_batch_size must be >= 2 with batch norm, got {train_batch_size}")
    lr = positive_scalar("lr", lr)
    remedy_steps = positive_int("remedy_steps", remedy_steps)
    remedy_batch_sizes = np.array([positive_int("remedy batch size", b)
                                   for b in remedy_batch_sizes], np.int64)
    if remedy_batch_sizes.shape != (2,) or remedy_batch_sizes.min() < 2:
        raise ValueError("remedy_batch_sizes must be two batch sizes >= 2, got "
                         f"{remedy_batch_sizes.tolist()}")
    seed = check_seed(seed)
    progress = check_flag("progress", progress)
    dataset = load_data(data, data_dir, progress=progress)
    x, y = dataset.x_train, dataset.y_train
    largest = int(max(batch_sizes.max(), train_batch_size, remedy_batch_sizes.max()))
    if largest > len(y):
        raise ValueError(f"a batch of {largest} exceeds the {len(y)} training images")
    classes = int(y.max()) + 1
    sizes = (x.shape[1],) + (width,) * depth + (max(classes, 2),)
    rng = np.random.default_rng(seed)
    total = (len(batch_sizes) * repeats + train_steps
             + len(REMEDIES) * len(remedy_batch_sizes) * remedy_steps)
    bar = progress_bar(progress, total, "batchnorm_batch_size")
    try:
        net = MLP(sizes, activation="relu", init="he_normal", batchnorm=True, seed=seed,
                  telemetry=False)
        measured = np.empty(len(batch_sizes))
        for b, batch in enumerate(batch_sizes):
            growths = []
            for _ in range(repeats):
                rows = rng.choice(len(y), int(batch), replace=False)
                stats = probe(net, x[rows], y[rows])
                growths.append(_hidden_growth(stats.grad_input_norm, stats.grad_output_norm))
                if bar is not None:
                    bar.update(1)
            measured[b] = np.exp(np.mean(np.log(growths)))
        predicted = np.array([theory.batchnorm_gradient_growth(int(b)) for b in batch_sizes])

        net = MLP(sizes, activation="relu", init="he_normal", batchnorm=True, seed=seed,
                  telemetry=True, telemetry_every=1, telemetry_capacity=train_steps)
        optimizer = optim.SGD(lr=lr, momentum=0.9)
        for _ in range(train_steps):
            rows = rng.choice(len(y), train_batch_size, replace=False)
            net.train_step(x[rows], y[rows], optimizer)
            if bar is not None:
                bar.update(1)
        record = net.telemetry
        train_loss = np.asarray(record.loss, np.float64)
        train_growth = _hidden_growth(np.asarray(record.grad_input_norm),
                                      np.asarray(record.grad_output_norm))
        train_cosine = np.asarray(record.activation_cosine)[:, :-1].mean(axis=1)

        remedy_lr = lr * remedy_batch_sizes / REFERENCE_BATCH
        remedy_loss = np.empty((len(REMEDIES), 2, remedy_steps))
        for r, remedy in enumerate(REMEDIES):
            for b, batch in enumerate(remedy_batch_sizes):
                remedy_loss[r, b] = _remedy_run(remedy, sizes, x, y, int(batch),
                                                float(remedy_lr[b]), remedy_steps,
                                                np.random.default_rng([seed, b]), seed, bar)
    finally:
        if bar is not None:
            bar.close()
    return BatchnormBatchSize(
        data=dataset.name, layer_sizes=sizes, batch_sizes=batch_sizes,
        measured_growth=measured, predicted_growth=predicted,
        train_batch_size=train_batch_size, train_loss=train_loss, train_growth=train_growth,
        train_cosine=train_cosine, remedies=REMEDIES, remedy_batch_sizes=remedy_batch_sizes,
        remedy_lr=remedy_lr, remedy_loss=remedy_loss, lr=lr, seed=seed,
    )
