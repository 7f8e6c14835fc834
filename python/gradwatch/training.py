"""Mini-batch training of an :class:`~gradwatch.MLP`: ``fit``, its ``History`` and callbacks.

``fit`` checks every argument, then runs epochs of shuffled mini-batches, each batch one call of
the network's compiled ``train_step`` (forward, loss, backward, clipping and the optimiser update
in C++). Between steps it only sets the learning rate from the schedule, records the step and
calls the callbacks, so Python adds a few microseconds per step.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import numpy as np

from gradwatch._validation import choice, positive_int, positive_scalar, shape_text
from gradwatch.errors import NonFiniteError
from gradwatch.optim import Optimizer
from gradwatch.schedules import Schedule

__all__ = ["Callback", "EarlyStopping", "History", "fit"]

_HOOKS = ("on_train_begin", "on_epoch_begin", "on_step_end", "on_epoch_end", "on_train_end")


class History:
    """What :func:`fit` recorded, step by step and epoch by epoch.

    Attributes
    ----------
    step_loss : list of float
        Training loss of each optimiser step (the batch mean, in training mode: batch
        statistics and dropout).
    step_lr : list of float
        Learning rate each step used (after the schedule).
    step_grad_norm : list of float
        Global L2 norm of all gradients of each step, before clipping.
    epoch_loss : list of float
        Per epoch, the mean of its step losses weighted by batch size (the objective as it was
        optimised during the epoch); NaN when every batch of the epoch was skipped.
    epoch_accuracy : list of float
        Per epoch, for classification losses, the accuracy on the whole training set at the
        end of the epoch, in inference mode (running statistics, no dropout). Empty for ``mse``.
    val_loss, val_accuracy : list of float
        Per epoch, loss and (classification only) accuracy on ``validation_data`` in inference
        mode. Empty without validation data.
    skipped_batches : int
        Batches skipped with ``on_nonfinite="skip"`` because their loss or a gradient was not
        finite (no step was taken for them).
    epochs : int
        Epochs completed.
    stopped_early : bool
        Whether a callback stopped training before the last epoch.
    """

    def __init__(self) -> None:
        self.step_loss: list[float] = []
        self.step_lr: list[float] = []
        self.step_grad_norm: list[float] = []
        self.epoch_loss: list[float] = []
        self.epoch_accuracy: list[float] = []
        self.val_loss: list[float] = []
        self.val_accuracy: list[float] = []
        self.skipped_batches = 0
        self.epochs = 0
        self.stopped_early = False

    @property
    def steps(self) -> int:
        """Optimiser steps taken."""
        return len(self.step_loss)

    def to_dict(self) -> dict:
        """Everything recorded, as plain lists, floats, ints and bools (JSON-serialisable)."""
        return {
            "step_loss": list(self.step_loss),
            "step_lr": list(self.step_lr),
            "step_grad_norm": list(self.step_grad_norm),
            "epoch_loss": list(self.epoch_loss),
            "epoch_accuracy": list(self.epoch_accuracy),
            "val_loss": list(self.val_loss),
            "val_accuracy": list(self.val_accuracy),
            "skipped_batches": self.skipped_batches,
            "epochs": self.epochs,
            "stopped_early": self.stopped_early,
        }

    def __repr__(self) -> str:
        last = f", loss={self.epoch_loss[-1]:.6g}" if self.epoch_loss else ""
        return f"History(epochs={self.epochs}, steps={self.steps}{last})"


class Callback:
    """Base class for callbacks (optional: any object with some of these methods works).

    :func:`fit` calls, when the callback has them:

    - ``on_train_begin(logs)`` once, before the first epoch, with ``logs = {}``;
    - ``on_epoch_begin(epoch, logs)`` with ``logs = {}``;
    - ``on_step_end(step, logs)`` after every optimiser step, ``step`` counting steps of this
      ``fit`` from 0, ``logs = {"epoch", "batch", "loss", "lr", "grad_norm"}`` (skipped batches
      take no step and call nothing);
    - ``on_epoch_end(epoch, logs)`` with ``logs = {"loss"}`` plus ``"accuracy"`` for
      classification and ``"val_loss"`` (and ``"val_accuracy"``) with validation data, the
      values just appended to the :class:`History`;
    - ``on_train_end(logs)`` once at the end, ``logs = {"epochs", "steps"}`` (not called when
      an exception ends training).

    **Stopping**: ``on_step_end`` or ``on_epoch_end`` returning ``True`` stops training after
    that step (resp. epoch); every other callback of that moment is still called. Returning
    ``None`` or ``False`` continues; any other return value is a TypeError.
    """


class EarlyStopping(Callback):
    """Stop when a monitored epoch value has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A key of the epoch logs: ``"loss"``, ``"accuracy"``, ``"val_loss"`` or
        ``"val_accuracy"``; :func:`fit` rejects one its logs will not have.
    patience : int, default 5
        Epochs without improvement tolerated, >= 1; training stops at the ``patience``-th.
    min_delta : float, default 0.0
        Smallest change that counts as an improvement, >= 0.
    mode : {"auto", "min", "max"}, default "auto"
        Whether smaller or larger is better; ``"auto"`` means larger for accuracies and
        smaller otherwise.

    Attributes
    ----------
    best : float
        The best value seen (reset by each ``fit``).
    best_epoch : int or None
        The epoch (from 0) of that value.
    stopped_epoch : int or None
        The epoch after which training was stopped, None if it was not.

    A NaN value never counts as an improvement.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 mode: str = "auto") -> None:
        self.monitor = choice("monitor", monitor, ("loss", "accuracy", "val_loss",
                                                   "val_accuracy"))
        self.patience = positive_int("patience", patience)
        if isinstance(min_delta, (bool, np.bool_)) or not isinstance(min_delta, numbers.Real):
            raise TypeError(f"min_delta must be a real number, got {type(min_delta).__name__}")
        if not (math.isfinite(min_delta) and min_delta >= 0):
            raise ValueError(f"min_delta must be finite and >= 0, got {min_delta}")
        self.min_delta = float(min_delta)
        mode = choice("mode", mode, ("auto", "min", "max"))
        if mode == "auto":
            mode = "max" if self.monitor.endswith("accuracy") else "min"
        self.mode = mode
        self.on_train_begin({})

    def on_train_begin(self, logs: dict) -> None:
        self.best = -math.inf if self.mode == "max" else math.inf
        self.best_epoch: Optional[int] = None
        self.stopped_epoch: Optional[int] = None
        self._waited = 0

    def on_epoch_end(self, epoch: int, logs: dict) -> bool:
        value = logs[self.monitor]
        if self.mode == "max":
            improved = value > self.best + self.min_delta
        else:
            improved = value < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self._waited = value, epoch, 0
            return False
        self._waited += 1
        if self._waited >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, mode={self.mode!r})")


