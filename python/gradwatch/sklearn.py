"""scikit-learn estimators around :class:`gradwatch.MLP`: ``MLPClassifier`` and ``MLPRegressor``.

They follow scikit-learn's conventions (parameters stored untouched by ``__init__`` and checked in
``fit``, ``fit`` returns ``self``, fitted attributes end in ``_``, ``validate_data`` for inputs)
and pass ``sklearn.utils.estimator_checks.check_estimator``. scikit-learn is an optional
dependency (``pip install gradwatch[sklearn]``); ``import gradwatch`` never imports it, and
``gradwatch.sklearn`` imports it on first use.

Both train for exactly ``max_iter`` epochs (there is no tolerance-based stop, hence no
``ConvergenceWarning``) with :func:`gradwatch.training.fit`.
"""

from __future__ import annotations

import io
import numbers

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "gradwatch.sklearn needs scikit-learn: pip install 'gradwatch[sklearn]'"
    ) from error

from gradwatch import optim
from gradwatch._validation import positive_int, positive_scalar
from gradwatch.io import load, save
from gradwatch.loss import softmax
from gradwatch.network import MLP
from gradwatch.training import fit

__all__ = ["MLPClassifier", "MLPRegressor"]

SOLVERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "lars")
_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def _optimizer(solver: str, learning_rate, momentum, weight_decay) -> optim.Optimizer:
    if solver == "sgd":
        return optim.SGD(lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    if solver == "lars":
        return optim.LARS(lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    classes = {"adam": optim.Adam, "adamw": optim.AdamW, "rmsprop": optim.RMSProp,
               "adagrad": optim.AdaGrad}
    if solver not in classes:
        valid = ", ".join(repr(name) for name in SOLVERS)
        raise ValueError(f"solver must be one of {valid}, got {solver!r}")
    return classes[solver](lr=learning_rate, weight_decay=weight_decay)


def _hidden_sizes(value) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        value = (value,)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"hidden_layer_sizes must be an int or a sequence of ints, got {type(value).__name__}"
        )
    sizes = tuple(value)
    for size in sizes:
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral):
            raise TypeError(f"hidden_layer_sizes must hold ints, got {size!r}")
        if size < 1:
            raise ValueError(f"hidden_layer_sizes must hold ints >= 1, got {size}")
    return tuple(int(size) for size in sizes)


