"""Per-layer gradient-flow telemetry recorded by the compiled core, and one-pass probes.

Every :meth:`gradwatch.MLP.train_step` (and so :meth:`~gradwatch.MLP.fit`) records, per dense
layer, the statistics below into a ring buffer that the core allocates in advance; the sums are
taken inside the step's own passes (the activation pass, the gradient GEMMs, the optimiser's
update), in a fixed order, so they are bitwise the same for any number of threads. Read them
as ``net.telemetry``; :func:`probe` computes the same statistics for one pass without changing
the network.

Per-layer metrics (float64; NaN where a metric does not apply):

========================  ====================================================================
``grad_weight_norm``      ``||dL/dW||_2`` (Frobenius), before clipping
``grad_bias_norm``        ``||dL/db||_2``
``weight_norm``           ``||W||`` before the step's update
``update_ratio``          ``||W_after - W_before|| / ||W_before||`` (NaN in a probe and in a step
                          that failed with NonFiniteError: no update)
``grad_output_norm``      ``||dL/d out||``: out is what the layer hands on (after activation,
                          dropout and residual); for the output layer ``dL/dlogits``
``grad_input_norm``       ``||dL/d x||`` of the layer's input (= the previous layer's
                          ``grad_output_norm``). For layer 0 (the network input) only a probe
                          computes it; training does not need that GEMM, so steps record NaN.
``preact_mean``, ``_std`` mean and population standard deviation (divided by N*O) of the
                          activation's input (after batch norm); output layer: the logits
``act_mean``, ``act_std`` the same of the activation's output (before dropout); output layer NaN
``saturated_fraction``    sigmoid: fraction of outputs outside [0.01, 0.99]; tanh: |y| > 0.99;
                          other kinds NaN
``dead_fraction``         relu, leaky_relu: fraction of units whose pre-activation is <= 0 (relu:
                          output 0) for every sample of the batch; other kinds NaN
``activation_cosine``     mean pairwise cosine similarity of the activation rows, over the n
                          rows with nonzero norm: ``(||sum_i u_i||^2 - n) / (n (n - 1))``,
                          ``u_i = a_i / ||a_i||`` (NaN for n < 2); output layer: the logits
``nonfinite_count``       int64: NaN/inf entries of the layer's z, activation output, weight,
                          bias (and batch-norm) gradients and the gradient arriving at its output
========================  ====================================================================

Per step: ``steps`` (the network's training-step counter, counting every ``train_step`` that
computed a step, also one that failed with NonFiniteError, which is recorded too), ``loss``,
``lr`` (the optimiser's rate at that step, as a schedule set it), ``grad_norm`` (global, before
clipping) and ``clipped`` (clipping changed the gradients).

References
----------
Glorot & Bengio, "Understanding the difficulty of training deep feedforward neural networks"
(2010): per-layer gradient norms and saturation. Yang et al., "A Mean Field Theory of Batch
Normalization" (2019), and Paik & Choi (2023): the batch-norm + ReLU gradient explosion at
initialisation and the activation correlation across the batch that ends it.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from gradwatch._core_loader import _core

METRICS: tuple[str, ...] = tuple(_core.telemetry_metrics()) + ("nonfinite_count",)
"""Names of the per-layer metrics, in storage order (``nonfinite_count`` is int64)."""

_FLOAT_METRICS = METRICS[:-1]

# The key metrics of summary(): (name, heading, which value over the recorded steps is worst).
_SUMMARY = (
    ("grad_weight_norm", "|dW|", "min"),
    ("update_ratio", "|dW|/|W|", "far"),
    ("dead_fraction", "dead", "max"),
    ("saturated_fraction", "saturated", "max"),
    ("activation_cosine", "cosine", "max"),
    ("nonfinite_count", "nonfinite", "max"),
)
# update_ratio is judged by its distance (in decades) from this healthy value (Karpathy's rule of
# thumb for SGD: updates about 1e-3 of the weights).
_HEALTHY_UPDATE_RATIO = 1e-3


def _worst(values: np.ndarray, rule: str) -> float:
    """The worst of a layer's values over steps (1-D): non-finite first, then by rule."""
    values = np.asarray(values, dtype=np.float64)
    bad = values[~np.isfinite(values)]
    if bad.size:
        return float(bad[-1])
    if rule == "min":
        return float(values.min())
    if rule == "max":
        return float(values.max())
    with np.errstate(divide="ignore"):
        distance = np.abs(np.log10(values) - math.log10(_HEALTHY_UPDATE_RATIO))
    return float(values[int(np.argmax(distance))])


