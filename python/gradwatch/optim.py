"""Optimisers: SGD, AdaGrad, RMSProp, Adam, AdamW and LARS, each update fused in the compiled core.

An optimiser holds its hyperparameters and, from its first use, a compiled optimiser bound to one
dtype (float32 or float64) and one parameter layout (the number, sizes and roles of the tensors).
A network calls it in C++ inside its training step; :meth:`Optimizer.step` runs the same update
on NumPy arrays, so an optimiser can also be used on its own.

Every update is one pass per tensor over parameter, gradient and state, with the gradient
clipping of the training step fused in: the gradient ``g`` below is
``clip(grad * grad_scale, -clip_value, clip_value)``. ``t`` counts steps from 1. The rules of SGD,
AdaGrad, RMSProp, Adam and AdamW are PyTorch's (``torch.optim``), term for term, so the same
hyperparameters give the same trajectory. State is allocated on the first step and never after.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import Optional

import numpy as np

from gradwatch._core_loader import _core
from gradwatch._validation import FLOAT_DTYPES, choice, real_scalar, shape_text

__all__ = ["LARS", "SGD", "AdaGrad", "Adam", "AdamW", "Optimizer", "RMSProp", "parameter_role"]

_ROLE_PATTERNS = (
    (re.compile(r"dense\d+\.weight"), "weight"),
    (re.compile(r"dense\d+\.bias"), "bias"),
    (re.compile(r"bn\d+\.gamma"), "bn_gamma"),
    (re.compile(r"bn\d+\.beta"), "bn_beta"),
)

_CORE_CLASSES = {
    np.dtype(np.float32): _core.Optimizer_f32,
    np.dtype(np.float64): _core.Optimizer_f64,
}

_STATE_DICT_KEYS = ("type", "options", "dtype", "step", "param_names", "sizes", "roles", "state")


def parameter_role(name: str) -> str:
    """The role of a parameter from its name: ``dense{i}.weight`` -> ``"weight"``,
    ``dense{i}.bias`` -> ``"bias"``, ``bn{i}.gamma`` -> ``"bn_gamma"``, ``bn{i}.beta`` ->
    ``"bn_beta"``, any other name -> ``"weight"``. LARS uses roles to exclude biases and batch-norm
    parameters from its layer-wise rates."""
    for pattern, role in _ROLE_PATTERNS:
        if pattern.fullmatch(name):
            return role
    return "weight"


# --- argument checks ---------------------------------------------------------------------------


def _nonnegative(name: str, value: object) -> float:
    result = real_scalar(name, value)
    if result < 0:
        raise ValueError(f"{name} must be >= 0, got {result}")
    return result


def _unit_interval(name: str, value: object) -> float:
    """A float in [0, 1)."""
    result = real_scalar(name, value)
    if not 0 <= result < 1:
        raise ValueError(f"{name} must be in [0, 1), got {result}")
    return result


def _positive(name: str, value: object) -> float:
    result = real_scalar(name, value)
    if result <= 0:
        raise ValueError(f"{name} must be > 0, got {result}")
    return result


def _boolean(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def _float_dtype(dtype: object) -> np.dtype:
    try:
        result = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if result not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {result.name}")
    return result


def _betas(value: object) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {value!r}")
    return (_unit_interval("betas[0]", value[0]), _unit_interval("betas[1]", value[1]))


# --- the optimisers ----------------------------------------------------------------------------


class Optimizer:
    """Base class: hyperparameters, the bound compiled optimiser, ``step`` and state dicts.

    Subclasses set ``_kind`` and build ``self._options`` (the constructor's arguments, validated)
    in their ``__init__``; ``_core_options`` translates them to the core's option names.
    """

    _kind = ""

    def __init__(self, options: dict) -> None:
        self._options = options
        self._core = None
        self._dtype: Optional[np.dtype] = None
        self._param_names: Optional[list[str]] = None

    # -- hyperparameters

    @property
    def lr(self) -> float:
        """The learning rate of the next step; a schedule sets it between steps."""
        return self._options["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        lr = _nonnegative("lr", value)
        if self._core is not None:
            self._core.lr = lr
        self._options["lr"] = lr

    @property
    def options(self) -> dict:
        """A copy of the hyperparameters, keyed like the constructor's arguments."""
        return dict(self._options)

    @property
    def step_count(self) -> int:
        """Steps taken so far (0 before the first)."""
        return 0 if self._core is None else self._core.step_count

    @property
    def dtype(self) -> Optional[np.dtype]:
        """The dtype this optimiser is bound to, or None before its first use."""
        return self._dtype

    def _core_options(self) -> dict:
        options = {"kind": self._kind}
        options.update(self._options)
        return options

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._options.items())
        return f"{type(self).__name__}({arguments})"

    # -- binding

    def _core_optimizer(self, dtype):
        """The compiled optimiser for ``dtype``, created on the first call.

        Networks call this once per training step and pass the object to their compiled step.

        Raises
        ------
        TypeError
            If ``dtype`` is not float32 or float64, or differs from the dtype of the first call.
        """
        wanted = _float_dtype(dtype)
        if self._core is None:
            self._core = _CORE_CLASSES[wanted](self._core_options())
            self._dtype = wanted
        elif wanted != self._dtype:
            raise TypeError(
                f"this optimizer is bound to {self._dtype.name} parameters and cannot update "
                f"{wanted.name} ones; create a new optimizer"
            )
        return self._core

    # -- standalone use

    def step(self, params, grads, *, grad_scale: float = 1.0, clip_grad_value=None) -> None:
        """Update ``params`` in place by one step of this optimiser.

        Parameters
        ----------
        params : dict of str to numpy.ndarray
            Parameters by name, float32 or float64 (all the same), C-contiguous and writable;
            updated in place. Roles come from the names (see :func:`parameter_role`).
        grads : dict of str to numpy.ndarray
            Gradients with the same names, shapes and dtype; read only.
        grad_scale : float, default 1.0
            Factor applied to every gradient first (the scale of clipping by global norm).
        clip_grad_value : float, optional
            If given, each scaled gradient element is clamped to
            ``[-clip_grad_value, clip_grad_value]``.

        Raises
        ------
        TypeError
            If ``params`` or ``grads`` is not a dict of arrays, for a dtype other than float32 or
            float64, for mixed dtypes, or for another dtype than this optimiser's.
        ValueError
            If the names differ between ``params`` and ``grads`` or from the first step, for a
            shape mismatch, an empty, non-contiguous or read-only parameter, a negative or
            non-finite ``grad_scale``, a ``clip_grad_value`` <= 0, or a layout (sizes, roles)
            other than the first step's.
        """
        names, param_list, grad_list, dtype = self._checked_tensors(params, grads)
        scale = _nonnegative("grad_scale", grad_scale)
        clip_value = 0.0 if clip_grad_value is None else _positive("clip_grad_value",
                                                                   clip_grad_value)
        core = self._core_optimizer(dtype)
        core.step(param_list, grad_list, [parameter_role(name) for name in names], scale,
                  clip_value)
        if self._param_names is None:
            self._param_names = names

    def _checked_tensors(self, params, grads):
        for argument, value in (("params", params), ("grads", grads)):
            if not isinstance(value, Mapping):
                raise TypeError(
                    f"{argument} must be a dict of name -> numpy.ndarray, got "
                    f"{type(value).__name__}"
                )
        if len(params) == 0:
            raise ValueError("params is empty")
        if set(params) != set(grads):
            missing = sorted(set(params) - set(grads))
            extra = sorted(set(grads) - set(params))
            raise ValueError(
                f"grads must have the same names as params; missing {missing}, unexpected {extra}"
            )
        names = list(params) if self._param_names is None else self._param_names
        if set(names) != set(params):
            raise ValueError(
                f"params must have the names of the first step {self._param_names}, got "
                f"{sorted(params)}"
            )
        dtype = None
        param_list, grad_list = [], []
        for name in names:
            param, grad = params[name], grads[name]
            for what, array in ((f"params[{name!r}]", param), (f"grads[{name!r}]", grad)):
                if not isinstance(array, np.ndarray):
                    raise TypeError(f"{what} must be a numpy.ndarray, got {type(array).__name__}")
                if array.dtype not in FLOAT_DTYPES:
                    raise TypeError(
                        f"{what} must be float32 or float64, got dtype {array.dtype.name}"
                    )
                if dtype is None:
                    dtype = array.dtype
                elif array.dtype != dtype:
                    raise TypeError(
                        f"{what} is {array.dtype.name} but other tensors are {dtype.name}; all "
                        "parameters and gradients must share one dtype"
                    )
            if grad.shape != param.shape:
                raise ValueError(
                    f"grads[{name!r}] must have shape {shape_text(param.shape)} like the "
                    f"parameter, got {shape_text(grad.shape)}"
                )
            if param.size == 0:
                raise ValueError(f"params[{name!r}] is empty (shape {shape_text(param.shape)})")
            if not param.flags.c_contiguous:
                raise ValueError(f"params[{name!r}] must be C-contiguous (it is updated in place)")
            if not param.flags.writeable:
                raise ValueError(f"params[{name!r}] is read-only (it is updated in place)")
            param_list.append(param)
            grad_list.append(np.ascontiguousarray(grad))
        return names, param_list, grad_list, dtype

    # -- state

    def state_dict(self) -> dict:
        """The optimiser's hyperparameters and state, as plain Python values and array copies.

        Returns
        -------
        dict
            ``type`` (class name), ``options`` (the constructor's arguments, with the current
            ``lr``), ``dtype`` (``"float32"``, ``"float64"`` or None before the first use),
            ``step`` (steps taken), ``param_names`` (names from :meth:`step`, or None when a
            network drives the optimiser), ``sizes`` and ``roles`` (one per tensor, in parameter
            order) and ``state``: one dict per tensor of buffer name -> 1-D array copy (e.g.
            ``momentum_buffer``, ``sum``, ``square_avg``, ``grad_avg``, ``exp_avg``,
            ``exp_avg_sq``). Before the first step ``sizes``, ``roles`` and ``state`` are empty.
        """
        if self._core is None:
            step, sizes, roles, state = 0, [], [], []
        else:
            core_state = self._core.state()
            step, sizes, roles = core_state["step"], core_state["sizes"], core_state["roles"]
            buffers = core_state["buffers"]
            state = [{name: buffers[name][p] for name in buffers} for p in range(len(sizes))]
        return {
            "type": type(self).__name__,
            "options": dict(self._options),
            "dtype": None if self._dtype is None else self._dtype.name,
            "step": step,
            "param_names": None if self._param_names is None else list(self._param_names),
            "sizes": list(sizes),
            "roles": list(roles),
            "state": state,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Replace hyperparameters and state by those of ``state_dict`` (from :meth:`state_dict`).

        Everything is checked first; on any error nothing changes. Arrays are copied.

        Raises
        ------
        TypeError
            If ``state_dict`` or one of its entries has the wrong type, or its dtype differs
            from the one this optimiser is bound to.
        ValueError
            For missing or unexpected keys, a state of another optimiser class, invalid
            options, a negative step, inconsistent sizes, roles, names or buffers, non-finite
            buffer values (or negative sums of squares), or a layout other than the one this
            optimiser already holds state for.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        keys = set(state_dict)
        if keys != set(_STATE_DICT_KEYS):
            raise ValueError(
                f"state_dict must have the keys {sorted(_STATE_DICT_KEYS)}; missing "
                f"{sorted(set(_STATE_DICT_KEYS) - keys)}, unexpected "
                f"{sorted(keys - set(_STATE_DICT_KEYS), key=str)}"
            )
        if state_dict["type"] != type(self).__name__:
            raise ValueError(
                f"state_dict is for {state_dict['type']!r}, this optimizer is "
                f"{type(self).__name__!r}"
            )
        options = state_dict["options"]
        if not isinstance(options, Mapping):
            raise TypeError(f"state_dict['options'] must be a dict, got {type(options).__name__}")
        try:
            fresh = type(self)(**options)
        except (TypeError, ValueError) as error:
            raise type(error)(f"state_dict['options'] is invalid: {error}") from None

        step = state_dict["step"]
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral):
            raise TypeError(f"state_dict['step'] must be an integer, got {type(step).__name__}")
        step = int(step)
        if step < 0:
            raise ValueError(f"state_dict['step'] must be >= 0, got {step}")

        dtype_name = state_dict["dtype"]
        dtype = None
        if dtype_name is not None:
            if dtype_name not in ("float32", "float64"):
                raise ValueError(
                    f"state_dict['dtype'] must be 'float32', 'float64' or None, got {dtype_name!r}"
                )
            dtype = np.dtype(dtype_name)
            if self._dtype is not None and dtype != self._dtype:
                raise TypeError(
                    f"state_dict holds {dtype.name} state but this optimizer is bound to "
                    f"{self._dtype.name} parameters"
                )

        sizes, roles, state, names = self._checked_layout(state_dict, step, dtype)
        expected = _core.optimizer_buffer_names(fresh._core_options())
        for p, per_tensor in enumerate(state):
            if sorted(per_tensor) != sorted(expected):
                raise ValueError(
                    f"state_dict['state'][{p}] must hold the buffers {expected}, got "
                    f"{sorted(per_tensor, key=str)}"
                )

        if dtype is None and self._core is None:
            self._options = fresh._options
            self._param_names = names
            return
        core = self._core
        if core is None:
            core = _CORE_CLASSES[dtype](fresh._core_options())
        buffers = {name: [per_tensor[name] for per_tensor in state] for name in expected}
        if step == 0:
            buffers = {}
        core.load_state(fresh._core_options(), step, sizes, roles, buffers)
        self._options = fresh._options
        self._core = core
        self._dtype = self._dtype if dtype is None else dtype
        self._param_names = names

    def _checked_layout(self, state_dict, step: int, dtype):
        sizes, roles, state = state_dict["sizes"], state_dict["roles"], state_dict["state"]
        names = state_dict["param_names"]
        for key, value in (("sizes", sizes), ("roles", roles), ("state", state)):
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"state_dict[{key!r}] must be a list, got {type(value).__name__}")
        if step == 0 and (sizes or roles or state):
            raise ValueError("a state_dict at step 0 has no state: sizes, roles and state must be "
                             "empty")
        if step > 0:
            if dtype is None:
                raise ValueError("state_dict['dtype'] must be 'float32' or 'float64' when step > 0")
            if not sizes or not len(sizes) == len(roles) == len(state):
                raise ValueError(
                    "state_dict['sizes'], ['roles'] and ['state'] must have one entry per tensor, "
                    f"got {len(sizes)}, {len(roles)} and {len(state)}"
                )
        for p, size in enumerate(sizes):
            if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral):
                raise TypeError(f"state_dict['sizes'][{p}] must be an integer, got {size!r}")
            if size < 1:
                raise ValueError(f"state_dict['sizes'][{p}] must be >= 1, got {size}")
        for p, role in enumerate(roles):
            choice(f"state_dict['roles'][{p}]", role, ("weight", "bias", "bn_gamma", "bn_beta"))
        for p, per_tensor in enumerate(state):
            if not isinstance(per_tensor, Mapping):
                raise TypeError(
                    f"state_dict['state'][{p}] must be a dict of buffer name -> array, got "
                    f"{type(per_tensor).__name__}"
                )
            for name, values in per_tensor.items():
                where = f"state_dict['state'][{p}][{name!r}]"
                if not isinstance(values, np.ndarray) or values.dtype != dtype:
                    raise TypeError(f"{where} must be a {dtype.name} numpy.ndarray")
                if values.shape != (sizes[p],):
                    raise ValueError(
                        f"{where} must have shape ({sizes[p]},), got {shape_text(values.shape)}"
                    )
        if names is not None:
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise TypeError("state_dict['param_names'] must be None or a list of str")
            names = list(names)
            if (step > 0 and len(names) != len(sizes)) or len(set(names)) != len(names):
                raise ValueError(
                    "state_dict['param_names'] must name each tensor once, got "
                    f"{len(names)} names for {len(sizes)} tensors"
                )
            if any(parameter_role(name) != role for name, role in zip(names, roles)):
                raise ValueError("state_dict['param_names'] do not match state_dict['roles']")
        if self._param_names is not None and names is not None and names != self._param_names:
            raise ValueError(
                f"state_dict['param_names'] {names} differ from this optimizer's "
                f"{self._param_names}"
            )
        if names is None:
            names = self._param_names
        return list(sizes), list(roles), state, names


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight decay.

    The update of PyTorch's ``torch.optim.SGD``, per element, at step t:

    .. math::

        d &= g + \lambda p \\
        b &= d \text{ if } t = 1 \text{, else } \mu b + (1 - \tau) d \\
        d &= d + \mu b \text{ (Nesterov) or } b \\
        p &= p - \eta d

    with learning rate :math:`\eta` = ``lr``, momentum :math:`\mu`, dampening :math:`\tau`,
    weight decay :math:`\lambda`; without momentum, ``p = p - lr (g + weight_decay p)``.
    Note the buffer does not include the learning rate (PyTorch's convention, unlike Sutskever
    et al.), so changing ``lr`` rescales the whole step at once.

    Parameters
    ----------
    lr : float
        Learning rate, >= 0.
    momentum : float, default 0
        In [0, 1).
    dampening : float, default 0
        In [0, 1]; the fraction of the new gradient left out of the buffer.
    weight_decay : float, default 0
        L2 penalty coefficient, >= 0 (added to the gradient).
    nesterov : bool, default False
        Nesterov momentum; needs momentum > 0 and dampening = 0.

    Raises
    ------
    TypeError, ValueError
        For a hyperparameter of the wrong type or out of its range (the message names it).

    References
    ----------
    Sutskever, Martens, Dahl & Hinton (2013). On the importance of initialization and momentum
    in deep learning. ICML. Nesterov, Y. (1983). A method for solving the convex programming
    problem with convergence rate O(1/k^2).
    """

    _kind = "sgd"

    def __init__(self, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        lr = _nonnegative("lr", lr)
        momentum = _unit_interval("momentum", momentum)
        dampening = real_scalar("dampening", dampening)
        if not 0 <= dampening <= 1:
            raise ValueError(f"dampening must be in [0, 1], got {dampening}")
        weight_decay = _nonnegative("weight_decay", weight_decay)
        nesterov = _boolean("nesterov", nesterov)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "nesterov=True needs momentum > 0 and dampening = 0, got "
                f"momentum={momentum}, dampening={dampening}"
            )
        super().__init__({"lr": lr, "momentum": momentum, "dampening": dampening,
                          "weight_decay": weight_decay, "nesterov": nesterov})


class AdaGrad(Optimizer):
    r"""AdaGrad: per-element rates shrinking with the sum of squared gradients.

    The update of PyTorch's ``torch.optim.Adagrad`` at step t:

    .. math::

        d &= g + \lambda p, \qquad \tilde\eta = \eta / (1 + (t - 1) \gamma) \\
        s &= s + d^2 \\
        p &= p - \tilde\eta \, d / (\sqrt{s} + \epsilon)

    with ``s`` starting at ``initial_accumulator_value``.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate :math:`\eta`, >= 0.
    lr_decay : float, default 0
        :math:`\gamma`, >= 0.
    weight_decay : float, default 0
        :math:`\lambda`, >= 0.
    initial_accumulator_value : float, default 0
        Starting value of the sum of squares, >= 0.
    eps : float, default 1e-10
        > 0, added to the root (not under it).

    References
    ----------
    Duchi, Hazan & Singer (2011). Adaptive subgradient methods for online learning and
    stochastic optimization. JMLR 12.
    """

    _kind = "adagrad"

    def __init__(self, lr: float = 0.01, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__({
            "lr": _nonnegative("lr", lr),
            "lr_decay": _nonnegative("lr_decay", lr_decay),
            "weight_decay": _nonnegative("weight_decay", weight_decay),
            "initial_accumulator_value": _nonnegative("initial_accumulator_value",
                                                      initial_accumulator_value),
            "eps": _positive("eps", eps),
        })


class RMSProp(Optimizer):
    r"""RMSProp: gradients divided by a running root mean square, optionally centred.

    The update of PyTorch's ``torch.optim.RMSprop``:

    .. math::

        d &= g + \lambda p \\
        v &= \alpha v + (1 - \alpha) d^2 \\
        \bar g &= \bar g + (1 - \alpha)(d - \bar g)
            \text{ and } a = \sqrt{v - \bar g^2} + \epsilon \text{ (centered)},
            \text{ else } a = \sqrt{v} + \epsilon \\
        b &= \mu b + d / a, \quad p = p - \eta b \text{ (momentum > 0), else }
            p = p - \eta \, d / a

    with ``v``, :math:`\bar g` and ``b`` starting at 0.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate :math:`\eta`, >= 0.
    alpha : float, default 0.99
        Smoothing constant, in [0, 1).
    eps : float, default 1e-8
        > 0, added to the root.
    weight_decay : float, default 0
        :math:`\lambda`, >= 0.
    momentum : float, default 0
        :math:`\mu`, in [0, 1).
    centered : bool, default False
        Divide by the estimated standard deviation instead of the root mean square.

    References
    ----------
    Tieleman & Hinton (2012). Lecture 6.5, rmsprop. COURSERA: Neural Networks for Machine
    Learning. Graves (2013). Generating sequences with recurrent neural networks (centred form).
    """

    _kind = "rmsprop"

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0,
                 centered: bool = False) -> None:
        super().__init__({
            "lr": _nonnegative("lr", lr),
            "alpha": _unit_interval("alpha", alpha),
            "eps": _positive("eps", eps),
            "weight_decay": _nonnegative("weight_decay", weight_decay),
            "momentum": _unit_interval("momentum", momentum),
            "centered": _boolean("centered", centered),
        })


class Adam(Optimizer):
    r"""Adam with coupled weight decay (an L2 term added to the gradient).

    The update of PyTorch's ``torch.optim.Adam`` at step t:

    .. math::

        d &= g + \lambda p \\
        m &= \beta_1 m + (1 - \beta_1) d, \qquad v = \beta_2 v + (1 - \beta_2) d^2 \\
        p &= p - \frac{\eta}{1 - \beta_1^t} \,
            \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    with ``m`` and ``v`` starting at 0.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate :math:`\eta`, >= 0.
    betas : (float, float), default (0.9, 0.999)
        :math:`(\beta_1, \beta_2)`, each in [0, 1).
    eps : float, default 1e-8
        > 0.
    weight_decay : float, default 0
        :math:`\lambda`, >= 0 (coupled; see :class:`AdamW` for the decoupled form).

    References
    ----------
    Kingma & Ba (2015). Adam: a method for stochastic optimization. ICLR.
    """

    _kind = "adam"

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__({
            "lr": _nonnegative("lr", lr),
            "betas": _betas(betas),
            "eps": _positive("eps", eps),
            "weight_decay": _nonnegative("weight_decay", weight_decay),
        })

    def _core_options(self) -> dict:
        options = super()._core_options()
        options["beta1"], options["beta2"] = options.pop("betas")
        return options


class AdamW(Adam):
    r"""Adam with decoupled weight decay.

    The update of PyTorch's ``torch.optim.AdamW`` at step t: first
    :math:`p = p (1 - \eta \lambda)`, then Adam's update with :math:`d = g` (no L2 term):

    .. math::

        m &= \beta_1 m + (1 - \beta_1) g, \qquad v = \beta_2 v + (1 - \beta_2) g^2 \\
        p &= p - \frac{\eta}{1 - \beta_1^t} \,
            \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate :math:`\eta`, >= 0.
    betas : (float, float), default (0.9, 0.999)
        :math:`(\beta_1, \beta_2)`, each in [0, 1).
    eps : float, default 1e-8
        > 0.
    weight_decay : float, default 1e-2
        :math:`\lambda`, >= 0; the decay is scaled by ``lr`` (PyTorch's convention).

    References
    ----------
    Loshchilov & Hutter (2019). Decoupled weight decay regularization. ICLR.
    """

    _kind = "adamw"

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class LARS(Optimizer):
    r"""LARS: momentum SGD with a layer-wise learning rate set by the ratio of norms.

    For each weight tensor, with ``w`` its values and ``g`` its (clipped) gradient:

    .. math::

        \ell &= \kappa \, \frac{\lVert w \rVert}{\lVert g \rVert + \lambda \lVert w \rVert} \\
        r &= \eta \, \ell \text{ (mode="scale")}, \qquad r = \min(\eta, \ell)
            \text{ (mode="clip")} \\
        v &= \mu v + r \, (g + \lambda w), \qquad w = w - v

    with trust coefficient :math:`\kappa`, momentum :math:`\mu` (``v`` starts at 0) and weight
    decay :math:`\lambda`; when :math:`\lVert w \rVert` or :math:`\lVert g \rVert` is 0 the
    layer takes the global rate, :math:`r = \eta`. Mode ``"scale"`` is LARS (You et al.,
    Algorithm 1); mode ``"clip"`` is NVIDIA's LARC: the layer's rate may fall below the global
    rate but never rise above it. Biases and batch-norm parameters are excluded by default: they take plain momentum steps
    ``v = mu v + lr g, w = w - v`` with no weight decay. The norms are computed in float64 in a
    fixed order, the same for any number of threads.

    Parameters
    ----------
    lr : float
        Global learning rate :math:`\eta`, >= 0.
    momentum : float, default 0.9
        :math:`\mu`, in [0, 1).
    weight_decay : float, default 0
        :math:`\lambda`, >= 0.
    trust_coefficient : float, default 0.001
        :math:`\kappa`, >= 0.
    mode : {"scale", "clip"}, default "scale"
    exclude_bias_and_bn : bool, default True
        Exclude biases and batch-norm gamma/beta from the adaptation and from weight decay.

    References
    ----------
    You, Gitman & Ginsburg (2017). Large batch training of convolutional networks.
    arXiv:1708.03888. NVIDIA Apex, ``apex.parallel.LARC`` (clipping variant). Paik & Choi (2023)
    build on the clipping-from-above form.
    """

    _kind = "lars"

    def __init__(self, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, mode: str = "scale",
                 exclude_bias_and_bn: bool = True) -> None:
        super().__init__({
            "lr": _nonnegative("lr", lr),
            "momentum": _unit_interval("momentum", momentum),
            "weight_decay": _nonnegative("weight_decay", weight_decay),
            "trust_coefficient": _nonnegative("trust_coefficient", trust_coefficient),
            "mode": choice("mode", mode, ("scale", "clip")),
            "exclude_bias_and_bn": _boolean("exclude_bias_and_bn", exclude_bias_and_bn),
        })

    def _core_options(self) -> dict:
        options = super()._core_options()
        options["lars_mode"] = options.pop("mode")
        options["lars_exclude_bias_and_bn"] = options.pop("exclude_bias_and_bn")
        return options

