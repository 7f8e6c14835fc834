"""Why a network is not learning, in plain words: :func:`diagnose` and its :class:`Diagnosis`.

The diagnosis reads the per-layer statistics of one forward/backward pass (:func:`gradwatch.probe`)
and, when asked, of a few training steps on a copy of the network. Each layer gets one status;
the whole network gets a verdict and a ranked list of remedies, each with its reason.

Thresholds (module constants, each with the reason it has that value):

``SATURATED_FRACTION = 0.25``
    A sigmoid unit outside [0.01, 0.99] passes less than 4% of the largest possible derivative
    (sigmoid' = y (1 - y) < 0.0099 against 0.25 at 0); tanh with |y| > 0.99 less than 2%
    (1 - y^2 < 0.0199). When a quarter of a layer's outputs are there, the layer's gradient is
    dominated by units that barely pass any: the saturation of Glorot & Bengio (2010). A
    healthy Xavier/LeCun sigmoid layer has almost none there.
``DEAD_FRACTION = 0.5``
    A ReLU unit whose output is zero for every sample of the batch gets no gradient from any of
    them, so plain SGD cannot revive it; when half of a layer's units are like that, half of its
    width is lost. Smaller fractions are reported as a finding, not a status.
``VANISHING_RATIO = 0.1`` and ``EXPLODING_RATIO = 10``
    The norm of the gradient arriving at a layer's output, relative to the gradient arriving at
    the last hidden layer's output (what the output layer sends into the hidden stack; the
    output layer's own scale thus does not count). Below a tenth, that layer learns at least
    ten times more slowly than the last hidden layer at one learning rate; above ten times, a
    learning rate that suits the last hidden layer is too large for it. ReLU + batch norm at initialisation grows the squared gradient norm by
    about pi / (pi - 1) ~ 1.47 per layer at large batch sizes (Yang et al. 2019), so such a
    network crosses this line at about a dozen layers: shallower ones are healthy.
``UPDATE_RATIO_HIGH = 0.1``, ``UPDATE_RATIO_LOW = 1e-5``
    Only with training steps: the norm of a layer's weight update over the norm of its
    weights, per step. Around 1e-3 is the usual healthy value (Karpathy's rule of thumb);
    more than a tenth per step rewrites the layer every few steps (learning rate too large),
    less than 1e-5 means the layer is not moving.

References
----------
X. Glorot, Y. Bengio, "Understanding the difficulty of training deep feedforward neural
networks", AISTATS 2010. K. He et al., "Delving Deep into Rectifiers", ICCV 2015.
S. S. Schoenholz et al., "Deep Information Propagation", ICLR 2017. G. Yang et al., "A Mean
Field Theory of Batch Normalization", ICLR 2019. S. Paik, S. Choi, "Understanding the gradient
explosion of batch normalization with ReLU", 2023.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

SATURATED_FRACTION = 0.25
DEAD_FRACTION = 0.5
DEAD_FRACTION_NOTED = 0.1
VANISHING_RATIO = 0.1
EXPLODING_RATIO = 10.0
UPDATE_RATIO_HIGH = 0.1
UPDATE_RATIO_LOW = 1e-5

STATUSES: tuple[str, ...] = (
    "non-finite", "dead units", "saturated", "exploding", "vanishing", "healthy",
)
"""Layer statuses, most severe first; a layer with several problems shows the first."""

_RELU_FAMILY = ("relu", "leaky_relu")
_SATURATING = ("sigmoid", "tanh")
_HE_SCHEMES = ("he", "he_normal", "he_uniform", "kaiming_normal", "kaiming_uniform")
_GLOROT_LECUN = ("xavier_normal", "xavier_uniform", "glorot_normal", "glorot_uniform",
                 "lecun_normal", "lecun_uniform")


@dataclass(frozen=True)
class LayerDiagnosis:
    """The diagnosis of one dense layer.

    Attributes
    ----------
    index : int
        The layer, 0 for the first dense layer; the output layer is last.
    name : str
        ``dense{index}``, as in :meth:`gradwatch.MLP.state_dict`.
    activation : str
        Its activation, or ``"output"`` for the output layer.
    status : str
        One of :data:`STATUSES`.
    findings : tuple of str
        Every problem seen, in plain words, with its numbers; empty when healthy.
    gradient_ratio : float
        Norm of the gradient arriving at this layer's output over that arriving at the last
        hidden layer's output (at the logits for a network without hidden layers).
    measured_growth : float
        (||dL/d input|| / ||dL/d output||)^2 across this layer: the per-layer growth of the
        squared gradient norm that mean-field theory calls chi_1.
    predicted_growth : float
        The same growth predicted by :mod:`gradwatch.theory` for this layer's activation and
        initial weight scale (NaN when the theory does not apply, e.g. with batch norm).
    numbers : dict
        The probe's statistics of this layer (metric name -> value).
    """

    index: int
    name: str
    activation: str
    status: str
    findings: tuple
    gradient_ratio: float
    measured_growth: float
    predicted_growth: float
    numbers: dict = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "activation": self.activation,
            "status": self.status,
            "findings": list(self.findings),
            "gradient_ratio": _json_number(self.gradient_ratio),
            "measured_growth": _json_number(self.measured_growth),
            "predicted_growth": _json_number(self.predicted_growth),
            "numbers": {key: _json_number(value) for key, value in self.numbers.items()},
        }


@dataclass(frozen=True)
class Remedy:
    """One suggested change, with the reason it applies to this network."""

    name: str
    reason: str

    def to_dict(self) -> dict:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class Diagnosis:
    """What :func:`diagnose` found: per-layer statuses, a verdict and ranked remedies.

    Attributes
    ----------
    layers : tuple of LayerDiagnosis
    verdict : str
        ``"healthy"`` or the most severe layer status.
    summary : str
        One sentence saying what is wrong (or that nothing is).
    remedies : tuple of Remedy
        Most relevant first; empty for a healthy network.
    training : dict or None
        With ``steps > 0``: what the training steps on a copy showed (loss at the first and
        last step, steps taken, whether a non-finite value stopped them, findings).
    """

    layers: tuple
    verdict: str
    summary: str
    remedies: tuple
    training: Optional[dict] = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (NaN and infinities become None)."""
        return {
            "verdict": self.verdict,
            "summary": self.summary,
            "layers": [layer.to_dict() for layer in self.layers],
            "remedies": [remedy.to_dict() for remedy in self.remedies],
            "training": None if self.training is None else {
                key: _json_value(value) for key, value in self.training.items()
            },
        }

    def __str__(self) -> str:
        lines = [f"verdict: {self.verdict}: {self.summary}", ""]
        header = (f"{'layer':<8} {'activation':<11} {'status':<11} {'grad/out':>9} "
                  f"{'growth':>9} {'theory':>9}")
        lines += [header, "-" * len(header)]
        for layer in self.layers:
            lines.append(
                f"{layer.name:<8} {layer.activation:<11} {layer.status:<11} "
                f"{_short(layer.gradient_ratio):>9} {_short(layer.measured_growth):>9} "
                f"{_short(layer.predicted_growth):>9}"
            )
        lines.append("grad/out: gradient norm at the layer's output over that at the last hidden "
                     "layer's output; growth: squared gradient-norm growth across the layer "
                     "(theory: mean field)")
        findings = [(layer.name, text) for layer in self.layers for text in layer.findings]
        if findings:
            lines += ["", "findings:"]
            lines += [f"  {name}: {text}" for name, text in findings]
        if self.training is not None:
            lines += ["", "training on a copy:"]
            lines += [f"  {text}" for text in self.training.get("findings", [])]
        if self.remedies:
            lines += ["", "remedies, most relevant first:"]
            lines += [f"  {rank}. {remedy.name}: {remedy.reason}"
                      for rank, remedy in enumerate(self.remedies, 1)]
        return "\n".join(lines)


