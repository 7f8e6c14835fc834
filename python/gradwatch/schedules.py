"""Learning-rate schedules: constant, step, exponential, cosine, and linear warmup around any of them.

A schedule is a callable ``schedule(step, base_lr) -> lr`` for step = 0, 1, 2, ... (the number of
optimiser steps already taken); ``fit`` calls it before every step and sets ``optimizer.lr``.
Schedules hold no state and their arguments are read-only, so one schedule can serve several
optimisers (a default ``Constant()`` can be shared) and runs can be resumed from any step.
"""

from __future__ import annotations

import abc
import math
import numbers

import numpy as np

from gradwatch._validation import positive_int, real_scalar

__all__ = ["Constant", "Cosine", "Exponential", "LinearWarmup", "Schedule", "Step"]


def _decay_factor(name: str, value: object) -> float:
    """A float in (0, 1]."""
    result = real_scalar(name, value)
    if not 0 < result <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {result}")
    return result


class Schedule(abc.ABC):
    """Base class: ``schedule(step, base_lr)`` checks its arguments and returns ``_lr(...)``.

    Subclasses pass their validated arguments to ``Schedule.__init__``; they are then readable
    as attributes of the same names, and no attribute can be set afterwards.
    """

    def __init__(self, **arguments) -> None:
        object.__setattr__(self, "_values", arguments)

    def __getattr__(self, name: str):
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(
            f"{type(self).__name__} is read-only; create a new schedule to change {name!r}"
        )

    def __call__(self, step: int, base_lr: float) -> float:
        """The learning rate for ``step`` (0 for the first optimiser step).

        Parameters
        ----------
        step : int
            Optimiser steps taken so far, >= 0.
        base_lr : float
            The optimiser's base learning rate, finite and >= 0.

        Returns
        -------
        float

        Raises
        ------
        TypeError
            If ``step`` is not an integer or ``base_lr`` not a real number.
        ValueError
            If ``step < 0``, or ``base_lr`` is negative or not finite.
        """
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral):
            raise TypeError(f"step must be an integer, got {type(step).__name__}")
        step = int(step)
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        base = real_scalar("base_lr", base_lr)
        if base < 0:
            raise ValueError(f"base_lr must be >= 0, got {base}")
        return float(self._lr(step, base))

    @abc.abstractmethod
    def _lr(self, step: int, base_lr: float) -> float:
        """The rate for a checked step and base rate."""

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self._values.items())
        return f"{type(self).__name__}({arguments})"


class Constant(Schedule):
    """The base learning rate at every step: ``lr(t) = base_lr``."""

    def __init__(self) -> None:
        super().__init__()

    def _lr(self, step: int, base_lr: float) -> float:
        return base_lr


