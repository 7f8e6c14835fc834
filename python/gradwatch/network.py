"""Multilayer perceptrons whose whole training step is one call into the compiled core.

A hidden layer is dense -> batch norm (optional) -> activation -> inverted dropout (optional),
plus its input when it is residual; the output layer is dense and gives the logits. Parameters
live in the core in float32 or float64; :meth:`MLP.state_dict` hands out copies.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Optional, Union

import numpy as np

from gradwatch import init as _init
from gradwatch import io as _io
from gradwatch import training as _training
from gradwatch._core_loader import _core
from gradwatch._validation import choice, positive_int, positive_scalar, real_scalar, shape_text
from gradwatch.activations import DEFAULT_ALPHA
from gradwatch.activations import KINDS as ACTIVATIONS
from gradwatch.activations import activation_forward
from gradwatch.loss import softmax
from gradwatch.telemetry import Telemetry

LOSSES: tuple[str, ...] = ("softmax_cross_entropy", "binary_cross_entropy_with_logits", "mse")
"""The valid values of ``loss``."""

_CORE_CLASSES = {np.dtype(np.float32): _core.Network_f32, np.dtype(np.float64): _core.Network_f64}
_INT64 = np.dtype(np.int64)
_HE_SCHEMES = ("he_normal", "he_uniform", "kaiming_normal", "kaiming_uniform", "he")
_MAX_TELEMETRY_CAPACITY = 2**31


def _layer_sizes(layer_sizes: object) -> tuple[int, ...]:
    if isinstance(layer_sizes, (str, bytes)) or not isinstance(layer_sizes, Sequence):
        raise TypeError(
            "layer_sizes must be a sequence of ints (inputs, hidden widths..., outputs), got "
            f"{type(layer_sizes).__name__}"
        )
    sizes = []
    for i, size in enumerate(layer_sizes):
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral):
            raise TypeError(f"layer_sizes[{i}] must be an int, got {type(size).__name__}")
        if size < 1:
            raise ValueError(f"layer_sizes[{i}] must be >= 1, got {int(size)}")
        if size > 2**31 - 1:
            raise ValueError(f"layer_sizes[{i}] must be < 2**31 (OpenBLAS's integers), got {size}")
        sizes.append(int(size))
    if len(sizes) < 2:
        raise ValueError(
            f"layer_sizes must have at least 2 entries (inputs and outputs), got {list(sizes)}"
        )
    return tuple(sizes)


def _per_layer(name: str, value: object, count: int, what: str, allow_output: bool) -> list:
    """One value per hidden layer (or per dense layer when allow_output) from one or a list."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value] * count
    values = list(value)
    if allow_output and len(values) == count + 1:
        return values
    if len(values) != count:
        also = f" or one per dense layer ({count + 1})" if allow_output else ""
        raise ValueError(
            f"{name} must be one {what} or a list of one per hidden layer ({count}){also}, "
            f"got {len(values)} entries"
        )
    return values


def _activations(activation: object, hidden: int) -> tuple[str, ...]:
    kinds = _per_layer("activation", activation, hidden, "name", allow_output=False)
    return tuple(choice("activation", kind, ACTIVATIONS) for kind in kinds)


def _inits(init: object, sizes: tuple[int, ...], activations: tuple[str, ...]) -> tuple:
    """One scheme per dense layer, checked by gradwatch.init; a list of one per hidden layer
    gives the output layer the last hidden layer's scheme."""
    layers = len(sizes) - 1
    schemes = _per_layer("init", init, layers - 1, "scheme", allow_output=True)
    if len(schemes) == layers - 1:
        schemes = schemes + schemes[-1:] if schemes else [init]
    for i, scheme in enumerate(schemes):
        if scheme == "normal":
            raise ValueError(
                "init 'normal' needs a standard deviation: pass it as a number, e.g. init=0.01 "
                "for N(0, 0.01^2)"
            )
        if scheme == "uniform":
            raise ValueError(
                "init 'uniform' needs a limit, which MLP does not take; use 'xavier_uniform', "
                "'he_uniform' or 'lecun_uniform', or a number s for N(0, s^2)"
            )
        try:
            _init.std_for(scheme, sizes[i], sizes[i + 1], **_he_arguments(scheme, i, activations))
        except (TypeError, ValueError) as error:
            raise type(error)(f"init of layer {i}: {error}") from None
    return tuple(schemes)


