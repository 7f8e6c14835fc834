"""The activation histograms of a deep network at initialisation (the textbook's chapter 6).

Five layers of 100 units without biases take 1000 standard-normal inputs; for sigmoid and ReLU
and three weight scales each, the outputs of every layer are kept and histogrammed. A forward
pass only, with gradwatch.init weights and gradwatch.ops kernels.
"""

from __future__ import annotations

import dataclasses
import numbers

import numpy as np

from gradwatch import init, ops
from gradwatch._validation import positive_int
from gradwatch.experiments.base import ExperimentResult, check_seed, table

CONFIGS: tuple[tuple[str, object, str], ...] = (
    ("sigmoid", 1.0, "std 1"),
    ("sigmoid", 0.01, "std 0.01"),
    ("sigmoid", "lecun_normal", "Xavier"),
    ("relu", 0.01, "std 0.01"),
    ("relu", "lecun_normal", "Xavier"),
    ("relu", "he_normal", "He"),
)
"""(activation, init scheme, label) of each network. The textbook's "Xavier" is N(0, 1/fan_in),
gradwatch's ``"lecun_normal"`` (Glorot and Bengio's own is ``"xavier_normal"``)."""

SATURATION_BOUNDS = (0.01, 0.99)
"""A sigmoid output outside this interval is saturated (its derivative is below 0.0099)."""


@dataclasses.dataclass
class ActivationHistograms(ExperimentResult):
    """Per network and layer: the activations, their histogram and statistics.

    Attributes
    ----------
    labels : tuple of str
        "sigmoid, std 1", ... one per network (C of them, in :data:`CONFIGS` order).
    activation : tuple of str
    init : tuple
        The gradwatch.init scheme of each network.
    activations : ndarray, float32, shape (C, layers, samples, width)
        Every layer's output (not in :meth:`to_dict`: large).
    bin_edges : ndarray, shape (bins + 1,)
    counts : ndarray, int64, shape (C, layers, bins)
        Histogram of each layer's outputs over ``bin_edges`` (values outside are not counted,
        nor are ReLU's exact zeros: see ``zero_fraction``).
    mean, std : ndarray, shape (C, layers)
        Of all samples x units of the layer.
    saturated_fraction : ndarray, shape (C, layers)
        Sigmoid: the fraction of outputs outside [0.01, 0.99]; NaN for ReLU.
    zero_fraction : ndarray, shape (C, layers)
        ReLU: the fraction of outputs that are exactly 0; NaN for sigmoid.
    samples, width, seed : int
    """

    name = "activation_histograms"
    not_in_dict = ("activations",)

    labels: tuple
    activation: tuple
    init: tuple
    activations: np.ndarray
    bin_edges: np.ndarray
    counts: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    saturated_fraction: np.ndarray
    zero_fraction: np.ndarray
    samples: int
    width: int
    seed: int

    def summary(self) -> str:
        layers = self.mean.shape[1]
        lines = [
            f"Activation histograms: {layers} layers of {self.width} units without biases, "
            f"{self.samples} N(0, 1) inputs of {self.width} features (forward pass only).",
            "The textbook's \"Xavier\" is N(0, 1/fan_in): gradwatch's 'lecun_normal' (Glorot & "
            "Bengio's own is 'xavier_normal').",
            "",
            "Standard deviation of each layer's outputs:",
        ]
        header = ["network"] + [f"layer {i + 1}" for i in range(layers)]
        rows = [[label] + [f"{value:.3g}" for value in self.std[c]]
                for c, label in enumerate(self.labels)]
        lines += table(header, rows, 22)
        lines += ["", "Sigmoid: fraction saturated (output outside [0.01, 0.99]); ReLU: fraction "
                      "exactly 0:"]
        rows = []
        for c, label in enumerate(self.labels):
            values = (self.saturated_fraction[c] if self.activation[c] == "sigmoid"
                      else self.zero_fraction[c])
            rows.append([label] + [f"{value:.1%}" for value in values])
        lines += table(header, rows, 22)
        lines += ["", *self._findings()]
        return "\n".join(lines)

    def _findings(self) -> list[str]:
        found = []
        layers = self.std.shape[1]
        for c, label in enumerate(self.labels):
            last_mean, last_std = self.mean[c, -1], self.std[c, -1]
            if label == "sigmoid, std 1":
                found.append(
                    f"- {label}: {self.saturated_fraction[c, -1]:.0%} of the last layer's outputs "
                    "sit at 0 or 1, where sigmoid' ~ 0: gradients vanish.")
            elif label == "sigmoid, std 0.01":
                found.append(
                    f"- {label}: outputs collapse to {last_mean:.3f} +- {last_std:.1e}: every unit "
                    "says the same, so the layer is as expressive as one unit.")
            elif label == "relu, std 0.01" and layers > 1:
                per_layer = (last_std / self.std[c, 0]) ** (1 / (layers - 1))
                found.append(
                    f"- {label}: the spread shrinks by x{per_layer:.2g} per layer, to "
                    f"{last_std:.1e} at layer {layers}: the signal vanishes.")
            elif label == "relu, He":
                found.append(
                    f"- {label}: the spread stays put ({self.std[c, 0]:.2f} at layer 1, "
                    f"{last_std:.2f} at layer {layers}): He keeps ReLU's signal alive.")
        return found

    def _draw(self, figure) -> None:
        configs, layers, _ = self.counts.shape
        figure.set_size_inches(2.4 * layers, 1.9 * configs)
        axes = figure.subplots(configs, layers, sharex=True, squeeze=False)
        figure.subplots_adjust(left=0.08, right=0.98, bottom=0.04, top=0.93, hspace=0.25,
                               wspace=0.3)
        for c in range(configs):
            for layer in range(layers):
                axis = axes[c, layer]
                axis.stairs(self.counts[c, layer], self.bin_edges, fill=True, color=f"C{c}")
                axis.tick_params(labelsize=7)
                if c == 0:
                    axis.set_title(f"layer {layer + 1}", fontsize=9)
                if layer == 0:
                    axis.set_ylabel(self.labels[c], fontsize=8)
        figure.suptitle("Activations per layer at initialisation "
                        f"({self.samples} N(0,1) inputs, {self.width} units per layer; "
                        "ReLU's exact zeros left out)")