# --- argument checks ---------------------------------------------------------------------------


def _features(net, name: str, x) -> np.ndarray:
    """``x`` as a C-contiguous (N, D) array of the network's dtype."""
    dtype = net.dtype
    if isinstance(x, np.ndarray):
        if x.dtype != dtype:
            raise TypeError(
                f"{name} must be a {dtype.name} array like the network, got dtype "
                f"{x.dtype.name}; convert with .astype(np.{dtype.name})"
            )
    else:
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be array-like of numbers: {error}") from None
        if x.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {x.dtype.name}")
        x = x.astype(dtype)
    features = net.layer_sizes[0]
    if x.ndim != 2 or x.shape[1] != features:
        raise ValueError(
            f"{name} must have shape (N, {features}) (N samples of {features} features), got "
            f"{shape_text(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {shape_text(x.shape)})")
    return np.ascontiguousarray(x)


def _targets(net, name: str, y, count: int) -> np.ndarray:
    """``y`` in the form ``train_step`` takes: int64 labels (N) or (N, C) of the net's dtype."""
    outputs = net.layer_sizes[-1]
    if not isinstance(y, np.ndarray):
        try:
            y = np.asarray(y)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be array-like of numbers: {error}") from None
    if net.loss == "softmax_cross_entropy":
        if y.dtype.kind not in "iu":
            raise TypeError(
                f"{name} must hold integer class indices for softmax_cross_entropy, got dtype "
                f"{y.dtype.name}"
            )
        if y.shape != (count,):
            raise ValueError(
                f"{name} must have shape ({count},) (one class index per sample of x), got "
                f"{shape_text(y.shape)}"
            )
        if count and (y.min() < 0 or y.max() >= outputs):
            raise ValueError(
                f"{name} must hold class indices in [0, {outputs}), got values in "
                f"[{y.min()}, {y.max()}]"
            )
        return np.ascontiguousarray(y, dtype=np.int64)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {y.dtype.name}")
    if outputs == 1 and y.shape == (count,):
        y = y.reshape(count, 1)
    if y.shape != (count, outputs):
        raise ValueError(
            f"{name} must have shape ({count}, {outputs}) (one row of {outputs} targets per "
            f"sample of x), got {shape_text(y.shape)}"
        )
    return np.ascontiguousarray(y, dtype=net.dtype)


