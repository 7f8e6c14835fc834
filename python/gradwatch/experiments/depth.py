"""Gradient norm per layer at initialisation against depth, with mean-field theory beside it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from gradwatch import theory
from gradwatch._validation import choice, positive_int
from gradwatch.activations import KINDS
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

ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu")
INITS: tuple[tuple[object, str], ...] = (
    (0.01, "std 0.01"),
    ("xavier_normal", "Xavier"),
    ("he_normal", "He"),
)
"""(gradwatch.init scheme, label) of the sweep: the textbook's std 0.01, Glorot & Bengio's
Xavier (variance 2 / (fan_in + fan_out)) and He (variance 2 / fan_in)."""


@dataclasses.dataclass
class DepthSweep(ExperimentResult):
    """Per-layer gradient norms of freshly initialised networks of several depths.

    Attributes
    ----------
    data : str
        "gaussian" (standard normal inputs) or a dataset name.
    activations : tuple of str
    init_labels : tuple of str
    inits : tuple
        The gradwatch.init scheme of each label.
    depths : ndarray of int, shape (depths,)
        Hidden layers of each network.
    width : int
        Units per hidden layer.
    grad_weight_norm : ndarray, shape (activations, inits, depths, max_depth + 1)
        ||dL/dW|| of each dense layer (the output layer last), NaN beyond a network's depth.
    measured_ratio : ndarray, shape (activations, inits, depths, max_depth + 1)
        ||dL/dx_i|| / ||dL/dlogits||: the gradient each dense layer sends to its input,
        relative to the gradient at the logits (measured; layer 0's is the network input's).
    predicted_ratio : ndarray, same shape
        The same ratio predicted by mean-field theory from the init scheme
        (``sqrt(gradient_growth)`` of :func:`gradwatch.theory.for_network`).
    samples, seed : int
    """

    name = "depth_sweep"
    not_in_dict = ("grad_weight_norm",)

    data: str
    activations: tuple
    init_labels: tuple
    inits: tuple
    depths: np.ndarray
    width: int
    grad_weight_norm: np.ndarray
    measured_ratio: np.ndarray
    predicted_ratio: np.ndarray
    samples: int
    seed: int

    def input_ratio(self, which: str = "measured") -> np.ndarray:
        """(activations, inits, depths): the ratio at the first layer (the network input)."""
        ratios = self.measured_ratio if which == "measured" else self.predicted_ratio
        return ratios[..., 0]

    def summary(self) -> str:
        lines = [
            f"Depth sweep at initialisation ({self.data} inputs, {self.samples} samples, "
            f"hidden width {self.width}): the gradient reaching the network's input over the "
            "gradient at the logits, measured (mean-field theory in brackets)",
        ]
        header = ["activation, init"] + [f"depth {int(d)}" for d in self.depths]
        rows = []
        measured, predicted = self.input_ratio("measured"), self.input_ratio("predicted")
        for a, activation in enumerate(self.activations):
            for i, label in enumerate(self.init_labels):
                rows.append([f"{activation}, {label}"] + [
                    f"{measured[a, i, d]:.2e} ({predicted[a, i, d]:.2e})"
                    for d in range(len(self.depths))
                ])
        lines += table(header, rows, first_width=20)
        lines.append("")
        lines.append(
            "Per layer the squared gradient norm is multiplied by chi_1 = sigma_w^2 "
            "E[phi'(h)^2] (Schoenholz et al. 2017): below 1 it vanishes exponentially with "
            "depth, above 1 it explodes; ReLU with He (sigma_w^2 = 2) is critical, chi_1 = 1."
        )
        return "\n".join(lines)

    def _draw(self, figure) -> None:
        axes = figure.subplots(1, len(self.activations), sharey=True, squeeze=False)[0]
        deepest = int(self.depths.argmax())
        for a, (axis, activation) in enumerate(zip(axes, self.activations)):
            for i, label in enumerate(self.init_labels):
                measured = self.measured_ratio[a, i, deepest]
                layers = np.flatnonzero(np.isfinite(measured))
                line, = axis.semilogy(layers, measured[layers], marker="o", markersize=3,
                                      label=f"{label} measured")
                axis.semilogy(layers, self.predicted_ratio[a, i, deepest][layers], "--",
                              color=line.get_color(), label=f"{label} theory")
            axis.set_title(f"{activation}, {int(self.depths[deepest])} hidden layers")
            axis.set_xlabel("dense layer (0 = input side)")
            axis.grid(True, which="both", alpha=0.3)
        axes[0].set_ylabel("||dL/dx_i|| / ||dL/dlogits||")
        axes[0].legend(fontsize=7)


def depth_sweep(data="gaussian", *, data_dir=None, depths: Sequence[int] = (2, 5, 10, 20, 40),
                width: int = 100, samples: int = 256,
                activations: Sequence[str] = ACTIVATIONS, seed: int = 0,
                progress: bool = True) -> DepthSweep:
    """Measure the per-layer gradient norm of freshly initialised networks of growing depth,
    for sigmoid, tanh and ReLU with std 0.01, Xavier and He initialisation, and set the
    mean-field prediction beside each.

    Every network is ``D - width x depth - 10`` with zero biases; one forward/backward pass on
    ``samples`` inputs (:func:`gradwatch.probe`, nothing trained) gives each layer's gradient;
    :func:`gradwatch.theory.for_network` gives the prediction from the init scheme and the
    inputs' second moment.

    Parameters
    ----------
    data : {"gaussian", "mnist", "fashion", "digits"}
        Standard normal inputs of ``width`` features with random labels, or the first
        ``samples`` images of a dataset (see :func:`gradwatch.experiments.load_data`).
    data_dir : str or os.PathLike, optional
        Where the MNIST files are.
    depths : sequence of int
        Numbers of hidden layers.
    width : int
        Units per hidden layer.
    samples : int
        Batch size of the probe.
    activations : sequence of str
        Any of "sigmoid", "tanh", "relu" (and the other gradwatch kinds).
    seed : int
        Seeds the weights and the Gaussian inputs.
    progress : bool
        A progress bar (tqdm, when installed).

    Returns
    -------
    DepthSweep

    References
    ----------
    B. Poole et al., "Exponential expressivity in deep neural networks through transient
    chaos", NeurIPS 2016. S. S. Schoenholz et al., "Deep Information Propagation", ICLR 2017.
    """
    depths = np.array(sorted({positive_int("depth", depth) for depth in depths}), np.int64)
    if depths.size == 0:
        raise ValueError("depths must name at least one depth")
    width = positive_int("width", width)
    samples = positive_int("samples", samples)
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    activations = tuple(choice("activation", kind, KINDS) for kind in activations)
    if not activations:
        raise ValueError("activations must name at least one activation")
    seed = check_seed(seed)
    progress = check_flag("progress", progress)
    rng = np.random.default_rng(seed)
    if isinstance(data, str) and data == "gaussian":
        if data_dir is not None:
            raise ValueError("data_dir applies to data='mnist' or 'fashion', not 'gaussian'")
        x = rng.standard_normal((samples, width))
        y = rng.integers(0, 10, samples)
        name = "gaussian"
    else:
        dataset = load_data(data, data_dir, progress=progress)
        if len(dataset.y_train) < samples:
            raise ValueError(
                f"samples ({samples}) exceeds the {len(dataset.y_train)} training images"
            )
        rows = rng.choice(len(dataset.y_train), samples, replace=False)
        x, y, name = dataset.x_train[rows].astype(np.float64), dataset.y_train[rows], dataset.name

    shape = (len(activations), len(INITS), len(depths), int(depths.max()) + 1)
    grad_weight = np.full(shape, np.nan)
    measured = np.full(shape, np.nan)
    predicted = np.full(shape, np.nan)
    bar = progress_bar(progress, shape[0] * shape[1] * shape[2], "depth_sweep")
    try:
        for a, activation in enumerate(activations):
            for i, (scheme, _) in enumerate(INITS):
                for d, depth in enumerate(depths):
                    sizes = [x.shape[1]] + [width] * int(depth) + [10]
                    # float64: at depth 40 the gradient ratios reach 1e-60, below float32.
                    net = MLP(sizes, activation=activation, init=scheme, seed=seed + d,
                              dtype="float64", telemetry=False)
                    stats = probe(net, x, y)
                    layers = len(sizes) - 1
                    grad_weight[a, i, d, :layers] = stats.grad_weight_norm
                    measured[a, i, d, :layers] = stats.grad_input_norm / stats.grad_output_norm[-1]
                    growth = theory.for_network(net, x=x).gradient_growth
                    predicted[a, i, d, :layers] = np.sqrt(growth)
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return DepthSweep(
        data=name, activations=activations, init_labels=tuple(label for _, label in INITS),
        inits=tuple(scheme for scheme, _ in INITS), depths=depths, width=width,
        grad_weight_norm=grad_weight, measured_ratio=measured, predicted_ratio=predicted,
        samples=samples, seed=seed,
    )