def _short(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "-" if value is None or math.isnan(value) else str(value)
    return f"{value:.3g}"


def _json_number(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _json_value(value):
    if isinstance(value, (float, np.floating)):
        return _json_number(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


# --- the diagnosis ------------------------------------------------------------------------------


def diagnose(net, x, y, *, steps: int = 0, optimizer=None) -> Diagnosis:
    """Probe ``net`` on one batch and say, per layer and overall, whether its gradients flow.

    Parameters
    ----------
    net : gradwatch.MLP
        The network; it is not changed (training steps run on a copy).
    x : array_like, shape (N, D)
        A batch of inputs, in the network's dtype; N >= 2 with batch norm.
    y : array_like
        Its targets, as for :meth:`gradwatch.MLP.train_step`.
    steps : int, default 0
        Training steps to take on a copy of the network with the batch ``(x, y)`` after the
        probe, to see how the gradients change once training starts (loss, gradient norm,
        update-to-weight ratios, units that die).
    optimizer : gradwatch.optim.Optimizer, optional
        The optimiser for those steps; a copy of it is used (its state included), so the one
        passed is not changed. Default: ``SGD(lr=0.01)``.

    Returns
    -------
    Diagnosis
        ``str(diagnosis)`` is a terminal report; ``diagnosis.to_dict()`` is JSON-ready.

    Raises
    ------
    TypeError, ValueError
        For a ``net`` that is not a :class:`gradwatch.MLP`, a ``steps`` that is not an int >= 0,
        an ``optimizer`` that is not a gradwatch optimiser, or an invalid batch (as
        :meth:`gradwatch.MLP.loss_and_gradients`).

    Examples
    --------
    >>> import numpy as np, gradwatch
    >>> net = gradwatch.MLP([64, 100, 100, 100, 100, 10], activation="sigmoid", init=0.01, seed=0)
    >>> x, y = np.random.default_rng(0).random((64, 64), np.float32), np.arange(64) % 10
    >>> gradwatch.diagnose(net, x, y).verdict
    'vanishing'
    """
    from gradwatch.network import MLP
    from gradwatch.optim import SGD, Optimizer
    from gradwatch.telemetry import probe

    if not isinstance(net, MLP):
        raise TypeError(f"net must be a gradwatch.MLP, got {type(net).__name__}")
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a gradwatch.optim optimizer, got {type(optimizer).__name__}"
        )

    measured = probe(net, x, y)
    input_finite = bool(np.isfinite(np.asarray(x, np.float64)).all())
    predicted = _predicted_growth(net, x, input_finite)
    layers = _diagnose_layers(net, measured, predicted)
    training = None
    if steps > 0:
        copy_optimizer = SGD(lr=0.01) if optimizer is None else _copy_optimizer(optimizer)
        training = _train_copy(net, x, y, int(steps), copy_optimizer,
                               np.asarray(measured.dead_fraction, np.float64))
    verdict = next(
        (status for status in STATUSES if any(layer.status == status for layer in layers)),
        "healthy",
    )
    if training is not None and training["nonfinite"] and verdict == "healthy":
        verdict = "non-finite"
    return Diagnosis(
        layers=tuple(layers),
        verdict=verdict,
        summary=_summary(verdict, layers, training),
        remedies=tuple(_remedies(net, layers, training, input_finite)),
        training=training,
    )


def _layer_numbers(measured, index: int) -> dict:
    return {name: float(getattr(measured, name)[index]) for name in measured.metrics}


def _diagnose_layers(net, measured, predicted: np.ndarray) -> list:
    names = measured.layer_names
    kinds = tuple(net.activation) + ("output",)
    grad_out = np.asarray(measured.grad_output_norm, np.float64)
    grad_in = np.asarray(measured.grad_input_norm, np.float64)
    reference = grad_out[-2] if len(names) > 1 else grad_out[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = grad_out / reference
        growth = (grad_in / grad_out) ** 2
    loss_finite = math.isfinite(float(measured.loss))
    layers = []
    for index, name in enumerate(names):
        numbers = _layer_numbers(measured, index)
        kind = kinds[index]
        findings, statuses = [], []
        nonfinite = numbers["nonfinite_count"]
        if nonfinite > 0 or not loss_finite:
            statuses.append("non-finite")
            findings.append(
                f"{int(nonfinite)} NaN or infinite values in its activations or gradients"
                if nonfinite > 0 else "the loss is not finite"
            )
        dead = numbers["dead_fraction"]
        if dead >= DEAD_FRACTION_NOTED:
            if dead >= DEAD_FRACTION:
                statuses.append("dead units")
            findings.append(
                f"{dead:.0%} of its units output zero for every sample of the batch (dead "
                "ReLUs get no gradient)"
            )
        saturated = numbers["saturated_fraction"]
        if saturated >= SATURATED_FRACTION:
            statuses.append("saturated")
            bounds = "[0.01, 0.99]" if kind == "sigmoid" else "(-0.99, 0.99)"
            findings.append(
                f"{saturated:.0%} of its {kind} outputs lie outside {bounds}, where the "
                f"derivative is nearly zero (pre-activation std {numbers['preact_std']:.3g})"
            )
        ratio = float(ratios[index])
        if index < len(names) - 1 and math.isfinite(ratio):
            if ratio > EXPLODING_RATIO:
                statuses.append("exploding")
                findings.append(
                    f"the gradient reaching it is {ratio:.3g} times that reaching the last "
                    "hidden layer"
                )
            elif ratio < VANISHING_RATIO:
                statuses.append("vanishing")
                findings.append(
                    f"the gradient reaching it is {ratio:.3g} of that reaching the last hidden "
                    "layer"
                )
        status = next((s for s in STATUSES if s in statuses), "healthy")
        layers.append(LayerDiagnosis(
            index=index, name=name, activation=kind, status=status, findings=tuple(findings),
            gradient_ratio=ratio, measured_growth=float(growth[index]),
            predicted_growth=float(predicted[index]), numbers=numbers,
        ))
    return layers


def _predicted_growth(net, x, input_finite: bool) -> np.ndarray:
    """Mean-field chi_1 per layer, from the current weights' scale and the batch's second moment
    (NaN for residual networks, which the theory does not cover, and for a non-finite batch)."""
    from gradwatch import theory

    if net.residual_layers or not input_finite:
        return np.full(len(net.layer_sizes) - 1, np.nan)
    return np.asarray(theory.for_network(net, x=x, from_weights=True).chi, np.float64)


def _layer_range(layers: list) -> str:
    names = [layer.name for layer in layers]
    return names[0] if len(names) == 1 else f"{names[0]} to {names[-1]}" if _consecutive(
        layers) else ", ".join(names)


def _consecutive(layers: list) -> bool:
    return all(b.index == a.index + 1 for a, b in zip(layers, layers[1:]))


def _summary(verdict: str, layers: list, training: Optional[dict]) -> str:
    hit = [layer for layer in layers if layer.status == verdict]
    where = _layer_range(hit) if hit else ""
    if verdict == "healthy":
        text = ("gradients reach every layer at a usable scale (within 10x of the gradient "
                "reaching the last hidden layer), with no dead, saturated or non-finite units")
    elif verdict == "vanishing":
        worst = min(hit, key=lambda layer: layer.gradient_ratio)
        text = (f"gradients vanish: {where} receive less than {VANISHING_RATIO:g} of the gradient "
                f"reaching the last hidden layer ({worst.name}: {worst.gradient_ratio:.3g}), so "
                "they barely learn")
    elif verdict == "exploding":
        worst = max(hit, key=lambda layer: layer.gradient_ratio)
        text = (f"gradients explode: {where} receive more than {EXPLODING_RATIO:g} times the "
                f"gradient reaching the last hidden layer ({worst.name}: "
                f"{worst.gradient_ratio:.3g} times)")
    elif verdict == "dead units":
        text = (f"{where} have most units dead (zero for every sample), so no gradient flows "
                "through them")
    elif verdict == "saturated":
        text = (f"{where} are saturated: most outputs sit where the derivative is nearly zero, "
                "which stops the gradient")
    else:
        text = (f"non-finite values in {where}" if where else
                "training produced non-finite values")
    if training is not None and training.get("nonfinite"):
        text += f"; training on a copy stopped: {training['nonfinite']}"
    return text


# --- training on a copy -------------------------------------------------------------------------


def _clone(net):
    """A network equal to ``net`` (architecture, parameters, buffers, dropout step)."""
    from gradwatch.io import load

    buffer = io.BytesIO()
    net.save(buffer)
    buffer.seek(0)
    copy = load(buffer)
    copy.dropout_step = net.dropout_step
    return copy


def _copy_optimizer(optimizer):
    copy = type(optimizer)(**optimizer.options)
    copy.load_state_dict(optimizer.state_dict())
    return copy


def _train_copy(net, x, y, steps: int, optimizer, dead_before: np.ndarray) -> dict:
    from gradwatch.errors import NonFiniteError
    from gradwatch.telemetry import probe

    copy = _clone(net)
    copy.set_telemetry(enabled=True, every=1, capacity=steps)
    losses, grad_norms, nonfinite = [], [], None
    for _ in range(steps):
        try:
            loss, grad_norm = copy.train_step(x, y, optimizer)
        except NonFiniteError as error:
            nonfinite = str(error)
            break
        losses.append(float(loss))
        grad_norms.append(float(grad_norm))
    findings = []
    if losses:
        findings.append(
            f"{len(losses)} steps with {type(optimizer).__name__}(lr={optimizer.lr:g}): loss "
            f"{losses[0]:.4g} -> {losses[-1]:.4g}, global gradient norm {grad_norms[0]:.3g} -> "
            f"{grad_norms[-1]:.3g}"
        )
    if nonfinite:
        findings.append(f"stopped at step {len(losses)}: {nonfinite}")
    update_ratio = np.asarray(copy.telemetry.update_ratio, np.float64)
    names = copy.telemetry.layer_names
    high, low = [], []
    if update_ratio.size:
        typical = np.nanmedian(update_ratio, axis=0) if np.isfinite(update_ratio).any() else []
        for name, value in zip(names, typical):
            if value > UPDATE_RATIO_HIGH:
                high.append(name)
                findings.append(f"{name}: each step changes its weights by {value:.3g} of their "
                                "norm (more than a tenth: the learning rate is too large)")
            elif value < UPDATE_RATIO_LOW:
                low.append(name)
                findings.append(f"{name}: each step changes its weights by only {value:.3g} of "
                                "their norm (it is not learning)")
    newly_dead = []
    if nonfinite is None:
        after = probe(copy, x, y)
        for index, name in enumerate(after.layer_names):
            dead_after = float(after.dead_fraction[index])
            if dead_after >= DEAD_FRACTION and not dead_before[index] >= DEAD_FRACTION:
                newly_dead.append(name)
                findings.append(f"{name}: {dead_after:.0%} of its units died during training")
    return {
        "steps": len(losses),
        "losses": losses,
        "grad_norms": grad_norms,
        "nonfinite": nonfinite,
        "update_ratio_high": high,
        "update_ratio_low": low,
        "newly_dead": newly_dead,
        "findings": findings,
    }


# --- remedies -----------------------------------------------------------------------------------


def _weight_scales(net) -> list:
    """Per dense layer: the weights' std over the std of He (ReLU) or LeCun (others) init."""
    state = net.state_dict()
    scales = []
    kinds = tuple(net.activation) + ("output",)
    for index, (fan_in, kind) in enumerate(zip(net.layer_sizes[:-1], kinds)):
        weights = np.asarray(state[f"dense{index}.weight"], np.float64)
        reference = math.sqrt((2.0 if kind in _RELU_FAMILY else 1.0) / fan_in)
        scales.append(float(weights.std()) / reference)
    return scales


def _remedies(net, layers: list, training: Optional[dict], input_finite: bool) -> list:
    statuses = {layer.status for layer in layers}
    hidden_kinds = set(net.activation)
    relu = bool(hidden_kinds & set(_RELU_FAMILY))
    saturating = sorted(hidden_kinds & set(_SATURATING))
    he = all(scheme in _HE_SCHEMES for scheme in net.init[:-1])
    glorot = all(scheme in _GLOROT_LECUN for scheme in net.init[:-1])
    scales = _weight_scales(net)[:-1]
    hidden_scale = float(np.exp(np.mean(np.log(np.maximum(scales, 1e-300))))) if scales else 1.0
    widths = net.layer_sizes[1:-1]
    can_residual = any(a == b for a, b in zip(widths, widths[1:]))
    candidates: dict = {}

    def offer(score: float, name: str, reason: str) -> None:
        if name not in candidates or candidates[name][0] < score:
            candidates[name] = (score, reason)

    if "vanishing" in statuses:
        if saturating:
            offer(90, "ReLU or leaky ReLU instead of " + " and ".join(saturating),
                  "the sigmoid's derivative is at most 0.25 (tanh's at most 1 and smaller away "
                  "from 0), so every such layer multiplies the gradient down; ReLU passes it "
                  "unchanged where the unit is active")
            if not glorot or hidden_scale < 0.5:
                offer(85, "Xavier/Glorot or LeCun initialisation",
                      f"the weights are {hidden_scale:.2g} times the LeCun scale "
                      "(variance 1 / fan_in), which keeps sigmoid and tanh layers' signals "
                      "and gradients at a constant scale (Glorot & Bengio 2010)")
        if relu and (not he or hidden_scale < 0.5):
            offer(95, "He initialisation (init='he_normal')",
                  f"the weights are {hidden_scale:.2g} times the He scale; He et al. (2015) "
                  "choose variance 2 / fan_in so that a ReLU layer keeps the gradient's "
                  "scale from layer to layer")
        if not net.batchnorm:
            offer(70, "batch normalisation (batchnorm=True)",
                  "it re-scales every layer's pre-activations to unit variance, so the gradient "
                  "no longer shrinks with the weight scale")
        if not net.residual and can_residual:
            offer(60, "residual connections (residual=True)",
                  "the identity path carries the gradient past the layers that shrink it")
        offer(40, "Adam (gradwatch.optim.Adam)",
              "per-parameter step sizes make the deep layers move even when their gradients "
              "are small")

    if "exploding" in statuses:
        if relu and hidden_scale > 1.5:
            offer(95, "He initialisation (init='he_normal')",
                  f"the weights are {hidden_scale:.2g} times the He scale, so every ReLU layer "
                  "multiplies the gradient up")
        elif saturating and hidden_scale > 1.5:
            offer(90, "Xavier/Glorot or LeCun initialisation",
                  f"the weights are {hidden_scale:.2g} times the LeCun scale")
        offer(85, "gradient clipping (clip_grad_norm=...)",
              "caps the global gradient norm of every step, whatever its size")
        offer(80, "smaller learning rate",
              "the step is the learning rate times an exploding gradient")
        if net.batchnorm and relu:
            offer(88, "learning-rate warmup (schedules.LinearWarmup)",
                  "ReLU + batch norm gradients explode at initialisation and settle as the "
                  "activations become correlated (Paik & Choi 2023); warmup keeps the first "
                  "steps small until then (Goyal et al. 2017)")
            offer(75, "LARS (gradwatch.optim.LARS, mode='clip')",
                  "a per-layer learning rate trust * ||w|| / ||g|| caps the step of the layers "
                  "whose gradients explode")
            offer(65, "smaller batch",
                  "batch norm's gradient explosion grows with the batch size (Yang et al. 2019), "
                  "and large batches come with large learning rates")
        offer(55, "Adam (gradwatch.optim.Adam)",
              "its step size does not grow with the gradient's scale")
        if not net.residual and can_residual:
            offer(45, "residual connections (residual=True)",
                  "identity paths keep the gradient's scale close to 1 per layer")

    if "dead units" in statuses or (training and training.get("newly_dead")):
        if "leaky_relu" not in hidden_kinds:
            offer(92, "leaky ReLU (activation='leaky_relu')",
                  "it keeps a small slope (0.01) below zero, so a unit that is off for every "
                  "sample still gets a gradient and can recover")
        offer(75, "zero biases and He initialisation",
              "large negative biases or weights switch units off for every input")
        offer(70, "smaller learning rate",
              "large steps push pre-activations below zero for every sample, killing units")
        if not net.batchnorm:
            offer(65, "batch normalisation (batchnorm=True)",
                  "it centres each unit's pre-activation on the batch, so about half the "
                  "samples switch it on")

    if "saturated" in statuses:
        offer(95, "Xavier/Glorot or LeCun initialisation",
              f"the weights are {hidden_scale:.2g} times the LeCun scale: pre-activations "
              "this large push sigmoid and tanh into their flat tails")
        if not net.batchnorm:
            offer(80, "batch normalisation (batchnorm=True)",
                  "it keeps each pre-activation near zero mean and unit variance, inside the "
                  "activation's steep part")
        offer(70, "ReLU or leaky ReLU",
              "they do not saturate for positive inputs")

    if "non-finite" in statuses or (training and training.get("nonfinite")):
        offer(96, "smaller learning rate", "a step that overflows makes every later value NaN")
        offer(94, "gradient clipping (clip_grad_norm=...)",
              "it bounds every step; a non-finite norm is reported instead of applied")
        if not input_finite:
            offer(98, "clean the input data", "the batch itself holds NaN or infinite values")

    if training:
        if training.get("update_ratio_high"):
            offer(86, "smaller learning rate",
                  "each step changes " + ", ".join(training["update_ratio_high"])
                  + f" by more than {UPDATE_RATIO_HIGH:g} of the weights' norm")
        if training.get("update_ratio_low") and "vanishing" not in statuses:
            offer(50, "larger learning rate or Adam",
                  "each step changes " + ", ".join(training["update_ratio_low"])
                  + f" by less than {UPDATE_RATIO_LOW:g} of the weights' norm")

    ranked = sorted(candidates.items(), key=lambda item: -item[1][0])
    return [Remedy(name, reason) for name, (_, reason) in ranked]