def _optional_positive(name: str, value) -> Optional[float]:
    return None if value is None else positive_scalar(name, value)


def _seed(value) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"seed must be an integer or None, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"seed must be >= 0, got {value}")
    return int(value)


def _callbacks(callbacks, log_keys: set) -> list:
    if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(
            f"callbacks must be a sequence of callback objects, got {type(callbacks).__name__}"
        )
    result = list(callbacks)
    for index, callback in enumerate(result):
        hooks = [hook for hook in _HOOKS if hasattr(callback, hook)]
        if not hooks:
            raise TypeError(
                f"callbacks[{index}] ({type(callback).__name__}) has none of the methods "
                f"{', '.join(_HOOKS)}"
            )
        for hook in hooks:
            if not callable(getattr(callback, hook)):
                raise TypeError(f"callbacks[{index}].{hook} must be callable")
        if isinstance(callback, EarlyStopping) and callback.monitor not in log_keys:
            reason = ("it needs validation_data" if callback.monitor.startswith("val_")
                      else "the mse loss has no accuracy")
            raise ValueError(
                f"callbacks[{index}] monitors {callback.monitor!r}, which this fit does not "
                f"record ({reason}); it records {sorted(log_keys)}"
            )
    return result


def _call(callbacks: list, hook: str, *arguments) -> bool:
    """Call ``hook`` of every callback that has it; True if one of them asks to stop."""
    stop = False
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is None:
            continue
        result = method(*arguments)
        if result is None or result is False:
            continue
        if result is True:
            stop = True
            continue
        raise TypeError(
            f"{type(callback).__name__}.{hook} must return None, False or True (to stop "
            f"training), got {result!r}"
        )
    return stop