def activation_histograms(*, layers: int = 5, width: int = 100, samples: int = 1000,
                          bins: int = 30, hist_range: tuple = (0.0, 1.0), seed: int = 0,
                          progress: bool = False) -> ActivationHistograms:
    """The distribution of each layer's activations at initialisation, for sigmoid and ReLU
    with three weight scales each (the textbook's chapter 6 experiment).

    A deep network of ``layers`` dense layers of ``width`` units, without biases, takes
    ``samples`` inputs drawn from N(0, 1); each layer computes ``a = act(a_prev @ W)``.

    ========= ======================================================= =========================
    network   weights                                                 what happens
    ========= ======================================================= =========================
    sigmoid   N(0, 1)                                                 saturates at 0 and 1
    sigmoid   N(0, 0.01^2)                                            collapses near 0.5
    sigmoid   "Xavier" N(0, 1/fan_in) (``"lecun_normal"``)             spread kept
    relu      N(0, 0.01^2)                                            shrinks toward 0
    relu      "Xavier" N(0, 1/fan_in)                                 shrinks slowly
    relu      He N(0, 2/fan_in) (``"he_normal"``)                      spread kept
    ========= ======================================================= =========================

    The textbook calls N(0, 1/fan_in) "Xavier"; in gradwatch that is ``"lecun_normal"``, while
    ``"xavier_normal"`` is Glorot and Bengio's N(0, 2/(fan_in + fan_out)). Layer ``i`` of every
    network draws its weights with the same seed, so the networks differ only in scale.

    Parameters
    ----------
    layers, width, samples : int
        Depth (5), units per layer (100) and number of inputs (1000), each >= 1.
    bins : int
        Histogram bins (30), >= 1.
    hist_range : (float, float)
        The histogram's interval, (0, 1) as in the textbook: ReLU outputs above it, and its
        exact zeros, are not counted (``activations`` has them all).
    seed : int
        Seeds the inputs (NumPy's ``default_rng``) and the weights.
    progress : bool
        Accepted for a uniform interface; this experiment takes well under a second.

    Returns
    -------
    ActivationHistograms

    References
    ----------
    X. Glorot and Y. Bengio, "Understanding the difficulty of training deep feedforward neural
    networks", AISTATS 2010. K. He, X. Zhang, S. Ren and J. Sun, "Delving Deep into
    Rectifiers", ICCV 2015. Y. LeCun, L. Bottou, G. Orr and K.-R. Mueller, "Efficient
    BackProp", 1998.
    """
    layers = positive_int("layers", layers)
    width = positive_int("width", width)
    samples = positive_int("samples", samples)
    bins = positive_int("bins", bins)
    seed = check_seed(seed)
    if (not isinstance(hist_range, (tuple, list)) or len(hist_range) != 2
            or not all(isinstance(v, numbers.Real) for v in hist_range)
            or not hist_range[0] < hist_range[1]):
        raise ValueError(f"hist_range must be a pair (low, high) with low < high, got {hist_range!r}")

    inputs = np.random.default_rng(seed).standard_normal((samples, width), dtype=np.float32)
    layer_seeds = np.random.SeedSequence(seed).generate_state(layers, np.uint64)
    bin_edges = np.linspace(float(hist_range[0]), float(hist_range[1]), bins + 1)
    shape = (len(CONFIGS), layers)
    activations = np.empty(shape + (samples, width), np.float32)
    counts = np.empty(shape + (bins,), np.int64)
    saturated = np.full(shape, np.nan)
    zero = np.full(shape, np.nan)
    for c, (activation, scheme, _) in enumerate(CONFIGS):
        a = inputs
        for layer in range(layers):
            w = init.weights(width, width, scheme, seed=int(layer_seeds[layer]))
            a = ops.activation_forward(ops.dense_forward(a, w), activation)
            activations[c, layer] = a
            if activation == "sigmoid":
                counts[c, layer] = np.histogram(a, bin_edges)[0]
                low, high = SATURATION_BOUNDS
                saturated[c, layer] = np.mean((a < low) | (a > high))
            else:
                # Half of ReLU's outputs are exactly 0: left out, they would flatten the
                # picture of the other half (zero_fraction counts them).
                counts[c, layer] = np.histogram(a[a != 0], bin_edges)[0]
                zero[c, layer] = np.mean(a == 0)
    flat = activations.reshape(shape + (-1,)).astype(np.float64)
    return ActivationHistograms(
        labels=tuple(f"{activation}, {label}" for activation, _, label in CONFIGS),
        activation=tuple(activation for activation, _, _ in CONFIGS),
        init=tuple(scheme for _, scheme, _ in CONFIGS),
        activations=activations, bin_edges=bin_edges, counts=counts,
        mean=flat.mean(axis=-1), std=flat.std(axis=-1),
        saturated_fraction=saturated, zero_fraction=zero,
        samples=samples, width=width, seed=seed,
    )
