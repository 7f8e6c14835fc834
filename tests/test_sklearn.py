"""gradwatch.sklearn: scikit-learn's estimator checks, labels, targets, solvers, pickling,
parameter errors, and that ``import gradwatch`` does not import scikit-learn."""

import pickle
import subprocess
import sys

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import gradwatch  # noqa: E402
from gradwatch.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")

# Small networks and a higher rate than the defaults keep the checks to a few seconds; the
# checks' accuracy and R^2 thresholds are still met. Both dtypes run every check but one:
# check_methods_subset_invariance wants predictions of single rows equal to those of the whole
# batch within 1e-7, below float32's resolution, and float32 GEMMs of 1 and of 20 rows round
# differently by an ulp or two. float64 runs it; float32 gets the same check at its own
# resolution in test_float32_predictions_do_not_depend_on_the_batch.
SMALL = dict(hidden_layer_sizes=(16,), learning_rate=0.01, max_iter=60, random_state=0)
CHECKED = [MLPClassifier(**SMALL), MLPRegressor(**SMALL),
           MLPClassifier(**SMALL, dtype="float64"), MLPRegressor(**SMALL, dtype="float64")]


@parametrize_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    name = getattr(check, "func", check).__name__
    if estimator.dtype == "float32" and name == "check_methods_subset_invariance":
        pytest.skip("float32 rounding: see test_float32_predictions_do_not_depend_on_the_batch")
    check(estimator)


@pytest.mark.parametrize("estimator", CHECKED[:2], ids=["classifier", "regressor"])
def test_float32_predictions_do_not_depend_on_the_batch(estimator):
    # What check_methods_subset_invariance does, with float32's tolerance.
    x = 3 * np.random.default_rng(0).uniform(size=(20, 3))
    y = x[:, 0].astype(int)
    model = clone(estimator).fit(x, y)
    methods = ["predict"] + (["predict_proba"] if hasattr(model, "predict_proba") else [])
    for method in methods:
        whole = getattr(model, method)(x)
        rows = np.concatenate([getattr(model, method)(row[None, :]) for row in x])
        np.testing.assert_allclose(rows, whole, rtol=1e-6, atol=1e-6)


def blobs(count=90, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 3.0], [3.0, 0.0], [-3.0, -3.0]])
    labels = rng.integers(0, 3, size=count)
    return centres[labels] + rng.normal(size=(count, 2)), labels