def _progress_bar(enabled: bool, total: int):
    """A tqdm bar, or None when progress is off or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="step", dynamic_ncols=True)


def _evaluation(net, x: np.ndarray, y: np.ndarray) -> tuple[float, Optional[float]]:
    result = net.evaluate(x, y)
    return float(result["loss"]), (None if result.get("accuracy") is None
                                   else float(result["accuracy"]))


def _batches(count: int, batch_size: int, drop_single: bool) -> list[tuple[int, int]]:
    """[start, stop) ranges of the batches of an epoch."""
    bounds = [(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
    if drop_single and bounds[-1][1] - bounds[-1][0] == 1:
        bounds.pop()
    return bounds


# --- fit ---------------------------------------------------------------------------------------


def fit(net, x, y, *, optimizer, epochs, batch_size, schedule=None, validation_data=None,
        shuffle=True, seed=None, progress=True, callbacks=(), clip_grad_norm=None,
        clip_grad_value=None, on_nonfinite="raise") -> History:
    """Train ``net`` on ``(x, y)`` by mini-batch steps; ``MLP.fit`` calls this.

    Each epoch visits the samples in a fresh random order (or in order with
    ``shuffle=False``), cut into batches of ``batch_size``; each batch is one
    :meth:`MLP.train_step`. The last, smaller batch of an epoch is used too, except when it
    holds a single sample and the network has batch norm (batch statistics need two samples):
    then it is left out of that epoch.

    Parameters
    ----------
    net : gradwatch.MLP
    x : array_like, shape (N, D)
        Inputs. A NumPy array must have the network's dtype (it is never cast silently); lists
        are converted.
    y : array_like
        Targets: class indices (N) of any integer dtype for ``softmax_cross_entropy``;
        otherwise values (N, C) (or (N) when C = 1), converted to the network's dtype.
    optimizer : gradwatch.optim.Optimizer
        Bound to the network's dtype on the first step; its state carries over between calls.
    epochs : int
        Passes over the data, >= 1.
    batch_size : int
        Samples per step, >= 1 (>= 2 with batch norm); larger than N means one batch of N.
    schedule : gradwatch.schedules.Schedule, optional
        Before step ``t`` of this call (t = 0, 1, ...), ``optimizer.lr = schedule(t,
        base_lr)`` with ``base_lr`` the optimiser's ``lr`` when ``fit`` starts; ``optimizer.lr``
        is set back to ``base_lr`` when ``fit`` returns or raises, so each call runs the whole
        schedule again. Without a schedule the rate stays ``optimizer.lr``.
    validation_data : (x_val, y_val), optional
        Evaluated after every epoch (inference mode), same conventions as ``x`` and ``y``.
    shuffle : bool, default True
        Visit the samples in a new random order every epoch.
    seed : int, optional
        Seed of the NumPy ``Generator`` that shuffles: the same seed gives the same orders
        (``numpy.random.default_rng(seed).permutation(N)`` per epoch). None: fresh entropy.
    progress : bool, default True
        Show a tqdm progress bar (epoch, step, loss) when tqdm is installed (the ``progress``
        extra); without tqdm, training runs silently.
    callbacks : sequence of callback objects
        See :class:`Callback` for the methods called and how one stops training.
    clip_grad_norm : float, optional
        Scale all gradients by ``min(1, clip_grad_norm / (norm + 1e-6))`` (> 0).
    clip_grad_value : float, optional
        Then clamp each gradient element to ``[-clip_grad_value, clip_grad_value]`` (> 0).
    on_nonfinite : {"raise", "skip"}, default "raise"
        When a batch gives a NaN or infinite loss or gradient (``gradwatch.NonFiniteError``,
        nothing changed by that step): re-raise it, or skip the batch and count it in
        ``History.skipped_batches``.

    Returns
    -------
    History

    Raises
    ------
    TypeError, ValueError
        For any invalid argument, before anything is trained.
    gradwatch.NonFiniteError
        With ``on_nonfinite="raise"``, from the first non-finite step (earlier steps stay
        applied).
    """
    from gradwatch.network import MLP  # here: network imports this module

    if not isinstance(net, MLP):
        raise TypeError(f"net must be a gradwatch.MLP, got {type(net).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer must be a gradwatch.optim.Optimizer (e.g. optim.SGD(lr=0.1)), got "
            f"{type(optimizer).__name__}"
        )
    if optimizer.dtype is not None and optimizer.dtype != net.dtype:
        raise TypeError(
            f"optimizer is bound to {optimizer.dtype.name} parameters but the network is "
            f"{net.dtype.name}; create a new optimizer"
        )
    epochs = positive_int("epochs", epochs)
    batch_size = positive_int("batch_size", batch_size)
    if schedule is not None and not isinstance(schedule, Schedule):
        raise TypeError(
            f"schedule must be a gradwatch.schedules.Schedule or None, got "
            f"{type(schedule).__name__}"
        )
    for flag_name, flag in (("shuffle", shuffle), ("progress", progress)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{flag_name} must be True or False, got {type(flag).__name__}")
    seed = _seed(seed)
    clip_grad_norm = _optional_positive("clip_grad_norm", clip_grad_norm)
    clip_grad_value = _optional_positive("clip_grad_value", clip_grad_value)
    choice("on_nonfinite", on_nonfinite, ("raise", "skip"))

    x = _features(net, "x", x)
    count = x.shape[0]
    y = _targets(net, "y", y, count)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (x_val, y_val)")
        x_val = _features(net, "validation_data[0]", validation_data[0])
        y_val = _targets(net, "validation_data[1]", validation_data[1], x_val.shape[0])

    has_batchnorm = net.batchnorm
    if has_batchnorm and min(batch_size, count) < 2:
        raise ValueError(
            f"batch norm needs batches of at least 2 samples; got batch_size={batch_size} and "
            f"{count} sample(s) in x"
        )
    classification = net.loss != "mse"
    log_keys = {"loss"} | ({"accuracy"} if classification else set())
    if validation_data is not None:
        log_keys |= {"val_" + key for key in log_keys}
    callbacks = _callbacks(callbacks, log_keys)

    batches = _batches(count, batch_size, drop_single=has_batchnorm)
    rng = np.random.default_rng(seed)
    base_lr = optimizer.lr
    history = History()
    bar = _progress_bar(bool(progress), epochs * len(batches))
    try:
        _call(callbacks, "on_train_begin", {})
        stop = False
        for epoch in range(epochs):
            _call(callbacks, "on_epoch_begin", epoch, {})
            order = rng.permutation(count) if shuffle else None
            loss_sum, loss_samples = 0.0, 0
            for batch, (start, stop_index) in enumerate(batches):
                if order is None:
                    x_batch, y_batch = x[start:stop_index], y[start:stop_index]
                else:
                    rows = order[start:stop_index]
                    x_batch, y_batch = x[rows], y[rows]
                step = history.steps
                if schedule is not None:
                    optimizer.lr = schedule(step, base_lr)
                lr = optimizer.lr
                try:
                    loss, grad_norm = net.train_step(x_batch, y_batch, optimizer,
                                                     clip_grad_norm=clip_grad_norm,
                                                     clip_grad_value=clip_grad_value)
                except NonFiniteError:
                    if on_nonfinite == "raise":
                        raise
                    history.skipped_batches += 1
                    if bar is not None:
                        bar.update(1)
                    continue
                history.step_loss.append(loss)
                history.step_lr.append(lr)
                history.step_grad_norm.append(grad_norm)
                loss_sum += loss * (stop_index - start)
                loss_samples += stop_index - start
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"epoch {epoch + 1}/{epochs}, loss {loss:.4g}",
                                        refresh=False)
                logs = {"epoch": epoch, "batch": batch, "loss": loss, "lr": lr,
                        "grad_norm": grad_norm}
                if _call(callbacks, "on_step_end", step, logs):
                    stop = True
                    break
            logs = _epoch_logs(net, history, loss_sum, loss_samples, x, y,
                               None if validation_data is None else (x_val, y_val))
            history.epochs += 1
            if _call(callbacks, "on_epoch_end", epoch, logs):
                stop = True
            if stop:
                history.stopped_early = epoch < epochs - 1 or batch < len(batches) - 1
                break
        _call(callbacks, "on_train_end", {"epochs": history.epochs, "steps": history.steps})
    finally:
        optimizer.lr = base_lr
        if bar is not None:
            bar.close()
    return history


def _epoch_logs(net, history: History, loss_sum: float, loss_samples: int, x, y,
                validation) -> dict:
    """Append the epoch's values to ``history`` and return them as the epoch logs."""
    epoch_loss = loss_sum / loss_samples if loss_samples else math.nan
    history.epoch_loss.append(epoch_loss)
    logs = {"loss": epoch_loss}
    if net.loss != "mse":
        _, accuracy = _evaluation(net, x, y)
        history.epoch_accuracy.append(accuracy)
        logs["accuracy"] = accuracy
    if validation is not None:
        val_loss, val_accuracy = _evaluation(net, *validation)
        history.val_loss.append(val_loss)
        logs["val_loss"] = val_loss
        if val_accuracy is not None:
            history.val_accuracy.append(val_accuracy)
            logs["val_accuracy"] = val_accuracy
    return logs