def _he_arguments(scheme: object, layer: int, activations: tuple[str, ...]) -> dict:
    """He schemes follow a leaky_relu activation after the layer with its negative slope."""
    if scheme in _HE_SCHEMES and layer < len(activations) and activations[layer] == "leaky_relu":
        return {"nonlinearity": "leaky_relu", "negative_slope": DEFAULT_ALPHA["leaky_relu"]}
    return {}


def _layer_index(name: str) -> int:
    """3 for "dense3.weight" or "bn3.gamma"."""
    prefix = name.split(".")[0]
    return int(prefix[len("dense"):] if prefix.startswith("dense") else prefix[len("bn"):])


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def _dropouts(dropout: object, hidden: int) -> tuple[float, ...]:
    values = _per_layer("dropout", dropout, hidden, "probability", allow_output=False)
    result = []
    for value in values:
        p = real_scalar("dropout", value)
        if not 0.0 <= p < 1.0:
            raise ValueError(
                f"dropout must be in [0, 1) (the probability of zeroing an activation), got {p}"
            )
        result.append(p)
    return tuple(result)


def _unit_interval(name: str, value: object, meaning: str) -> float:
    result = real_scalar(name, value)
    if not 0.0 <= result <= 1.0:
        raise ValueError(f"{name} must be in [0, 1] ({meaning}), got {result}")
    return result


def _optional_positive(name: str, value: object) -> float:
    """0.0 (off) for None, else a finite number > 0."""
    if value is None:
        return 0.0
    result = real_scalar(name, value)
    if result <= 0:
        raise ValueError(f"{name} must be > 0 (or None to switch it off), got {result}")
    return result