def test_classifier_with_string_labels():
    x, labels = blobs()
    names = np.array(["cat", "dog", "emu"])[labels]
    model = MLPClassifier(hidden_layer_sizes=(8,), learning_rate=0.05, max_iter=40,
                          random_state=1).fit(x, names)
    assert list(model.classes_) == ["cat", "dog", "emu"]
    proba = model.predict_proba(x)
    assert proba.shape == (90, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert (model.predict(x) == model.classes_[proba.argmax(axis=1)]).all()
    assert model.score(x, names) > 0.95
    assert model.n_iter_ == 40 == len(model.loss_curve_) and model.t_ == 40
    assert model.loss_curve_[-1] < model.loss_curve_[0] and model.loss_ == model.loss_curve_[-1]
    assert isinstance(model.net_, gradwatch.MLP) and model.net_.layer_sizes == (2, 8, 3)
    assert model.n_features_in_ == 2 and model.n_outputs_ == 3


def test_binary_classifier_uses_two_softmax_outputs():
    x, labels = blobs()
    keep = labels < 2
    model = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(
        x[keep], labels[keep] == 1)
    assert list(model.classes_) == [False, True] and model.net_.layer_sizes[-1] == 2


def test_one_class_is_an_error():
    with pytest.raises(ValueError, match=r"needs samples of at least 2 classes, got 1 class"):
        MLPClassifier().fit(np.zeros((3, 2)), ["a", "a", "a"])


def test_regressor_one_and_several_targets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = np.stack([x[:, 0] - x[:, 1], 0.5 * x[:, 2]], axis=1)
    arguments = dict(hidden_layer_sizes=(16,), learning_rate=0.01, max_iter=80, random_state=0)
    two = MLPRegressor(**arguments).fit(x, y)
    assert two.predict(x).shape == (60, 2) and two.predict(x).dtype == np.float64
    assert two.score(x, y) > 0.9
    one = MLPRegressor(**arguments).fit(x, y[:, 0])
    column = MLPRegressor(**arguments).fit(x, y[:, :1])
    assert one.predict(x).shape == (60,) and column.predict(x).shape == (60, 1)
    np.testing.assert_array_equal(one.predict(x), column.predict(x)[:, 0])


@pytest.mark.parametrize("solver", ["sgd", "adam", "adamw", "rmsprop", "adagrad", "lars"])
def test_every_solver_learns(solver):
    x, labels = blobs()
    rates = {"lars": 1.0, "sgd": 0.05, "adagrad": 0.05}
    model = MLPClassifier(hidden_layer_sizes=(8,), solver=solver, batch_size=16,
                          learning_rate=rates.get(solver, 0.01), max_iter=20, random_state=0)
    model.fit(x, labels)
    assert model.loss_curve_[-1] < 0.7 * model.loss_curve_[0]
    assert type(model.history_.step_loss[0]) is float


def test_options_reach_the_network_and_fit_is_deterministic():
    x, labels = blobs()
    model = MLPClassifier(hidden_layer_sizes=[6, 5], activation=["tanh", "gelu"],
                          init="xavier_uniform", batchnorm=True, dropout=0.1, batch_size=32,
                          max_iter=3, random_state=4, dtype="float64")
    model.fit(x, labels)
    net = model.net_
    assert net.layer_sizes == (2, 6, 5, 3) and net.activation == ("tanh", "gelu")
    assert net.batchnorm and net.dropout == (0.1, 0.1) and net.dtype == np.float64
    assert model.t_ == 3 * 3  # 90 samples in batches of 32: 32, 32, 26
    again = clone(model).fit(x, labels)
    np.testing.assert_array_equal(again.predict_proba(x), model.predict_proba(x))


def test_pickle_round_trip_is_exact():
    x, labels = blobs()
    model = MLPClassifier(hidden_layer_sizes=(8,), batchnorm=True, max_iter=3,
                          random_state=0).fit(x, labels)
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict_proba(x), model.predict_proba(x))
    assert copy.loss_curve_ == model.loss_curve_ and copy.get_params() == model.get_params()
    unfitted = pickle.loads(pickle.dumps(MLPRegressor(max_iter=7)))
    assert unfitted.max_iter == 7 and not hasattr(unfitted, "net_")


@pytest.mark.parametrize("parameters, error, match", [
    (dict(solver="lbfgs"), ValueError, r"solver must be one of 'sgd', .*got 'lbfgs'"),
    (dict(dtype="float16"), ValueError, r"dtype must be 'float32' or 'float64', got 'float16'"),
    (dict(dtype=None), ValueError, r"dtype must be 'float32' or 'float64', got None"),
    (dict(batch_size=0), ValueError, r"batch_size must be 'auto' or an int >= 1, got 0"),
    (dict(batch_size="all"), ValueError, r"batch_size must be 'auto' or an int >= 1"),
    (dict(hidden_layer_sizes=(4, 0)), ValueError, r"hidden_layer_sizes must hold ints >= 1"),
    (dict(hidden_layer_sizes="4"), TypeError, r"hidden_layer_sizes must be an int or a sequence"),
    (dict(hidden_layer_sizes=(4.5,)), TypeError, r"hidden_layer_sizes must hold ints"),
    (dict(max_iter=0), ValueError, r"max_iter must be >= 1, got 0"),
    (dict(max_iter=2.5), TypeError, r"max_iter must be an integer"),
    (dict(learning_rate=0.0), ValueError, r"learning_rate must be > 0, got 0.0"),
    (dict(solver="sgd", momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (dict(solver="adamw", weight_decay=-1), ValueError, r"weight_decay must be >= 0"),
    (dict(verbose=1), TypeError, r"verbose must be True or False"),
    (dict(activation="swish"), ValueError, r"unknown activation 'swish'"),
    (dict(shuffle="yes"), TypeError, r"shuffle must be True or False"),
])
def test_invalid_parameters_raise_in_fit_not_in_init(parameters, error, match):
    model = MLPClassifier(**parameters)
    assert model.get_params()[next(iter(parameters))] == next(iter(parameters.values()))
    with pytest.raises(error, match=match):
        model.fit(np.zeros((4, 2)), [0, 1, 0, 1])


def test_import_gradwatch_does_not_import_sklearn():
    code = ("import sys, gradwatch; assert 'sklearn' not in sys.modules; "
            "gradwatch.sklearn.MLPClassifier; assert 'sklearn' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