def _number(value: float) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[k]) for row in [header] + rows) for k in range(len(header))]
    lines = ["  ".join(cell.rjust(w) if k else cell.ljust(w)
                       for k, (cell, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _optional_import(module: str, extra: str, what: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ImportError(
            f"{what} needs {module.split('.')[0]}, which is not installed: "
            f"pip install gradwatch[{extra}]"
        ) from None


class Telemetry:
    """The per-layer statistics that training steps recorded, read from the core.

    Not created directly: ``net.telemetry``. Each per-layer metric (see the module docstring
    and :data:`METRICS`) is an attribute returning a new float64 array of shape
    (steps, layers) in step order, oldest first (``nonfinite_count``: int64). When more steps
    were recorded than the capacity, the oldest were dropped (a ring buffer). Switch recording
    off, record every k-th step or change the capacity with :meth:`gradwatch.MLP.set_telemetry`.
    :meth:`gradwatch.MLP.save` does not store the records.

    Attributes
    ----------
    steps : numpy.ndarray
        int64 (steps,): the training-step counter of each record.
    loss, lr, grad_norm : numpy.ndarray
        float64 (steps,).
    clipped : numpy.ndarray
        bool (steps,).
    metrics : tuple of str
        The per-layer metric names.
    layer_names : tuple of str
        ``"dense0"``, ... (the output layer last).
    enabled, every, capacity
        The recording options.

    Examples
    --------
    >>> net.fit(x, y, optimizer=gradwatch.optim.SGD(lr=0.1), epochs=1, batch_size=64)
    >>> net.telemetry.grad_weight_norm[-1]        # latest step, one value per layer
    >>> print(net.telemetry.summary())
    """

    metrics = METRICS

    def __init__(self, core, layers: int) -> None:
        self._core = core
        self.layer_names = tuple(f"dense{i}" for i in range(layers))

    def _arrays(self):
        return self._core.telemetry()

    def __len__(self) -> int:
        return int(self._core.telemetry_size())

    @property
    def enabled(self) -> bool:
        return bool(self._core.telemetry_options()[0])

    @property
    def every(self) -> int:
        return int(self._core.telemetry_options()[1])

    @property
    def capacity(self) -> int:
        return int(self._core.telemetry_options()[2])

    @property
    def steps(self) -> np.ndarray:
        return self._arrays()[0]

    @property
    def loss(self) -> np.ndarray:
        return np.ascontiguousarray(self._arrays()[1][:, 0])

    @property
    def lr(self) -> np.ndarray:
        return np.ascontiguousarray(self._arrays()[1][:, 1])

    @property
    def grad_norm(self) -> np.ndarray:
        return np.ascontiguousarray(self._arrays()[1][:, 2])

    @property
    def clipped(self) -> np.ndarray:
        return self._arrays()[2]

    def _metric(self, name: str, arrays=None) -> np.ndarray:
        arrays = arrays if arrays is not None else self._arrays()
        if name == "nonfinite_count":
            return arrays[4]
        return np.ascontiguousarray(arrays[3][:, :, _FLOAT_METRICS.index(name)])

    def clear(self) -> None:
        """Drop every record (the step counter keeps counting)."""
        self._core.clear_telemetry()

    def summary(self) -> str:
        """A terminal table: per layer the latest and the worst recorded value of the key metrics.

        Worst means, over the recorded steps: a NaN or infinity if there is one; else for
        ``grad_weight_norm`` the smallest (vanishing gradients); for ``update_ratio`` the one
        furthest from 1e-3 in decades (too slow or too fast learning); for ``dead_fraction``,
        ``saturated_fraction``, ``activation_cosine`` and ``nonfinite_count`` the largest.
        Metrics that do not apply to a layer show ``-``.

        Returns
        -------
        str
        """
        arrays = self._arrays()
        steps = arrays[0]
        if len(steps) == 0:
            return "telemetry: no steps recorded"
        header = ["layer"]
        for _, heading, _ in _SUMMARY:
            header += [heading, "worst"]
        rows = []
        columns = {name: self._metric(name, arrays) for name, _, _ in _SUMMARY}
        for i, layer in enumerate(self.layer_names):
            row = [layer]
            for name, _, rule in _SUMMARY:
                values = columns[name][:, i]
                if name != "nonfinite_count" and np.isnan(values).all():
                    row += ["-", "-"]
                    continue
                latest = values[-1] if name == "nonfinite_count" else float(values[-1])
                worst = int(values.max()) if name == "nonfinite_count" else _worst(values, rule)
                row += [_number(latest), _number(worst)]
            rows.append(row)
        loss = arrays[1][:, 0]
        title = (f"telemetry: {len(steps)} steps recorded (steps {int(steps[0])}..{int(steps[-1])}), "
                 f"latest loss {_number(float(loss[-1]))}, grad_norm "
                 f"{_number(float(arrays[1][-1, 2]))}, clipped in {int(arrays[2].sum())} steps")
        return title + "\n" + _table(header, rows)

    def to_frame(self):
        """The records as a pandas DataFrame in long format: one row per step and layer.

        Columns: ``step``, ``layer`` (name), every per-layer metric, then the step's ``loss``,
        ``lr``, ``grad_norm`` and ``clipped``.

        Raises
        ------
        ImportError
            Without pandas (``pip install gradwatch[pandas]``).
        """
        pandas = _optional_import("pandas", "pandas", "Telemetry.to_frame")
        arrays = self._arrays()
        steps = arrays[0]
        layers = len(self.layer_names)
        data = {
            "step": np.repeat(steps, layers),
            "layer": np.tile(np.array(self.layer_names, dtype=object), len(steps)),
        }
        for name in METRICS:
            data[name] = self._metric(name, arrays).reshape(-1)
        for k, name in enumerate(("loss", "lr", "grad_norm")):
            data[name] = np.repeat(arrays[1][:, k], layers)
        data["clipped"] = np.repeat(arrays[2], layers)
        return pandas.DataFrame(data)

    def plot(self, path) -> None:
        """Write a figure to ``path`` (any format matplotlib saves, by its suffix).

        Top: each layer's weight-gradient norm over the recorded steps on a log scale, one line
        per layer. Bottom: the dead fraction (ReLU family) and saturated fraction (sigmoid, tanh)
        of the layers where they apply.

        Raises
        ------
        ImportError
            Without matplotlib (``pip install gradwatch[plot]``).
        ValueError
            If no steps were recorded.
        """
        figure_module = _optional_import("matplotlib.figure", "plot", "Telemetry.plot")
        arrays = self._arrays()
        steps = arrays[0]
        if len(steps) == 0:
            raise ValueError("no steps recorded: nothing to plot")
        figure = figure_module.Figure(figsize=(8, 7), constrained_layout=True)
        top, bottom = figure.subplots(2, 1, sharex=True)
        norms = self._metric("grad_weight_norm", arrays)
        for i, layer in enumerate(self.layer_names):
            top.plot(steps, norms[:, i], label=layer)
        top.set_yscale("log")
        top.set_ylabel("||dL/dW||")
        top.set_title("gradient norm per layer")
        top.legend(fontsize="small", ncol=max(1, len(self.layer_names) // 8))
        dead = self._metric("dead_fraction", arrays)
        saturated = self._metric("saturated_fraction", arrays)
        drawn = False
        for i, layer in enumerate(self.layer_names):
            if not np.isnan(dead[:, i]).all():
                bottom.plot(steps, dead[:, i], label=f"{layer} dead")
                drawn = True
            if not np.isnan(saturated[:, i]).all():
                bottom.plot(steps, saturated[:, i], linestyle="--", label=f"{layer} saturated")
                drawn = True
        if drawn:
            bottom.legend(fontsize="small", ncol=max(1, len(self.layer_names) // 8))
        else:
            bottom.text(0.5, 0.5, "no relu, leaky_relu, sigmoid or tanh layers", ha="center",
                        va="center", transform=bottom.transAxes)
        bottom.set_ylim(-0.02, 1.02)
        bottom.set_xlabel("step")
        bottom.set_ylabel("fraction")
        bottom.set_title("dead and saturated units")
        figure.savefig(path)

    def __repr__(self) -> str:
        state = f"every={self.every}" if self.enabled else "off"
        return f"Telemetry({len(self)} steps, {len(self.layer_names)} layers, {state}, capacity={self.capacity})"


def _metric_property(name: str) -> property:
    kind = "int64" if name == "nonfinite_count" else "float64"
    return property(lambda self: self._metric(name),
                    doc=f"{name}: {kind} array (steps, layers), oldest step first.")


for _name in METRICS:
    setattr(Telemetry, _name, _metric_property(_name))


class Probe:
    """The statistics of one training-mode forward/backward pass (see :func:`probe`).

    Attributes
    ----------
    <metric> : numpy.ndarray
        One attribute per name of :data:`METRICS`, shape (layers,) (``update_ratio`` is NaN:
        there is no update).
    loss : float
    grad_norm : float
        Global L2 norm of every parameter gradient.
    layer_names : tuple of str
    activations : tuple of str
        The activation of each dense layer; the output layer's is ``"identity"`` (logits).
    """

    metrics = METRICS

    def __init__(self, loss: float, grad_norm: float, metrics: np.ndarray,
                 nonfinite: np.ndarray, layer_names: tuple, activations: tuple) -> None:
        self.loss = float(loss)
        self.grad_norm = float(grad_norm)
        self.layer_names = tuple(layer_names)
        self.activations = tuple(activations)
        for k, name in enumerate(_FLOAT_METRICS):
            setattr(self, name, np.ascontiguousarray(metrics[:, k]))
        self.nonfinite_count = nonfinite

    def summary(self) -> str:
        """A terminal table: one row per layer, one column per metric (``-``: not applicable)."""
        short = {"grad_weight_norm": "|dW|", "grad_bias_norm": "|db|", "weight_norm": "|W|",
                 "update_ratio": "|dW|/|W|", "grad_output_norm": "|d out|",
                 "grad_input_norm": "|d in|", "preact_mean": "pre mean", "preact_std": "pre std",
                 "act_mean": "act mean", "act_std": "act std", "saturated_fraction": "saturated",
                 "dead_fraction": "dead", "activation_cosine": "cosine",
                 "nonfinite_count": "nonfinite"}
        names = [name for name in METRICS if name != "update_ratio"]
        header = ["layer", "activation"] + [short[name] for name in names]
        rows = []
        for i, layer in enumerate(self.layer_names):
            row = [layer, self.activations[i]]
            for name in names:
                value = getattr(self, name)[i]
                if name == "nonfinite_count":
                    row.append(str(int(value)))
                elif not _applies(name, self.activations[i], i == len(self.layer_names) - 1):
                    row.append("-")
                else:
                    row.append(_number(float(value)))
            rows.append(row)
        title = f"probe: loss {_number(self.loss)}, grad_norm {_number(self.grad_norm)}"
        return title + "\n" + _table(header, rows)

    def to_dict(self) -> dict:
        """JSON-ready: ``{"loss", "grad_norm", "layers": [{"name", "activation", <metric>...}]}``
        with NaN and infinities as None (``nonfinite_count`` says whether any occurred)."""
        def plain(value):
            value = float(value)
            return value if math.isfinite(value) else None

        layers = []
        for i, layer in enumerate(self.layer_names):
            entry = {"name": layer, "activation": self.activations[i]}
            for name in _FLOAT_METRICS:
                entry[name] = plain(getattr(self, name)[i])
            entry["nonfinite_count"] = int(self.nonfinite_count[i])
            layers.append(entry)
        return {"loss": plain(self.loss), "grad_norm": plain(self.grad_norm), "layers": layers}

    def __repr__(self) -> str:
        return f"Probe(loss={_number(self.loss)}, grad_norm={_number(self.grad_norm)}, layers={len(self.layer_names)})"


def _applies(name: str, activation: str, output_layer: bool) -> bool:
    """Whether a metric is defined for a layer (else it is NaN by definition)."""
    if name in ("act_mean", "act_std"):
        return not output_layer
    if name == "saturated_fraction":
        return activation in ("sigmoid", "tanh")
    if name == "dead_fraction":
        return activation in ("relu", "leaky_relu")
    return True


def probe(net, x, y) -> Probe:
    """The telemetry statistics of one forward/backward pass, changing nothing in ``net``.

    The pass is in training mode with batch statistics for batch norm (as a training step) and
    without dropout. Parameters, batch-norm buffers, optimiser, telemetry records, step counter
    and dropout step are left as they were; use it to inspect a network at initialisation.

    Parameters
    ----------
    net : gradwatch.MLP
    x : numpy.ndarray
        (N, D) of the network's dtype.
    y : array_like
        Targets as for :meth:`gradwatch.MLP.train_step`.

    Returns
    -------
    Probe
        Every metric of :data:`METRICS` per layer (``update_ratio`` NaN; ``grad_input_norm`` of
        layer 0 is the gradient with respect to ``x``), ``loss`` and ``grad_norm``.

    Raises
    ------
    TypeError, ValueError
        As :meth:`gradwatch.MLP.train_step` for ``x`` and ``y``; TypeError if ``net`` is not a
        gradwatch.MLP.
    """
    from gradwatch.network import MLP

    if not isinstance(net, MLP):
        raise TypeError(f"net must be a gradwatch.MLP, got {type(net).__name__}")
    x = net._x(x)
    y = net._y(y, x.shape[0])
    loss, grad_norm, metrics, nonfinite = net._core.probe(x, y)
    layers = len(net.layer_sizes) - 1
    return Probe(loss, grad_norm, metrics, nonfinite, tuple(f"dense{i}" for i in range(layers)),
                 tuple(net.activation) + ("identity",))


__all__ = ["METRICS", "Probe", "Telemetry", "probe"]
