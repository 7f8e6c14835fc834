"""Batch norm: examples, reference comparisons, gradients, numerics, threads and errors.

Dims: N = batch, F = features.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradwatch
import reference
from conftest import DTYPES, assert_close, tolerance
from gradwatch import ops
from gradwatch._core_loader import _core


@pytest.fixture
def thread_budget():
    before = gradwatch.get_num_threads()
    yield gradwatch.set_num_threads
    gradwatch.set_num_threads(before)


def assert_within(actual, expected, magnitude, dtype):
    """|actual - expected| <= atol + rtol * (|expected| + magnitude), elementwise.

    `magnitude` is the size of the terms a result is computed from: where they cancel (a large
    offset, a sum of mixed signs), rounding errors scale with them, not with the result, in
    the kernel and in the reference alike.
    """
    tol = tolerance(dtype)
    actual = np.asarray(actual, dtype=np.float64)
    bound = tol["atol"] + tol["rtol"] * (np.abs(expected) + magnitude)
    error = np.abs(actual - expected)
    worst = np.unravel_index(np.argmax(error - bound), error.shape)
    assert np.all(error <= bound), (
        f"error {error[worst]:.3g} > bound {bound[worst]:.3g} at {worst}: "
        f"actual {actual[worst]!r}, expected {expected[worst]!r}"
    )


def forward_magnitudes(x, gamma, beta, eps):
    """Sizes of the terms behind mean, var and y (see assert_within). x: (N, F)."""
    x, gamma, beta = (np.asarray(a, dtype=np.float64) for a in (x, gamma, beta))
    mean, var = reference.batchnorm_statistics(x)
    largest = np.abs(x).max(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    mean_mag = largest
    var_mag = largest * np.abs(x - mean).max(axis=0)
    y_mag = np.abs(gamma) * inv_std * largest + np.abs(beta)
    return mean_mag, var_mag, np.broadcast_to(y_mag, x.shape)


def backward_magnitudes(grad_y, x, gamma, mean, var, eps):
    """Sizes of the terms behind grad_x, grad_gamma, grad_beta (see assert_within)."""
    grad_y, x, gamma, mean, var = (
        np.abs(np.asarray(a, dtype=np.float64)) for a in (grad_y, x, gamma, mean, var)
    )
    n = x.shape[0]
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x + mean) * inv_std
    beta_mag = grad_y.sum(axis=0)
    gamma_mag = (grad_y * x_hat).sum(axis=0)
    x_mag = gamma * inv_std * (grad_y + beta_mag / n + x_hat * gamma_mag / n)
    return x_mag, gamma_mag, beta_mag


values = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
epsilons = st.sampled_from([1e-5, 1e-3, 0.5])


@st.composite
def batches(draw, min_rows=2):
    """x: (N, F), gamma, beta: (F,), exactly representable in float32."""
    n = draw(st.integers(min_rows, 24))
    f = draw(st.integers(1, 12))
    x = draw(hnp.arrays(np.float64, (n, f), elements=values))
    gamma = draw(hnp.arrays(np.float64, (f,), elements=values))
    beta = draw(hnp.arrays(np.float64, (f,), elements=values))
    return x, gamma, beta


# --- worked examples (by hand) ----------------------------------------------------------------

# Feature 0: x = [1, 2, 3, 6], mean 3, deviations [-2, -1, 0, 3], var 14 / 4 = 3.5; with
# eps = 0.5 the std is 2, x_hat = [-1, -0.5, 0, 1.5], and gamma 2, beta 1 give y = [-1, 0, 1, 4].
# Feature 1: x = [7, 5, 6, 6], mean 6, var 2 / 4 = 0.5, std 1, x_hat = [1, -1, 0, 0];
# gamma -1, beta 0.5 give y = [-0.5, 1.5, 0.5, 0.5].
EXAMPLE_X = [[1.0, 7.0], [2.0, 5.0], [3.0, 6.0], [6.0, 6.0]]
EXAMPLE_GAMMA = [2.0, -1.0]
EXAMPLE_BETA = [1.0, 0.5]
EXAMPLE_EPS = 0.5


def test_forward_worked_example(dtype):
    x = np.array(EXAMPLE_X, dtype=dtype)
    gamma = np.array(EXAMPLE_GAMMA, dtype=dtype)
    beta = np.array(EXAMPLE_BETA, dtype=dtype)
    y, mean, var = ops.batchnorm_forward(x, gamma, beta, eps=EXAMPLE_EPS)
    assert y.dtype == mean.dtype == var.dtype == dtype
    assert y.shape == (4, 2) and mean.shape == var.shape == (2,)
    assert_close(mean, [3.0, 6.0], dtype)
    assert_close(var, [3.5, 0.5], dtype)
    assert_close(y, [[-1.0, -0.5], [0.0, 1.5], [1.0, 0.5], [4.0, 0.5]], dtype)


def test_backward_worked_example(dtype):
    # Feature 0, grad_y = [1, 0, 0, 0]: grad_beta = 1, grad_gamma = sum grad_y * x_hat = -1,
    # grad_x = 2 / 2 * (grad_y - 1/4 + x_hat / 4) = [0.5, -0.375, -0.25, 0.125].
    # Feature 1, grad_y = [0, 0, 1, 1]: grad_beta = 2, grad_gamma = 0,
    # grad_x = -1 / 1 * (grad_y - 2/4) = [0.5, 0.5, -0.5, -0.5].
    x = np.array(EXAMPLE_X, dtype=dtype)
    grad_y = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=dtype)
    gamma = np.array(EXAMPLE_GAMMA, dtype=dtype)
    mean = np.array([3.0, 6.0], dtype=dtype)
    var = np.array([3.5, 0.5], dtype=dtype)
    grad_x, grad_gamma, grad_beta = ops.batchnorm_backward(
        grad_y, x, gamma, mean, var, eps=EXAMPLE_EPS
    )
    assert grad_x.dtype == grad_gamma.dtype == grad_beta.dtype == dtype
    assert_close(grad_x, [[0.5, 0.5], [-0.375, 0.5], [-0.25, -0.5], [0.125, -0.5]], dtype)
    assert_close(grad_gamma, [-1.0, 0.0], dtype)
    assert_close(grad_beta, [1.0, 2.0], dtype)


def test_inference_worked_example(dtype):
    # std = sqrt([3.5, 0.5] + 0.5) = [2, 1]; x_hat = ([5, 2] - [1, 2]) / [2, 1] = [2, 0].
    x = np.array([[5.0, 2.0]], dtype=dtype)
    y = ops.batchnorm_inference(
        x, np.array(EXAMPLE_GAMMA, dtype=dtype), np.array(EXAMPLE_BETA, dtype=dtype),
        np.array([1.0, 2.0], dtype=dtype), np.array([3.5, 0.5], dtype=dtype), eps=EXAMPLE_EPS,
    )
    assert y.dtype == dtype and y.shape == (1, 2)
    assert_close(y, [[5.0, 0.5]], dtype)


# --- against the reference ---------------------------------------------------------------------


def check_forward(x, gamma, beta, eps, dtype):
    x, gamma, beta = (np.asarray(a, dtype=dtype) for a in (x, gamma, beta))
    y, mean, var = ops.batchnorm_forward(x, gamma, beta, eps=eps)
    y_ref, mean_ref, var_ref = reference.batchnorm_forward(x, gamma, beta, eps)
    mean_mag, var_mag, y_mag = forward_magnitudes(x, gamma, beta, eps)
    assert y.dtype == mean.dtype == var.dtype == dtype
    assert_within(mean, mean_ref, mean_mag, dtype)
    assert_within(var, var_ref, var_mag, dtype)
    assert_within(y, y_ref, y_mag, dtype)


def check_backward(grad_y, x, gamma, eps, dtype):
    grad_y, x, gamma = (np.asarray(a, dtype=dtype) for a in (grad_y, x, gamma))
    _, mean, var = ops.batchnorm_forward(x, gamma, np.zeros_like(gamma), eps=eps)
    grads = ops.batchnorm_backward(grad_y, x, gamma, mean, var, eps=eps)
    expected = reference.batchnorm_backward(grad_y, x, gamma, mean, var, eps)
    magnitudes = backward_magnitudes(grad_y, x, gamma, mean, var, eps)
    for actual, want, magnitude in zip(grads, expected, magnitudes):
        assert actual.dtype == dtype
        assert_within(actual, want, magnitude, dtype)


@pytest.mark.simd
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@given(batch=batches(), eps=epsilons)
def test_forward_matches_reference(dtype, batch, eps):
    check_forward(*batch, eps, dtype)


@pytest.mark.simd
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@given(batch=batches(), eps=epsilons, data=st.data())
def test_backward_matches_reference(dtype, batch, eps, data):
    x, gamma, _ = batch
    grad_y = data.draw(hnp.arrays(np.float64, x.shape, elements=values), label="grad_y")
    check_backward(grad_y, x, gamma, eps, dtype)


@pytest.mark.simd
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@given(batch=batches(min_rows=1), eps=epsilons, data=st.data())
def test_inference_matches_reference(dtype, batch, eps, data):
    x, gamma, beta = batch
    f = x.shape[1]
    running_mean = data.draw(hnp.arrays(np.float64, (f,), elements=values), label="mean")
    running_var = data.draw(
        hnp.arrays(np.float64, (f,), elements=st.floats(0, 1e3, width=32)), label="var"
    )
    args = [np.asarray(a, dtype=dtype) for a in (x, gamma, beta, running_mean, running_var)]
    y = ops.batchnorm_inference(*args, eps=eps)
    expected = reference.batchnorm_inference(*args, eps)
    inv_std = 1.0 / np.sqrt(args[4].astype(np.float64) + eps)
    magnitude = np.abs(gamma) * inv_std * (np.abs(x) + np.abs(running_mean)) + np.abs(beta)
    assert y.dtype == dtype
    assert_within(y, expected, magnitude, dtype)


# Shapes past one tile: several row chunks (with a short last one), several feature blocks,
# rows that are not a multiple of the 4-row unroll, and a wide batch of two rows.
LARGE_SHAPES = [(517, 300), (130, 1030), (2, 5000), (1031, 3)]


@pytest.mark.simd
@pytest.mark.parametrize("shape", LARGE_SHAPES, ids=str)
def test_large_batches_match_reference(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    n, f = shape
    x = rng.normal(2.0, 3.0, size=shape)
    gamma = rng.normal(size=f)
    beta = rng.normal(size=f)
    grad_y = rng.normal(size=shape)
    check_forward(x, gamma, beta, 1e-5, dtype)
    check_backward(grad_y, x, gamma, 1e-5, dtype)
    running_var = rng.uniform(0.5, 2.0, size=f)
    args = [np.asarray(a, dtype=dtype) for a in (x, gamma, beta, x[0], running_var)]
    assert_close(ops.batchnorm_inference(*args), reference.batchnorm_inference(*args), dtype)


@pytest.mark.simd
@pytest.mark.parametrize(
    "column",
    [
        [1e4, -1e4, 1e4, -1e4, 0.0],
        [-1e4, -1e4 + 1, -1e4 + 2, -1e4 + 3, -1e4 + 4],
        [1e-40, 2e-40, 3e-40, 0.0, -1e-40],
        [5e-324, 0.0, 1e-310, -1e-310, 2e-310],
        [3.0, 3.0, 3.0, 3.0, 3.0],
    ],
    ids=["plus-minus-1e4", "offset-minus-1e4", "subnormal-f32", "subnormal-f64", "constant"],
)
def test_extreme_columns_match_reference(column, dtype):
    x = np.array([column, column[::-1]], dtype=dtype).T.copy()  # (5, 2)
    gamma = np.array([1.5, -0.5], dtype=dtype)
    beta = np.array([0.25, 1.0], dtype=dtype)
    check_forward(x, gamma, beta, 1e-5, dtype)
    grad_y = np.linspace(-1.0, 1.0, x.size).reshape(x.shape)
    check_backward(grad_y, x, gamma, 1e-5, dtype)


@pytest.mark.simd
@pytest.mark.parametrize("spread", [1e19, 3e19, 1e30, 3e38])
def test_spread_beyond_the_square_root_of_the_float_range(spread):
    # In float32, (x - x0)^2 overflows past 1.8e19; the statistics must not (var may: the
    # float32 var of spread 1e30 is inf, while y stays finite and normalised).
    column = np.array([0.0, spread, 0.0, spread, 1.0, -spread / 2])
    x = np.stack([column, np.arange(6.0)], axis=1).astype(np.float32)  # (6, 2)
    gamma = np.array([1.5, 1.0], np.float32)
    beta = np.array([0.5, 0.0], np.float32)
    y, mean, var = ops.batchnorm_forward(x, gamma, beta)
    y_ref, mean_ref, var_ref = reference.batchnorm_forward(x, gamma, beta)
    assert np.isfinite(y).all()
    assert_close(y, y_ref, np.float32)
    assert_close(mean, mean_ref, np.float32)
    with np.errstate(over="ignore"):
        assert_close(var, var_ref.astype(np.float32), np.float32)


def test_constant_feature_normalises_to_beta(dtype):
    # var = 0, so x - mean = 0 exactly and y = beta whatever gamma and eps are.
    x = np.full((6, 3), 7.25, dtype=dtype)
    y, mean, var = ops.batchnorm_forward(x, np.ones(3, dtype), np.array([1.0, 2.0, 3.0], dtype))
    np.testing.assert_array_equal(var, 0.0)
    np.testing.assert_array_equal(mean, 7.25)
    np.testing.assert_array_equal(y, np.broadcast_to([1.0, 2.0, 3.0], (6, 3)))


# --- numerics ------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [1e4, -1e4, 3e5])
def test_large_offset_float32_is_accurate(offset):
    # x = offset + noise in float32: E[x^2] - E[x]^2 would cancel 8 digits away, and a mean
    # rounded to float32 would shift every y by half an ulp of the offset (up to 1.6e-2 / std).
    rng = np.random.default_rng(7)
    x = (offset + rng.normal(size=(2048, 40))).astype(np.float32)
    gamma = rng.normal(size=40).astype(np.float32)
    beta = rng.normal(size=40).astype(np.float32)
    y, mean, var = ops.batchnorm_forward(x, gamma, beta)
    y_ref, mean_ref, var_ref = reference.batchnorm_forward(x, gamma, beta)
    assert_close(var, var_ref, np.float32)
    assert_close(mean, mean_ref, np.float32)
    assert_close(y, y_ref, np.float32, scale=2.0)  # y is read back from float32 sums of ~2
    # Normalised: per-feature mean beta, spread |gamma| (var >> eps here).
    np.testing.assert_allclose(y.astype(np.float64).mean(axis=0), beta, atol=2e-6)
    np.testing.assert_allclose(y.astype(np.float64).std(axis=0), np.abs(gamma), rtol=2e-5)


def test_large_offset_float64_is_accurate():
    # At 1e8 + noise, E[x^2] - E[x]^2 in float64 keeps no correct digit of a variance of 1.
    rng = np.random.default_rng(8)
    x = 1e8 + rng.normal(size=(1000, 30))
    gamma = rng.normal(size=30)
    beta = rng.normal(size=30)
    y, _, var = ops.batchnorm_forward(x, gamma, beta)
    _, _, var_ref = reference.batchnorm_forward(x, gamma, beta)
    assert_close(var, var_ref, np.float64)
    np.testing.assert_allclose(y.mean(axis=0), beta, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=0), np.abs(gamma) * np.sqrt(var / (var + 1e-5)),
                               rtol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 3], ids=["first-row", "later-row"])
def test_nan_or_inf_poisons_only_its_feature_forward(bad, row, dtype):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 4)).astype(dtype)
    x[row, 2] = bad
    gamma = np.ones(4, dtype)
    beta = np.zeros(4, dtype)
    y, mean, var = ops.batchnorm_forward(x, gamma, beta)
    assert np.isnan(y[:, 2]).all() and np.isnan(var[2])
    if np.isnan(bad):
        assert np.isnan(mean[2])
    clean = [0, 1, 3]
    y_ref, mean_ref, var_ref = reference.batchnorm_forward(x[:, clean], gamma[clean], beta[clean])
    assert_close(y[:, clean], y_ref, dtype)
    assert_close(mean[clean], mean_ref, dtype)
    assert_close(var[clean], var_ref, dtype)


@pytest.mark.parametrize("where", ["grad_y", "x", "batch_mean", "batch_var"])
def test_nan_poisons_only_its_feature_backward(where, dtype):
    rng = np.random.default_rng(4)
    args = {
        "grad_y": rng.normal(size=(9, 4)).astype(dtype),
        "x": rng.normal(size=(9, 4)).astype(dtype),
        "gamma": rng.normal(size=4).astype(dtype),
        "batch_mean": rng.normal(size=4).astype(dtype),
        "batch_var": rng.uniform(0.5, 2.0, size=4).astype(dtype),
    }
    if args[where].ndim == 2:
        args[where][5, 1] = np.nan
    else:
        args[where][1] = np.nan
    grad_x, grad_gamma, grad_beta = ops.batchnorm_backward(**args)
    assert np.isnan(grad_x[:, 1]).all() and np.isnan(grad_gamma[1])
    if where == "grad_y":
        assert np.isnan(grad_beta[1])
    clean = [0, 2, 3]
    expected = reference.batchnorm_backward(
        *(a[..., clean] for a in args.values())
    )
    for actual, want in zip((grad_x[:, clean], grad_gamma[clean], grad_beta[clean]), expected):
        assert_close(actual, want, dtype)


# --- gradients -----------------------------------------------------------------------------------


def test_backward_is_the_gradient_of_forward():
    # float64 central differences of the scalar loss sum(y * R) with a random R.
    rng = np.random.default_rng(11)
    n, f = 6, 3
    x = rng.normal(size=(n, f))
    gamma = rng.normal(size=f)
    beta = rng.normal(size=f)
    weights = rng.normal(size=(n, f))
    eps = 1e-3

    def loss(x_, gamma_, beta_):
        return float((ops.batchnorm_forward(x_, gamma_, beta_, eps=eps)[0] * weights).sum())

    _, mean, var = ops.batchnorm_forward(x, gamma, beta, eps=eps)
    grad_x, grad_gamma, grad_beta = ops.batchnorm_backward(weights, x, gamma, mean, var, eps=eps)
    tol = {"rtol": 1e-6, "atol": 1e-8}
    np.testing.assert_allclose(
        grad_x, reference.numerical_gradient(lambda v: loss(v, gamma, beta), x), **tol
    )
    np.testing.assert_allclose(
        grad_gamma, reference.numerical_gradient(lambda v: loss(x, v, beta), gamma), **tol
    )
    np.testing.assert_allclose(
        grad_beta, reference.numerical_gradient(lambda v: loss(x, gamma, v), beta), **tol
    )


def test_matches_pytorch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    n, f = 33, 17
    x = rng.normal(1.0, 2.0, size=(n, f)).astype(dtype)
    gamma = rng.normal(size=f).astype(dtype)
    beta = rng.normal(size=f).astype(dtype)
    grad_y = rng.normal(size=(n, f)).astype(dtype)

    x_t = torch.tensor(x, requires_grad=True)
    gamma_t = torch.tensor(gamma, requires_grad=True)
    beta_t = torch.tensor(beta, requires_grad=True)
    y_t = torch.nn.functional.batch_norm(
        x_t, None, None, weight=gamma_t, bias=beta_t, training=True, eps=1e-5
    )
    y_t.backward(torch.tensor(grad_y))
    var_t, mean_t = torch.var_mean(x_t.detach(), dim=0, correction=0)

    y, mean, var = ops.batchnorm_forward(x, gamma, beta)
    grad_x, grad_gamma, grad_beta = ops.batchnorm_backward(grad_y, x, gamma, mean, var)
    # Both sides round in `dtype`, in different orders: twice the one-sided tolerance.
    for ours, theirs in [
        (y, y_t.detach()), (mean, mean_t), (var, var_t), (grad_x, x_t.grad),
        (grad_gamma, gamma_t.grad), (grad_beta, beta_t.grad),
    ]:
        assert_close(ours, theirs.numpy().astype(np.float64), dtype, scale=2.0)


# --- threads --------------------------------------------------------------------------------------


def test_results_do_not_depend_on_thread_count(thread_budget, dtype):
    rng = np.random.default_rng(5)
    shape = (517, 300)  # enough work for 2 threads: 5 row chunks, the last of 5 rows
    x = rng.normal(3.0, 2.0, size=shape).astype(dtype)
    gamma = rng.normal(size=300).astype(dtype)
    beta = rng.normal(size=300).astype(dtype)
    grad_y = rng.normal(size=shape).astype(dtype)
    results = {}
    for threads in (1, 2):
        thread_budget(threads)
        y, mean, var = ops.batchnorm_forward(x, gamma, beta)
        grads = ops.batchnorm_backward(grad_y, x, gamma, mean, var)
        inference = ops.batchnorm_inference(x, gamma, beta, mean, var)
        results[threads] = (y, mean, var, *grads, inference)
    for one, two in zip(results[1], results[2]):
        assert one.tobytes() == two.tobytes()


# --- inputs that are accepted ---------------------------------------------------------------------


def test_lists_and_non_contiguous_arrays_are_accepted():
    x_list = [[1.0, 7.0], [2.0, 5.0], [3.0, 6.0], [6.0, 6.0]]
    y_list, _, _ = ops.batchnorm_forward(x_list, [2, -1], [1, 0.5], eps=0.5)
    assert y_list.dtype == np.float64
    assert_close(y_list, [[-1.0, -0.5], [0.0, 1.5], [1.0, 0.5], [4.0, 0.5]], np.float64)

    rng = np.random.default_rng(6)
    wide = rng.normal(size=(10, 8)).astype(np.float32)
    strided = wide[:, ::2]
    assert not strided.flags.c_contiguous
    gamma = np.ones(4, np.float32)
    beta = np.zeros(4, np.float32)
    for got, want in zip(
        ops.batchnorm_forward(strided, gamma, beta),
        ops.batchnorm_forward(np.ascontiguousarray(strided), gamma, beta),
    ):
        np.testing.assert_array_equal(got, want)


# --- errors ---------------------------------------------------------------------------------------

X = np.zeros((32, 64), np.float32)
V = np.ones(64, np.float32)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ops.batchnorm_forward(np.ones(5), np.ones(5), np.ones(5)),
         r"x must be 2-dimensional .*got shape \(5,\)"),
        (lambda: ops.batchnorm_forward(np.ones((2, 3, 4)), np.ones(4), np.ones(4)),
         r"x must be 2-dimensional .*got shape \(2, 3, 4\)"),
        (lambda: ops.batchnorm_forward(X, np.ones(63, np.float32), V),
         r"gamma must have shape \(F,\) = \(64,\) to match x of shape \(32, 64\), got \(63,\)"),
        (lambda: ops.batchnorm_forward(X, V, np.ones((1, 64), np.float32)),
         r"beta must have shape \(F,\) = \(64,\) to match x of shape \(32, 64\), "
         r"got \(1, 64\)"),
        (lambda: ops.batchnorm_forward(np.ones((0, 4)), np.ones(4), np.ones(4)),
         r"x is an empty batch \(shape \(0, 4\)\)"),
        (lambda: ops.batchnorm_forward(np.ones((4, 0)), np.ones(0), np.ones(0)),
         r"x has no features \(shape \(4, 0\)\); batch norm needs F >= 1"),
        (lambda: ops.batchnorm_forward(np.ones((1, 4)), np.ones(4), np.ones(4)),
         r"training mode needs at least 2 samples.*variance of one sample is zero"),
        (lambda: ops.batchnorm_backward(np.ones((1, 4)), np.ones((1, 4)), np.ones(4),
                                        np.ones(4), np.ones(4)),
         r"training mode needs at least 2 samples.*variance of one sample is zero"),
        (lambda: ops.batchnorm_backward(np.ones((32, 63), np.float32), X, V, V, V),
         r"grad_y must have shape \(32, 64\) \(the shape of x\), got \(32, 63\)"),
        (lambda: ops.batchnorm_backward(X, X, np.ones(3, np.float32), V, V),
         r"gamma must have shape \(F,\) = \(64,\)"),
        (lambda: ops.batchnorm_backward(X, X, V, np.ones(65, np.float32), V),
         r"batch_mean must have shape \(F,\) = \(64,\) to match x of shape \(32, 64\), "
         r"got \(65,\)"),
        (lambda: ops.batchnorm_backward(X, X, V, V, np.ones(1, np.float32)),
         r"batch_var must have shape \(F,\) = \(64,\)"),
        (lambda: ops.batchnorm_backward(X, X, V, V, -V),
         r"batch_var must be >= 0 \(a variance\), got -1.0 at feature 0"),
        (lambda: ops.batchnorm_backward(X, X, V, V, np.array([1.0, np.nan, -2.0] + [1.0] * 61,
                                                             np.float32)),
         r"batch_var must be >= 0 \(a variance\), got -2.0 at feature 2"),
        (lambda: ops.batchnorm_backward(np.ones((0, 4)), np.ones((0, 4)), np.ones(4),
                                        np.ones(4), np.ones(4)),
         r"x is an empty batch"),
        (lambda: ops.batchnorm_inference(np.ones(4), np.ones(4), np.ones(4), np.ones(4),
                                         np.ones(4)),
         r"x must be 2-dimensional .*got shape \(4,\)"),
        (lambda: ops.batchnorm_inference(np.ones((0, 4)), np.ones(4), np.ones(4), np.ones(4),
                                         np.ones(4)),
         r"x is an empty batch"),
        (lambda: ops.batchnorm_inference(X, V, V, np.ones(2, np.float32), V),
         r"running_mean must have shape \(F,\) = \(64,\)"),
        (lambda: ops.batchnorm_inference(X, V, V, V, np.ones(2, np.float32)),
         r"running_var must have shape \(F,\) = \(64,\)"),
        (lambda: ops.batchnorm_inference(X, V, V, V, np.where(np.arange(64) == 9, -0.5, V)
                                         .astype(np.float32)),
         r"running_var must be >= 0 \(a variance\), got -0.5 at feature 9"),
    ],
)
def test_bad_shapes_and_values_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


BN_CALLS = {
    "forward": lambda eps: ops.batchnorm_forward(X, V, V, eps=eps),
    "backward": lambda eps: ops.batchnorm_backward(X, X, V, V, V, eps=eps),
    "inference": lambda eps: ops.batchnorm_inference(X, V, V, V, V, eps=eps),
}


@pytest.mark.parametrize("kernel", sorted(BN_CALLS))
@pytest.mark.parametrize(
    "eps, match",
    [(0.0, r"eps must be > 0, got 0.0"), (-1e-5, r"eps must be > 0"),
     (float("nan"), r"eps must be finite, got nan"), (float("inf"), r"eps must be finite")],
)
def test_bad_eps_raises_value_error(kernel, eps, match):
    with pytest.raises(ValueError, match=match):
        BN_CALLS[kernel](eps)


@pytest.mark.parametrize("kernel", sorted(BN_CALLS))
@pytest.mark.parametrize("eps", ["1e-5", None, True, 1e-5j])
def test_non_real_eps_raises_type_error(kernel, eps):
    with pytest.raises(TypeError, match=r"eps must be a real number"):
        BN_CALLS[kernel](eps)


@pytest.mark.parametrize("bad_dtype", [np.int64, np.bool_, np.complex128, np.float16])
def test_non_float_arrays_raise_type_error(bad_dtype):
    x = np.ones((4, 3), dtype=bad_dtype)
    with pytest.raises(TypeError, match=r"x must be a float32 or float64 array, got dtype"):
        ops.batchnorm_forward(x, np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match=r"batch_var must be a float32 or float64 array"):
        ops.batchnorm_backward(np.ones((4, 3)), np.ones((4, 3)), np.ones(3), np.ones(3),
                               np.ones(3, dtype=bad_dtype))
    with pytest.raises(TypeError, match=r"running_mean must be a float32 or float64 array"):
        ops.batchnorm_inference(np.ones((4, 3)), np.ones(3), np.ones(3),
                                np.ones(3, dtype=bad_dtype), np.ones(3))


def test_mixed_float_dtypes_raise_type_error():
    with pytest.raises(TypeError, match=r"cannot mix float32 and float64.*gamma is float64"):
        ops.batchnorm_forward(np.ones((4, 3), np.float32), np.ones(3), np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"cannot mix float32 and float64"):
        ops.batchnorm_backward(np.ones((4, 3)), np.ones((4, 3), np.float32), np.ones(3),
                               np.ones(3), np.ones(3))


def test_core_rechecks_sizes_without_crashing():
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"gamma: dimension 0 must be 3, got 2"):
        _core.batchnorm_forward_f64(x, np.ones(2), np.ones(3), 1e-5)
    with pytest.raises(ValueError, match=r"grad_y: dimension 1 must be 3, got 4"):
        _core.batchnorm_backward_f64(np.ones((4, 4)), x, np.ones(3), np.ones(3), np.ones(3), 1e-5)
    with pytest.raises(ValueError, match=r"variance of one sample is zero"):
        _core.batchnorm_forward_f64(np.ones((1, 3)), np.ones(3), np.ones(3), 1e-5)
    with pytest.raises(ValueError, match=r"eps must be finite and > 0"):
        _core.batchnorm_inference_f64(x, np.ones(3), np.ones(3), np.ones(3), np.ones(3), 0.0)
    with pytest.raises(TypeError):
        _core.batchnorm_forward_f64(x.astype(np.float32), np.ones(3), np.ones(3), 1e-5)