class _BaseMLP(BaseEstimator):
    """Shared parameters, fitting and pickling; subclasses set the loss and the targets."""

    _loss = ""

    def __init__(self, hidden_layer_sizes=(100,), *, activation="relu", init="he_normal",
                 batchnorm=False, dropout=0.0, solver="adam", learning_rate=1e-3,
                 momentum=0.9, weight_decay=0.0, batch_size="auto", max_iter=200,
                 shuffle=True, random_state=None, dtype="float32", verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.init = init
        self.batchnorm = batchnorm
        self.dropout = dropout
        self.solver = solver
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose

    def _checked_dtype(self) -> np.dtype:
        try:
            dtype = None if self.dtype is None else np.dtype(self.dtype)
        except TypeError:
            dtype = None
        # (not `dtype in ...` alone: NumPy compares a dtype equal to None, as float64)
        if dtype is None or dtype not in _DTYPES.values():
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        return dtype

    def _batch_size(self, samples: int) -> int:
        if isinstance(self.batch_size, str) and self.batch_size == "auto":
            return min(200, samples)
        if (isinstance(self.batch_size, (bool, np.bool_))
                or not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1):
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}")
        return min(int(self.batch_size), samples)

    def _fit_network(self, X: np.ndarray, targets: np.ndarray, outputs: int):
        """Check the parameters, build a network, train it for ``max_iter`` epochs on checked
        inputs; then (only then) set the fitted attributes."""
        epochs = positive_int("max_iter", self.max_iter)
        learning_rate = positive_scalar("learning_rate", self.learning_rate)
        if not isinstance(self.verbose, (bool, np.bool_)):
            raise TypeError(f"verbose must be True or False, got {type(self.verbose).__name__}")
        rng = check_random_state(self.random_state)
        net_seed, shuffle_seed = (int(seed) for seed in rng.randint(0, 2**31 - 1, size=2))
        net = MLP(
            (X.shape[1], *_hidden_sizes(self.hidden_layer_sizes), outputs),
            activation=self.activation,
            init=self.init,
            batchnorm=self.batchnorm,
            dropout=self.dropout,
            loss=self._loss,
            dtype=X.dtype,
            seed=net_seed,
        )
        optimizer = _optimizer(self.solver, learning_rate, self.momentum, self.weight_decay)
        history = fit(net, X, targets, optimizer=optimizer, epochs=epochs,
                      batch_size=self._batch_size(X.shape[0]), shuffle=self.shuffle,
                      seed=shuffle_seed, progress=self.verbose)
        self.net_ = net
        self.history_ = history
        self.loss_curve_ = list(history.epoch_loss)
        self.loss_ = history.epoch_loss[-1]
        self.n_iter_ = history.epochs
        self.t_ = history.steps
        self.n_outputs_ = outputs

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self.net_.dtype)
        return self.net_.forward(X).astype(np.float64)

    # The compiled network does not pickle: pickles hold it as the bytes of MLP.save.
    def __getstate__(self):
        state = dict(super().__getstate__())
        if "net_" in state:
            buffer = io.BytesIO()
            save(state["net_"], buffer)
            state["net_"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        state = dict(state)
        if isinstance(state.get("net_"), bytes):
            state["net_"] = load(io.BytesIO(state["net_"]))
        super().__setstate__(state)


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (100,)
        Width of each hidden layer.
    activation : str or sequence of str, default "relu"
        Hidden activation, one for all or one per hidden layer (see ``gradwatch.MLP``).
    init : str, float or sequence, default "he_normal"
        Weight initialisation (see ``gradwatch.MLP``).
    batchnorm : bool, default False
        Batch norm after every hidden dense layer (needs batches of 2 or more samples).
    dropout : float or sequence of float, default 0.0
        Inverted dropout probability after each hidden activation.
    solver : {"sgd", "adam", "adamw", "rmsprop", "adagrad", "lars"}, default "adam"
        The optimiser (``gradwatch.optim``), with its defaults apart from the arguments below.
    learning_rate : float, default 1e-3
        The optimiser's ``lr``.
    momentum : float, default 0.9
        Momentum of "sgd" and "lars" (the others do not use it).
    weight_decay : float, default 0.0
        The optimiser's ``weight_decay`` (an L2 term, decoupled for "adamw").
    batch_size : int or "auto", default "auto"
        Samples per step; "auto" is ``min(200, n_samples)``; larger than ``n_samples`` means
        one batch of all samples.
    max_iter : int, default 200
        Epochs: passes over the training data (exactly this many).
    shuffle : bool, default True
        Shuffle the samples every epoch.
    random_state : int, RandomState instance or None, default None
        Seeds the weights, dropout and shuffling; an int makes ``fit`` deterministic.
    dtype : {"float32", "float64"}, default "float32"
        Precision of the network; inputs are converted to it.
    verbose : bool, default False
        Show a progress bar (needs tqdm).
"""

_ATTRIBUTES_DOC = """
    net_ : gradwatch.MLP
        The trained network.
    history_ : gradwatch.training.History
        Per-step and per-epoch records of the training.
    loss_ : float
        Training loss of the last epoch.
    loss_curve_ : list of float
        Training loss of each epoch (mean over its batches).
    n_iter_ : int
        Epochs run.
    t_ : int
        Optimiser steps taken.
    n_outputs_ : int
        Outputs of the network.
    n_features_in_ : int
        Features seen in ``fit``.
    feature_names_in_ : ndarray of str
        Column names seen in ``fit``, when ``X`` had string column names.
"""


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = (
        "Multilayer perceptron classifier trained by gradwatch (softmax cross-entropy).\n\n"
        "    Labels may be of any type: they are mapped to ``classes_`` (sorted). Binary problems\n"
        "    use two softmax outputs. At least two classes are needed.\n"
        + _PARAMETERS_DOC
        + "\n    Attributes\n    ----------\n    classes_ : ndarray\n        The class labels.\n"
        + _ATTRIBUTES_DOC
    )

    _loss = "softmax_cross_entropy"

    def fit(self, X, y):
        """Train on ``X`` (n_samples, n_features) and labels ``y`` (n_samples,); returns self."""
        dtype = self._checked_dtype()
        X, y = validate_data(self, X, y, dtype=dtype)
        check_classification_targets(y)
        classes, labels = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                f"MLPClassifier needs samples of at least 2 classes, got 1 class ({classes[0]!r})"
            )
        self._fit_network(X, labels.astype(np.int64), len(classes))
        self.classes_ = classes
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n_samples, n_classes), float64, columns in ``classes_`` order."""
        return softmax(self._logits(X))

    def predict(self, X) -> np.ndarray:
        """The most probable class of each sample, from ``classes_``."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(proba, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = (
        "Multilayer perceptron regressor trained by gradwatch (mean squared error).\n\n"
        "    ``y`` may be 1-D (one target) or 2-D (n_samples, n_targets); predictions have the\n"
        "    same number of dimensions, in float64. Scale the targets: the loss is the plain\n"
        "    mean of squared errors.\n"
        + _PARAMETERS_DOC
        + "\n    Attributes\n    ----------\n"
        + _ATTRIBUTES_DOC
    )

    _loss = "mse"

    def fit(self, X, y):
        """Train on ``X`` (n_samples, n_features) and ``y`` (n_samples,) or (n_samples,
        n_targets); returns self."""
        dtype = self._checked_dtype()
        X, y = validate_data(self, X, y, dtype=dtype, multi_output=True, y_numeric=True)
        targets = np.ascontiguousarray(y.reshape(len(y), -1), dtype=dtype)
        self._fit_network(X, targets, targets.shape[1])
        self._single_target = y.ndim == 1
        return self

    def predict(self, X) -> np.ndarray:
        """Predictions (n_samples,) or (n_samples, n_targets) like ``y`` in fit, float64."""
        outputs = self._logits(X)
        return outputs[:, 0] if self._single_target else outputs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