class MLP:
    """A multilayer perceptron trained in float32 or float64 by one compiled call per step.

    Layer ``i`` (0-based, the output layer last) is dense with ``W`` of shape (fan_in, fan_out)
    and bias ``b``. A hidden layer computes::

        z = x @ W + b
        h = gamma * (z - mean) / sqrt(var + bn_eps) + beta     (with batchnorm; else h = z)
        a = activation(h)
        out = a * mask / (1 - p)                                (with dropout p; else out = a)
        out = out + x                                           (residual layers)

    and the output layer ``logits = x @ W + b``.

    Parameters
    ----------
    layer_sizes : sequence of int
        Inputs, hidden widths..., outputs, e.g. ``(784, 100, 100, 10)``; at least 2 entries.
    activation : str or sequence of str, default "relu"
        The activation of every hidden layer, or one per hidden layer; any of
        ``gradwatch.activations.KINDS`` (``leaky_relu`` and ``elu`` with their default alpha,
        0.01 and 1).
    init : str, float or sequence, default "he_normal"
        The weight scheme of every dense layer, any of :data:`gradwatch.init.SCHEMES` except
        ``"normal"``/``"uniform"`` (which need a std or limit), or a number ``s`` for
        N(0, s^2); or one per hidden layer (the output layer then takes the last one), or one
        per dense layer. He schemes before a ``leaky_relu`` use its negative slope. Biases start
        at 0.
    batchnorm : bool, default False
        Batch norm after every hidden dense layer, with PyTorch's conventions (Ioffe & Szegedy
        2015): training normalises by the batch mean and the biased batch variance; the
        running statistics follow ``running = (1 - bn_momentum) * running + bn_momentum *
        batch``, with the *unbiased* batch variance (N / (N - 1) times the biased one);
        inference uses the running statistics. gamma starts at 1, beta at 0, running_mean at 0,
        running_var at 1.
    residual : bool, default False
        Add each hidden layer's input to its output wherever its fan_in equals its fan_out.
        Layers whose widths differ cannot (nor can the output layer); :attr:`residual_layers`
        lists the hidden layers that do.
    dropout : float or sequence of float, default 0.0
        Inverted dropout probability in [0, 1) after every hidden activation (or one per hidden
        layer): in training each activation is zeroed with probability p and the others scaled
        by 1 / (1 - p); inference uses every activation unscaled. Masks come from a
        counter-based generator keyed by the seed, the layer and :attr:`dropout_step`.
    loss : str, default "softmax_cross_entropy"
        ``"softmax_cross_entropy"`` (targets: int class indices (N,)),
        ``"binary_cross_entropy_with_logits"`` (targets in [0, 1] of shape (N, C); the mean over
        all N C entries) or ``"mse"`` (targets (N, C); mean over all entries).
    dtype : str or numpy dtype, default "float32"
        float32 or float64, of parameters, inputs and outputs.
    seed : int, optional
        In [0, 2**64): weights and dropout masks derive from it
        (``numpy.random.SeedSequence(seed).generate_state(L + 1, uint64)``: one seed per dense
        layer for :func:`gradwatch.init.weights`, the last for dropout). None draws one
        from the operating system; :attr:`seed` keeps it.
    bn_momentum : float, default 0.1
        In [0, 1]: the weight of the new batch in the running statistics (PyTorch's
        ``momentum``; Keras's momentum is 1 minus this).
    bn_eps : float, default 1e-5
        Added to the variance before the square root; finite and > 0.
    telemetry : bool, default True
        Record per-layer statistics of training steps into :attr:`telemetry` (see
        :mod:`gradwatch.telemetry`).
    telemetry_every : int, default 1
        Record the steps whose step counter is a multiple of this (>= 1); the others cost
        nothing.
    telemetry_capacity : int, default 10000
        Steps kept, in [1, 2**31]; when full, the oldest record is dropped (a ring buffer). The
        core allocates ``capacity * layers * 14`` values of 8 bytes up front (touched as
        steps are recorded).

    Attributes
    ----------
    layer_sizes : tuple of int
    parameters : dict of str to tuple
        The shape of every parameter, in the order of the optimiser and of the gradients:
        ``dense{i}.weight`` (fan_in, fan_out), ``dense{i}.bias``, and with batch norm
        ``bn{i}.gamma``, ``bn{i}.beta``.
    n_parameters : int
        The number of trainable values.
    residual_layers : tuple of int
        The hidden layers with a residual connection.
    activation, init, dropout : tuple
        One entry per hidden layer (per dense layer for init).
    telemetry : gradwatch.telemetry.Telemetry
        The recorded statistics (not saved by :meth:`save`).

    Raises
    ------
    TypeError
        For arguments of the wrong type (e.g. ``layer_sizes`` not a sequence of ints, a dtype
        other than float32/float64).
    ValueError
        For sizes < 1, unknown activation, init or loss names (the message lists the valid
        ones), a list of the wrong length, dropout outside [0, 1), bn_momentum outside [0, 1],
        bn_eps <= 0, batch norm or dropout without hidden layers.

    Examples
    --------
    >>> import numpy as np, gradwatch
    >>> net = gradwatch.MLP([4, 8, 3], seed=0)
    >>> x = np.ones((2, 4), np.float32); y = np.array([0, 2])
    >>> loss, grad_norm = net.train_step(x, y, gradwatch.optim.SGD(lr=0.1))
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        activation: Union[str, Sequence[str]] = "relu",
        init: Union[str, float, Sequence] = "he_normal",
        batchnorm: bool = False,
        residual: bool = False,
        dropout: Union[float, Sequence[float]] = 0.0,
        loss: str = "softmax_cross_entropy",
        dtype: object = "float32",
        seed: Optional[int] = None,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        telemetry: bool = True,
        telemetry_every: int = 1,
        telemetry_capacity: int = 10000,
    ) -> None:
        sizes = _layer_sizes(layer_sizes)
        hidden = len(sizes) - 2
        self.layer_sizes = sizes
        self.activation = _activations(activation, hidden)
        self.init = _inits(init, sizes, self.activation)
        self.batchnorm = _flag("batchnorm", batchnorm)
        self.residual = _flag("residual", residual)
        self.dropout = _dropouts(dropout, hidden)
        self.loss = choice("loss", loss, LOSSES)
        self.dtype = _init._dtype(dtype)
        self.seed = _init._seed(seed)
        self.bn_momentum = _unit_interval(
            "bn_momentum", bn_momentum, "the weight of the new batch, PyTorch's convention"
        )
        self.bn_eps = positive_scalar("bn_eps", bn_eps)
        scalar_dropout = isinstance(dropout, (str, bytes)) or not isinstance(dropout, Sequence)
        if hidden == 0 and (self.batchnorm or scalar_dropout and real_scalar("dropout", dropout)):
            raise ValueError(
                "batchnorm and dropout apply to hidden layers, and this network has none "
                f"(layer_sizes {list(sizes)})"
            )
        self.residual_layers = tuple(
            i for i in range(hidden) if self.residual and sizes[i] == sizes[i + 1]
        )

        layer_seeds = np.random.SeedSequence(self.seed).generate_state(len(sizes), np.uint64)
        self._core = _CORE_CLASSES[self.dtype](
            list(sizes),
            [getattr(_core.Activation, kind) for kind in self.activation],
            [DEFAULT_ALPHA.get(kind, 0.0) for kind in self.activation],
            [self.batchnorm] * hidden,
            [i in self.residual_layers for i in range(hidden)],
            list(self.dropout),
            getattr(_core.LossKind, self.loss),
            self.bn_momentum,
            self.bn_eps,
            int(layer_seeds[-1]),
        )
        info = self._core.parameter_info()
        self.parameters = {name: tuple(shape) for name, shape, _ in info}
        self.n_parameters = sum(math.prod(shape) for shape in self.parameters.values())
        buffer_shapes = {name: tuple(shape) for name, shape in self._core.buffer_info()}
        self._param_names = tuple(self.parameters)
        self._buffer_names = tuple(buffer_shapes)
        # state_dict order: each layer's parameters, then its buffers.
        shapes = {**self.parameters, **buffer_shapes}
        self._state_shapes = {name: shapes[name] for name in sorted(shapes, key=self._state_key)}
        self._inputs, self._outputs = sizes[0], sizes[-1]
        self._labels = self.loss == "softmax_cross_entropy"

        params = []
        for name, shape in self.parameters.items():
            layer = _layer_index(name)
            if name.endswith(".weight"):
                scheme = self.init[layer]
                params.append(
                    _init.weights(shape[0], shape[1], scheme, seed=int(layer_seeds[layer]),
                                  dtype=self.dtype, **_he_arguments(scheme, layer, self.activation))
                )
            elif name.endswith(".gamma"):
                params.append(np.ones(shape, self.dtype))
            else:
                params.append(np.zeros(shape, self.dtype))
        buffers = [
            np.ones(shape, self.dtype) if name.endswith("running_var") else np.zeros(shape, self.dtype)
            for name, shape in buffer_shapes.items()
        ]
        self._core.load(params, buffers)
        self.telemetry = Telemetry(self._core, len(sizes) - 1)
        self.set_telemetry(enabled=telemetry, every=telemetry_every, capacity=telemetry_capacity)

    def set_telemetry(self, *, enabled: Optional[bool] = None, every: Optional[int] = None,
                      capacity: Optional[int] = None) -> None:
        """Change what training steps record into :attr:`telemetry`; None keeps a setting.

        Parameters
        ----------
        enabled : bool, optional
            Record (True) or not (False: steps then compute no statistics at all).
        every : int, optional
            Record the steps whose counter is a multiple of ``every`` (>= 1).
        capacity : int, optional
            Steps kept, in [1, 2**31]; a new capacity keeps the newest records that fit.

        Raises
        ------
        TypeError
            For a non-bool ``enabled`` or non-integer ``every``/``capacity``.
        ValueError
            For ``every`` < 1 or ``capacity`` outside [1, 2**31].
        """
        current_enabled, current_every, current_capacity = self._core.telemetry_options()
        enabled = current_enabled if enabled is None else _flag("telemetry", enabled)
        every = current_every if every is None else positive_int("telemetry_every", every)
        if capacity is None:
            capacity = current_capacity
        else:
            capacity = positive_int("telemetry_capacity", capacity)
            if capacity > _MAX_TELEMETRY_CAPACITY:
                raise ValueError(
                    f"telemetry_capacity must be <= 2**31 (steps kept), got {capacity}"
                )
        self._core.set_telemetry(enabled, every, capacity)

    @staticmethod
    def _state_key(name: str) -> tuple:
        field = name.split(".")[1]
        layer = _layer_index(name)
        order = ("weight", "bias", "gamma", "beta", "running_mean", "running_var")
        return layer, order.index(field)

    # -- argument checks (no scans of the data: they run on every step) ------------------------

    def _x(self, x: object) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            try:
                x = np.asarray(x)
            except (TypeError, ValueError) as error:
                raise TypeError(f"x must be array-like of numbers: {error}") from None
            if x.dtype.kind not in "iuf":
                raise TypeError(f"x must hold real numbers, got dtype {x.dtype.name}")
            x = x.astype(self.dtype)
        elif x.dtype != self.dtype:
            raise TypeError(
                f"x must be {self.dtype.name} (the network's dtype), got {x.dtype.name}; "
                f"convert with x.astype(np.{self.dtype.name})"
            )
        if x.ndim != 2 or x.shape[1] != self._inputs:
            hint = "; one sample is x[None, :]" if x.shape == (self._inputs,) else ""
            raise ValueError(
                f"x must have shape (N, {self._inputs}), got {shape_text(x.shape)}{hint}"
            )
        if x.shape[0] == 0:
            raise ValueError(f"x is an empty batch (shape {shape_text(x.shape)})")
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        return x

    def _y(self, y: object, batch: int) -> np.ndarray:
        if not isinstance(y, np.ndarray):
            try:
                y = np.asarray(y)
            except (TypeError, ValueError) as error:
                raise TypeError(f"y must be array-like of numbers: {error}") from None
        if self._labels:
            if y.shape != (batch,):
                hint = ""
                if y.shape == (batch, self._outputs):
                    hint = "; for one-hot rows pass y.argmax(axis=1)"
                raise ValueError(
                    f"y must be class indices of shape (N,) = ({batch},) to match x, got "
                    f"{shape_text(y.shape)}{hint}"
                )
            if y.dtype != _INT64:
                if y.dtype.kind not in "iu":
                    raise TypeError(
                        "y must hold integer class indices for softmax_cross_entropy, got dtype "
                        f"{y.dtype.name}"
                    )
                y = y.astype(np.int64)
        else:
            if y.dtype != self.dtype:
                if y.dtype.kind not in "biuf":
                    raise TypeError(f"y must hold real numbers, got dtype {y.dtype.name}")
                y = y.astype(self.dtype)
            if y.shape == (batch,) and self._outputs == 1:
                y = y.reshape(batch, 1)
            if y.shape != (batch, self._outputs):
                one = " or (N,) for one output" if self._outputs == 1 else ""
                raise ValueError(
                    f"y must have shape (N, C) = ({batch}, {self._outputs}){one} to match x and "
                    f"the {self._outputs} outputs of the network, got {shape_text(y.shape)}"
                )
        if not y.flags.c_contiguous:
            y = np.ascontiguousarray(y)
        return y

    # -- inference ----------------------------------------------------------------------------

    def forward(self, x, *, training: bool = False) -> np.ndarray:
        """The logits: the output layer's ``x @ W + b``, before any softmax or sigmoid.

        Parameters
        ----------
        x : numpy.ndarray
            (N, D) of the network's dtype (lists are converted; arrays of another dtype are
            refused rather than silently copied).
        training : bool, default False
            False: batch norm uses the running statistics and dropout is off. True: batch
            statistics and the dropout masks of the current :attr:`dropout_step`, as a training
            step would see them; nothing is updated either way.

        Returns
        -------
        numpy.ndarray
            (N, C), the network's dtype.

        Raises
        ------
        TypeError
            If ``x`` has another dtype.
        ValueError
            If ``x`` is not (N, D) with N >= 1, or ``training`` with batch norm and N = 1.
        """
        x = self._x(x)
        return self._core.forward(x, bool(training))

    def predict(self, x) -> np.ndarray:
        """Predictions in inference mode.

        Returns
        -------
        numpy.ndarray
            softmax_cross_entropy: the class index of the largest logit (N,), int64;
            binary_cross_entropy_with_logits: 1 where the logit is > 0, else 0, int64, (N, C) or
            (N,) for one output; mse: the outputs, (N, C) or (N,) for one output.
        """
        logits = self.forward(x)
        if self._labels:
            return logits.argmax(axis=1)
        result = (logits > 0).astype(np.int64) if self.loss != "mse" else logits
        return result[:, 0] if self._outputs == 1 else result

    def predict_proba(self, x) -> np.ndarray:
        """Class probabilities in inference mode: softmax of the logits (softmax cross-entropy)
        or sigmoid of each logit (binary cross-entropy), (N, C).

        Raises
        ------
        TypeError
            For a network trained with ``mse``: it is a regression network (use
            :meth:`predict`).
        """
        if self.loss == "mse":
            raise TypeError(
                "predict_proba is for classifiers; this network's loss is 'mse', a regression "
                "network: use predict"
            )
        logits = self.forward(x)
        return softmax(logits) if self._labels else activation_forward(logits, "sigmoid")

    def evaluate(self, x, y) -> dict:
        """Loss in inference mode and, for classification, accuracy.

        Returns
        -------
        dict
            ``loss`` (the mean loss, float) and, unless the loss is ``mse``, ``accuracy``: the
            fraction of rows whose largest logit is the label (softmax), or of entries whose
            prediction (logit > 0) equals the target rounded at 0.5 (binary cross-entropy).
        """
        x = self._x(x)
        y = self._y(y, x.shape[0])
        loss, correct, total = self._core.evaluate(x, y)
        result = {"loss": loss}
        if self.loss != "mse":
            result["accuracy"] = correct / total
        return result

    # -- training -----------------------------------------------------------------------------

    def loss_and_gradients(self, x, y) -> tuple[float, dict]:
        """The training-mode loss and the gradient of every parameter; changes nothing.

        Batch norm uses the batch statistics, dropout the masks of the current
        :attr:`dropout_step` (the next :meth:`train_step` with the same batch sees the same
        ones). NaN or infinite values are returned as they are.

        Returns
        -------
        loss : float
        grads : dict of str to numpy.ndarray
            Keyed like :attr:`parameters` (no running statistics), copies.
        """
        x = self._x(x)
        y = self._y(y, x.shape[0])
        loss, grads = self._core.loss_and_gradients(x, y)
        return loss, dict(zip(self._param_names, grads))

    def train_step(self, x, y, optimizer, *, clip_grad_norm=None, clip_grad_value=None):
        """One training step in one call into the core.

        Forward (batch statistics, dropout), loss, backward, finiteness checks, the global
        gradient norm, clipping, the optimiser's update and the batch-norm running statistics;
        then :attr:`dropout_step` advances.

        Parameters
        ----------
        x : numpy.ndarray
            (N, D), the network's dtype.
        y : array_like
            softmax_cross_entropy: integer class indices in [0, C), shape (N,); the other
            losses: targets (N, C) (or (N,) for one output), converted to the network's dtype.
        optimizer : gradwatch.optim.Optimizer
            Bound to this network's dtype and parameter layout on its first step.
        clip_grad_norm : float, optional
            Scale every gradient by ``min(1, clip_grad_norm / (norm + 1e-6))``, norm being the
            L2 norm of all gradients together (``torch.nn.utils.clip_grad_norm_``).
        clip_grad_value : float, optional
            Then clamp every gradient entry to [-clip_grad_value, clip_grad_value].

        Returns
        -------
        loss : float
            The training loss of the batch, before the update.
        grad_norm : float
            The global gradient norm before clipping.

        Raises
        ------
        gradwatch.NonFiniteError
            If the loss, a gradient or a batch statistic is NaN or infinite (or the norm is
            infinite with ``clip_grad_norm``), naming the first layer in backward order and the
            tensor; parameters, optimiser state, running statistics and dropout step are then
            bit-identical to before the call.
        TypeError
            For an ``x`` of another dtype, non-integer class labels, or an object that is not a
            gradwatch optimiser (or one bound to another dtype).
        ValueError
            For shapes that do not match the network, labels outside [0, C), a batch of one
            sample with batch norm (its variance is zero), NaN targets, clipping thresholds
            <= 0, or an optimiser bound to another network's layout.
        """
        x = self._x(x)
        y = self._y(y, x.shape[0])
        bind = getattr(optimizer, "_core_optimizer", None)
        if bind is None:
            raise TypeError(
                "optimizer must be a gradwatch.optim optimiser (e.g. gradwatch.optim.SGD), got "
                f"{type(optimizer).__name__}"
            )
        clip_norm = _optional_positive("clip_grad_norm", clip_grad_norm)
        clip_value = _optional_positive("clip_grad_value", clip_grad_value)
        return self._core.train_step(x, y, bind(self.dtype), clip_norm, clip_value)

    # -- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Copies of every parameter and batch-norm buffer.

        Returns
        -------
        dict of str to numpy.ndarray
            Per layer ``i``: ``dense{i}.weight`` (fan_in, fan_out), ``dense{i}.bias``
            (fan_out,), and with batch norm ``bn{i}.gamma``, ``bn{i}.beta``,
            ``bn{i}.running_mean``, ``bn{i}.running_var`` (fan_out,).
        """
        arrays = dict(zip(self._param_names, self._core.parameters()))
        arrays.update(zip(self._buffer_names, self._core.buffers()))
        return {name: arrays[name] for name in self._state_shapes}

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Replace every parameter and buffer by a copy of the arrays of ``state_dict``.

        Everything is checked before anything changes: on an error the network is untouched.

        Raises
        ------
        TypeError
            If ``state_dict`` is not a mapping, or an entry is not a numpy array of the
            network's dtype.
        ValueError
            For missing or unexpected keys, a wrong shape, NaN or infinite values, or a negative
            running variance.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict of arrays, got {type(state_dict).__name__}")
        missing = [name for name in self._state_shapes if name not in state_dict]
        unexpected = [name for name in state_dict if name not in self._state_shapes]
        if missing or unexpected:
            raise ValueError(
                f"state_dict does not match the network: missing keys {missing}, unexpected "
                f"keys {unexpected}"
            )
        for name, shape in self._state_shapes.items():
            value = state_dict[name]
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{name} must be a numpy array, got {type(value).__name__}")
            if value.dtype != self.dtype:
                raise TypeError(
                    f"{name} must be {self.dtype.name} (the network's dtype), got {value.dtype.name}"
                )
            if value.shape != shape:
                raise ValueError(
                    f"{name} must have shape {shape_text(shape)}, got {shape_text(value.shape)}"
                )
            if not np.isfinite(value).all():
                raise ValueError(f"{name} contains NaN or infinity")
            if name.endswith("running_var") and not (value >= 0).all():
                raise ValueError(f"{name} must be >= 0 (a variance)")
        self._core.load(
            [np.ascontiguousarray(state_dict[name]) for name in self._param_names],
            [np.ascontiguousarray(state_dict[name]) for name in self._buffer_names],
        )

    @property
    def dropout_step(self) -> int:
        """The step counter of the dropout masks: advanced by each successful train_step."""
        return self._core.dropout_step

    @dropout_step.setter
    def dropout_step(self, value: int) -> None:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(f"dropout_step must be an int, got {type(value).__name__}")
        if not 0 <= value < 2**64:
            raise ValueError(f"dropout_step must be in [0, 2**64), got {value}")
        self._core.dropout_step = int(value)

    def _dropout_masks(self, batch: int) -> dict:
        """The masks the next training step of a batch of ``batch`` rows uses: hidden layer
        index -> bool (batch, width), True where the activation is kept."""
        return {
            i: self._core.dropout_mask(i, batch).astype(bool)
            for i, p in enumerate(self.dropout) if p > 0
        }

    # -- the training loop and files ------------------------------------------------------------

    def fit(self, x, y, *, optimizer, epochs, batch_size, schedule=None, validation_data=None,
            shuffle=True, seed=None, progress=True, callbacks=(), clip_grad_norm=None,
            clip_grad_value=None, on_nonfinite="raise"):
        """Train by mini-batch steps and return a :class:`gradwatch.training.History`.

        See :func:`gradwatch.training.fit` for every argument: batches, shuffling, schedule,
        validation, progress bar, callbacks (a callback stops training by returning True),
        clipping and ``on_nonfinite="raise" | "skip"``.
        """
        return _training.fit(self, x, y, optimizer=optimizer, epochs=epochs,
                             batch_size=batch_size, schedule=schedule,
                             validation_data=validation_data, shuffle=shuffle, seed=seed,
                             progress=progress, callbacks=callbacks,
                             clip_grad_norm=clip_grad_norm, clip_grad_value=clip_grad_value,
                             on_nonfinite=on_nonfinite)

    def save(self, file) -> None:
        """Write this network to one ``.npz`` file (path or binary file object); read it back
        with :func:`gradwatch.load`. See :func:`gradwatch.io.save`."""
        _io.save(self, file)

    def __repr__(self) -> str:
        parts = [f"layer_sizes={self.layer_sizes}"]
        activations = set(self.activation)
        if activations:
            value = self.activation[0] if len(activations) == 1 else self.activation
            parts.append(f"activation={value!r}")
        parts.append(f"init={self.init[0]!r}" if len(set(self.init)) == 1 else f"init={self.init!r}")
        if self.batchnorm:
            parts.append("batchnorm=True")
            if self.bn_momentum != 0.1:
                parts.append(f"bn_momentum={self.bn_momentum}")
            if self.bn_eps != 1e-5:
                parts.append(f"bn_eps={self.bn_eps}")
        if self.residual:
            parts.append(f"residual=True (layers {list(self.residual_layers)})")
        if any(self.dropout):
            value = self.dropout[0] if len(set(self.dropout)) == 1 else self.dropout
            parts.append(f"dropout={value}")
        parts.append(f"loss={self.loss!r}")
        parts.append(f"dtype={self.dtype.name}")
        parts.append(f"seed={self.seed}")
        parts.append(f"n_parameters={self.n_parameters}")
        return f"MLP({', '.join(parts)})"


__all__ = ["LOSSES", "MLP"]