class Step(Schedule):
    r"""Multiply the rate by ``gamma`` every ``step_size`` steps (PyTorch's ``StepLR``).

    .. math:: \mathrm{lr}(t) = \mathrm{base\_lr} \cdot \gamma^{\lfloor t / \mathrm{step\_size} \rfloor}

    Parameters
    ----------
    step_size : int
        Steps between decays, >= 1.
    gamma : float, default 0.1
        Decay factor, in (0, 1].

    Raises
    ------
    TypeError, ValueError
        For a ``step_size`` that is not an integer >= 1 or a ``gamma`` outside (0, 1].
    """

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(step_size=positive_int("step_size", step_size),
                         gamma=_decay_factor("gamma", gamma))

    def _lr(self, step: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (step // self.step_size)


class Exponential(Schedule):
    r"""Multiply the rate by ``gamma`` every step (PyTorch's ``ExponentialLR``).

    .. math:: \mathrm{lr}(t) = \mathrm{base\_lr} \cdot \gamma^{t}

    Parameters
    ----------
    gamma : float
        Decay factor per step, in (0, 1].

    Raises
    ------
    TypeError, ValueError
        For a ``gamma`` that is not a real number in (0, 1].
    """

    def __init__(self, gamma: float) -> None:
        super().__init__(gamma=_decay_factor("gamma", gamma))

    def _lr(self, step: int, base_lr: float) -> float:
        return base_lr * self.gamma**step


class Cosine(Schedule):
    r"""Cosine annealing from ``base_lr`` to ``min_lr`` over ``total_steps``, then ``min_lr``.

    .. math::

        \mathrm{lr}(t) = \mathrm{min\_lr} + \tfrac12 (\mathrm{base\_lr} - \mathrm{min\_lr})
            \left(1 + \cos\left(\pi \, \frac{\min(t, T)}{T}\right)\right), \qquad
            T = \mathrm{total\_steps}

    (the closed form of PyTorch's ``CosineAnnealingLR`` for one half period, without restarts).

    Parameters
    ----------
    total_steps : int
        Length of the annealing, >= 1.
    min_lr : float, default 0.0
        Final rate, finite and >= 0.

    Raises
    ------
    TypeError, ValueError
        For a ``total_steps`` that is not an integer >= 1 or a negative or non-finite ``min_lr``.

    References
    ----------
    Loshchilov & Hutter (2017). SGDR: stochastic gradient descent with warm restarts. ICLR.
    """

    def __init__(self, total_steps: int, min_lr: float = 0.0) -> None:
        total_steps = positive_int("total_steps", total_steps)
        min_lr = real_scalar("min_lr", min_lr)
        if min_lr < 0:
            raise ValueError(f"min_lr must be >= 0, got {min_lr}")
        super().__init__(total_steps=total_steps, min_lr=min_lr)

    def _lr(self, step: int, base_lr: float) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


class LinearWarmup(Schedule):
    r"""Ramp the rate up linearly over ``warmup_steps``, then run another schedule from its step 0.

    .. math::

        \mathrm{lr}(t) = \begin{cases}
            \mathrm{base\_lr} \left(s + (1 - s) \, t / W\right) & t < W \\
            \mathrm{after}(t - W, \mathrm{base\_lr}) & t \ge W
        \end{cases}

    with :math:`W` = ``warmup_steps`` and :math:`s` = ``start_factor``: the first step uses
    ``start_factor * base_lr`` and the rate reaches ``base_lr`` at step ``warmup_steps``, where
    the wrapped schedule starts (at its own step 0, so e.g. a wrapped ``Cosine(total_steps=T)``
    anneals over the T steps after the warmup).

    Parameters
    ----------
    warmup_steps : int
        Length of the warmup, >= 1.
    after : Schedule, default Constant()
        The schedule that follows.
    start_factor : float, default 1/3
        Fraction of ``base_lr`` at step 0, in [0, 1] (PyTorch's ``LinearLR`` default).

    Raises
    ------
    TypeError, ValueError
        For a ``warmup_steps`` that is not an integer >= 1, an ``after`` that is not a
        :class:`Schedule`, or a ``start_factor`` outside [0, 1].

    References
    ----------
    Goyal, Dollar, Girshick, Noordhuis, Wesolowski, Kyrola, Tulloch, Jia & He (2017). Accurate,
    large minibatch SGD: training ImageNet in 1 hour. arXiv:1706.02677 (gradual warmup, sec. 2.2).
    """

    def __init__(self, warmup_steps: int, after: Schedule = Constant(),
                 start_factor: float = 1.0 / 3.0) -> None:
        warmup_steps = positive_int("warmup_steps", warmup_steps)
        if not isinstance(after, Schedule):
            raise TypeError(
                f"after must be a gradwatch.schedules.Schedule, got {type(after).__name__}"
            )
        start_factor = real_scalar("start_factor", start_factor)
        if not 0 <= start_factor <= 1:
            raise ValueError(f"start_factor must be in [0, 1], got {start_factor}")
        super().__init__(warmup_steps=warmup_steps, after=after, start_factor=start_factor)

    def _lr(self, step: int, base_lr: float) -> float:
        if step < self.warmup_steps:
            fraction = step / self.warmup_steps
            return base_lr * (self.start_factor + (1.0 - self.start_factor) * fraction)
        return self.after(step - self.warmup_steps, base_lr)
