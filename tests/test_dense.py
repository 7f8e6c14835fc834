"""Dense layers: worked example, reference properties, gradient checks, threads, errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradwatch
import reference
from conftest import DTYPES
from gradwatch import ops
from gradwatch._core_loader import _core

BIG = 2**31  # one more than OpenBLAS's 32-bit integers hold


@pytest.fixture
def restore_threads():
    before = gradwatch.get_num_threads()
    yield
    gradwatch.set_num_threads(before)


def assert_within_sum_bound(actual, expected, magnitude, terms, dtype):
    """|actual - expected| <= 2 (terms + 2) u magnitude + terms * tiny.

    A sum of `terms` products (plus a starting value) in precision u is off by at most
    gamma_(terms+1) times the sum of the magnitudes (Higham, Accuracy and Stability of Numerical
    Algorithms, 2002, section 3.1); the factor 2 covers the float64 reference's own rounding and
    the `tiny` term products that underflow.
    """
    assert actual.dtype == np.dtype(dtype)
    finfo = np.finfo(dtype)
    bound = 2 * (terms + 2) * (finfo.eps / 2) * magnitude + terms * finfo.tiny
    error = np.abs(actual.astype(np.float64) - expected)
    worst = np.unravel_index(np.argmax(error - bound), error.shape)
    assert np.all(error <= bound), (
        f"error {error[worst]:.3g} > bound {bound[worst]:.3g} at {worst}: "
        f"got {actual[worst]!r}, expected {expected[worst]!r}"
    )


def random_case(seed, batch, fan_in, fan_out, scale, dtype):
    """x (N, I), w (I, O), b (O,), grad_y (N, O) in dtype."""
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((batch, fan_in))).astype(dtype)
    w = rng.standard_normal((fan_in, fan_out)).astype(dtype)
    b = rng.standard_normal(fan_out).astype(dtype)
    grad_y = (scale * rng.standard_normal((batch, fan_out))).astype(dtype)
    return x, w, b, grad_y


# ---------------------------------------------------------------------------------------------
# worked example
# ---------------------------------------------------------------------------------------------

X = [[1.0, 2.0], [3.0, 4.0]]
W = [[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]]
B = [0.5, -1.0, 2.0]
GRAD_Y = [[1.0, 0.0, 1.0], [0.0, 2.0, -1.0]]


def test_worked_example_forward(dtype):
    x, w, b = (np.array(a, dtype=dtype) for a in (X, W, B))
    # Row 0: [1 + 4, 0 + 2, -1 + 0] + b; row 1: [3 + 8, 0 + 4, -3 + 0] + b.
    expected_without_bias = np.array([[5.0, 2.0, -1.0], [11.0, 4.0, -3.0]])
    y = ops.dense_forward(x, w, b)
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, expected_without_bias + np.array(B))
    np.testing.assert_array_equal(ops.dense_forward(x, w), expected_without_bias)


def test_worked_example_backward(dtype):
    grad_y, x, w = (np.array(a, dtype=dtype) for a in (GRAD_Y, X, W))
    grad_x, grad_w, grad_b = ops.dense_backward(grad_y, x, w)
    # grad_x = grad_y @ w.T: row 0 = [1 - 1, 2 + 0], row 1 = [0 + 0 + 1, 0 + 2 + 0].
    np.testing.assert_array_equal(grad_x, [[0.0, 2.0], [1.0, 2.0]])
    # grad_w = x.T @ grad_y: row 0 = 1 [1, 0, 1] + 3 [0, 2, -1], row 1 = 2 [1, 0, 1] + 4 [0, 2, -1].
    np.testing.assert_array_equal(grad_w, [[1.0, 6.0, -2.0], [2.0, 8.0, -2.0]])
    np.testing.assert_array_equal(grad_b, [1.0, 2.0, 0.0])
    assert {a.dtype for a in (grad_x, grad_w, grad_b)} == {np.dtype(dtype)}
    assert (grad_x.shape, grad_w.shape, grad_b.shape) == ((2, 2), (2, 3), (3,))


# ---------------------------------------------------------------------------------------------
# against the reference
# ---------------------------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 150), st.integers(1, 48), st.integers(1, 48))
scales = st.sampled_from([1e-3, 1.0, 1e4])


@pytest.mark.simd
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@given(shape=shapes, scale=scales, with_bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_forward_matches_reference(dtype, shape, scale, with_bias, seed):
    x, w, b, _ = random_case(seed, *shape, scale, dtype)
    b = b if with_bias else None
    y = ops.dense_forward(x, w, b)
    expected = reference.dense_forward(x, w, b)
    magnitude = reference.dense_forward(np.abs(x), np.abs(w), None if b is None else np.abs(b))
    assert_within_sum_bound(y, expected, magnitude, shape[1], dtype)


@pytest.mark.simd
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@given(shape=shapes, scale=scales, seed=st.integers(0, 2**32 - 1))
def test_backward_matches_reference(dtype, shape, scale, seed):
    batch, _, fan_out = shape
    x, w, _, grad_y = random_case(seed, *shape, scale, dtype)
    grad_x, grad_w, grad_b = ops.dense_backward(grad_y, x, w)
    expected = reference.dense_backward(grad_y, x, w)
    magnitude = reference.dense_backward(np.abs(grad_y), np.abs(x), np.abs(w))
    assert_within_sum_bound(grad_x, expected[0], magnitude[0], fan_out, dtype)
    assert_within_sum_bound(grad_w, expected[1], magnitude[1], batch, dtype)
    assert_within_sum_bound(grad_b, expected[2], magnitude[2], batch, dtype)


@pytest.mark.simd
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 3, 64, 65, 130, 300])
@pytest.mark.parametrize("fan_out", [37, 2100], ids=["one_block", "three_column_blocks"])
def test_grad_b_adds_rows_in_the_documented_order(dtype, batch, fan_out):
    # Chunks of 64 rows, each summed from its first row on, then the chunk sums in order.
    grad_y = np.random.default_rng(batch).standard_normal((batch, fan_out)).astype(dtype)
    w = np.ones((2, fan_out), dtype=dtype)
    x = np.ones((batch, 2), dtype=dtype)
    partials = []
    for start in range(0, batch, 64):
        total = grad_y[start].copy()
        for row in grad_y[start + 1 : start + 64]:
            total = total + row
        partials.append(total)
    expected = partials[0]
    for partial in partials[1:]:
        expected = expected + partial
    np.testing.assert_array_equal(ops.dense_backward(grad_y, x, w)[2], expected)


# ---------------------------------------------------------------------------------------------
# gradient checks (float64 central differences)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
def test_gradients_match_central_differences(with_bias):
    x, w, b, grad_y = random_case(7, 3, 4, 5, 1.0, np.float64)
    b = b if with_bias else None

    def loss(x_, w_, b_):
        # <grad_y, y>: its gradient with respect to y is grad_y.
        return float(np.sum(grad_y * ops.dense_forward(x_, w_, b_)))

    grad_x, grad_w, grad_b = ops.dense_backward(grad_y, x, w)
    tol = {"rtol": 1e-7, "atol": 1e-8}
    numerical = reference.numerical_gradient
    np.testing.assert_allclose(grad_x, numerical(lambda v: loss(v, w, b), x), **tol)
    np.testing.assert_allclose(grad_w, numerical(lambda v: loss(x, v, b), w), **tol)
    bias = np.zeros(5) if b is None else b
    np.testing.assert_allclose(grad_b, numerical(lambda v: loss(x, w, v), bias), **tol)


# ---------------------------------------------------------------------------------------------
# input forms and extreme values
# ---------------------------------------------------------------------------------------------


def test_non_contiguous_inputs_give_the_contiguous_results(dtype):
    rng = np.random.default_rng(3)
    x = np.asfortranarray(rng.standard_normal((6, 5)).astype(dtype))
    w = rng.standard_normal((5, 8)).astype(dtype)[:, ::2]
    b = rng.standard_normal(12).astype(dtype)[::3]
    grad_y = rng.standard_normal((4, 6)).astype(dtype).T
    assert not (x.flags.c_contiguous or w.flags.c_contiguous or b.flags.c_contiguous)
    assert not grad_y.flags.c_contiguous
    copies = [np.ascontiguousarray(a) for a in (x, w, b, grad_y)]
    np.testing.assert_array_equal(
        ops.dense_forward(x, w, b), ops.dense_forward(copies[0], copies[1], copies[2])
    )
    for got, want in zip(
        ops.dense_backward(grad_y, x, w), ops.dense_backward(copies[3], copies[0], copies[1])
    ):
        np.testing.assert_array_equal(got, want)


def test_list_inputs_are_float64():
    y = ops.dense_forward(X, W, B)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, ops.dense_forward(np.array(X), np.array(W), np.array(B)))
    grads = ops.dense_backward(GRAD_Y, X, W)
    for got, want in zip(grads, ops.dense_backward(np.array(GRAD_Y), np.array(X), np.array(W))):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, want)


def test_lists_take_the_dtype_of_the_arrays():
    y = ops.dense_forward(X, np.array(W, dtype=np.float32), B)
    assert y.dtype == np.float32


def test_nan_propagates_to_its_row_and_column(dtype):
    x, w, b, grad_y = random_case(11, 5, 4, 6, 1.0, dtype)
    x[1, 2] = np.nan
    y = ops.dense_forward(x, w, b)
    assert np.isnan(y[1]).all()
    assert np.isfinite(np.delete(y, 1, axis=0)).all()
    grad_y[3, 4] = np.nan
    grad_x, grad_w, grad_b = ops.dense_backward(grad_y, x, w)
    assert np.isnan(grad_x[3]).all() and np.isfinite(np.delete(grad_x, 3, axis=0)).all()
    assert np.isnan(grad_b[4]) and np.isfinite(np.delete(grad_b, 4)).all()
    assert np.isnan(grad_w[:, 4]).all()  # column 4 of grad_y meets every row of x
    assert np.isnan(grad_w[2]).all()  # row 2 of x.T holds the NaN of x


def test_large_values_and_infinity(dtype):
    x = np.full((2, 3), 1e4, dtype=dtype)
    x[1, 0] = -1e4
    w = np.full((3, 2), -1e4, dtype=dtype)
    np.testing.assert_array_equal(ops.dense_forward(x, w), [[-3e8, -3e8], [-1e8, -1e8]])
    x[0, 0] = np.inf
    y = ops.dense_forward(x, np.abs(w))
    assert np.all(y[0] == np.inf) and np.isfinite(y[1]).all()


def test_subnormals_are_kept(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    x = np.diag(np.array([tiny, 3 * tiny, -5 * tiny], dtype=dtype))
    y = ops.dense_forward(x, np.eye(3, dtype=dtype), np.zeros(3, dtype=dtype))
    np.testing.assert_array_equal(y, x)  # no flush to zero
    grad_b = ops.dense_backward(x, x, np.eye(3, dtype=dtype))[2]
    np.testing.assert_array_equal(grad_b, [tiny, 3 * tiny, -5 * tiny])


def test_grad_b_of_negative_zeros_is_negative_zero(dtype):
    grad_y = np.full((70, 3), -0.0, dtype=dtype)
    grad_b = ops.dense_backward(grad_y, np.ones((70, 2), dtype=dtype), np.ones((2, 3), dtype))[2]
    assert np.all(grad_b == 0) and np.all(np.signbit(grad_b))  # as grad_y.sum(0)


# ---------------------------------------------------------------------------------------------
# threads
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch, fan_in, fan_out",
    [(300, 70, 257), (40, 600, 33)],
    ids=["row_blocks", "column_blocks"],
)
def test_one_and_two_threads(dtype, restore_threads, batch, fan_in, fan_out):
    # Large enough for several GEMM blocks (of rows, resp. of columns for grad_x and y), and
    # for several chunks of the bias gradient's sums.
    x, w, b, grad_y = random_case(5, batch, fan_in, fan_out, 1.0, dtype)
    results = {}
    for threads in (1, 2):
        gradwatch.set_num_threads(threads)
        results[threads] = (ops.dense_forward(x, w, b), *ops.dense_backward(grad_y, x, w))
    # The GEMM blocks depend on the shapes alone and each is one single-threaded OpenBLAS call;
    # grad_b adds rows in a fixed order: every output is bitwise the same.
    for one, two in zip(results[1], results[2]):
        np.testing.assert_array_equal(one, two)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def f32(*shape):
    return np.zeros(shape, dtype=np.float32)


@pytest.mark.parametrize(
    "args, match",
    [
        ((f32(2, 3).astype(np.int64), f32(3, 4)), "x must be a float32 or float64 .*int64"),
        ((f32(2, 3), f32(3, 4).astype(bool)), "w must be a float32 or float64 .*bool"),
        ((f32(2, 3), f32(3, 4), f32(4).astype(np.complex64)), "b must be a float32 .* complex64"),
        ((f32(2, 3), f32(3, 4).astype(np.float16)), "w must be a float32 .*, got dtype float16"),
        (
            (f32(2, 3), f32(3, 4).astype(np.float64)),
            r"cannot mix float32 and float64 in one call \(x is float32, w is float64\)",
        ),
        ((f32(2, 3), f32(3, 4), np.zeros(4)), "cannot mix float32 and float64"),
        ((f32(2, 3), [["a", "b"]]), "w must hold real numbers"),
    ],
)
def test_forward_type_errors(args, match):
    with pytest.raises(TypeError, match=match):
        ops.dense_forward(*args)


def test_backward_type_errors():
    with pytest.raises(TypeError, match="grad_y must be a float32 .*int32"):
        ops.dense_backward(np.zeros((2, 4), np.int32), f32(2, 3), f32(3, 4))
    mixed = r"cannot mix float32 and float64 in one call \(grad_y is float64, x is float32, w is"
    with pytest.raises(TypeError, match=mixed):
        ops.dense_backward(np.zeros((2, 4)), f32(2, 3), f32(3, 4))


@pytest.mark.parametrize(
    "args, match",
    [
        ((f32(3), f32(3, 4)), r"x must be 2-dimensional \(\(N, I\)\), got shape \(3,\)"),
        ((f32(2, 3), f32(3, 4, 1)), r"w must be 2-dimensional \(\(I, O\)\), got shape \(3, 4, 1"),
        (
            (f32(32, 784), f32(785, 10)),
            r"w must have shape \(784, O\) to match x of shape \(32, 784\), got \(785, 10\)",
        ),
        (
            (f32(2, 3), f32(3, 10), f32(11)),
            r"b must have shape \(10,\) to match w of shape \(3, 10\), got \(11,\)",
        ),
        ((f32(2, 3), f32(3, 10), f32(1, 10)), r"b must have shape \(10,\) .*, got \(1, 10\)"),
        ((f32(0, 784), f32(784, 10)), r"x is an empty batch \(shape \(0, 784\)\)"),
        ((f32(5, 0), f32(0, 10)), r"x has no features: I \(fan_in\) is 0 \(shape \(5, 0\)\)"),
        ((f32(5, 4), f32(4, 0), f32(0)), r"w has no outputs: O \(fan_out\) is 0 \(shape \(4, 0"),
        # Empty arrays with a huge dimension take no memory and reach the 32-bit check.
        ((f32(BIG, 0), f32(0, 3)), r"N \(batch\) = 2147483648 of x .* 32-bit integers"),
        ((f32(0, BIG), f32(BIG, 0)), r"I \(fan_in\) = 2147483648 of x .* 32-bit integers"),
        ((f32(2, 0), f32(0, BIG)), r"O \(fan_out\) = 2147483648 of w .* 32-bit integers"),
    ],
)
def test_forward_value_errors(args, match):
    with pytest.raises(ValueError, match=match):
        ops.dense_forward(*args)


@pytest.mark.parametrize(
    "args, match",
    [
        ((f32(2, 4), f32(2), f32(3, 4)), r"x must be 2-dimensional \(\(N, I\)\), got shape \(2,\)"),
        ((f32(2, 4), f32(2, 3), f32(4, 4)), r"w must have shape \(3, O\) to match x of shape"),
        ((f32(8), f32(2, 3), f32(3, 4)), r"grad_y must be 2-dimensional \(\(N, O\)\), got shape"),
        (
            (f32(2, 5), f32(2, 3), f32(3, 4)),
            r"grad_y must have shape \(2, 4\) to match x of shape \(2, 3\) "
            r"and w of shape \(3, 4\), got \(2, 5\)",
        ),
        ((f32(3, 4), f32(2, 3), f32(3, 4)), r"grad_y must have shape \(2, 4\)"),
        ((f32(0, 4), f32(0, 3), f32(3, 4)), r"x is an empty batch"),
        ((f32(2, 4), f32(2, 0), f32(0, 4)), r"x has no features"),
        ((f32(2, 0), f32(2, 3), f32(3, 0)), r"w has no outputs"),
        ((f32(BIG, 0), f32(BIG, 0), f32(0, 0)), r"N \(batch\) = 2147483648 of x"),
    ],
)
def test_backward_value_errors(args, match):
    with pytest.raises(ValueError, match=match):
        ops.dense_backward(*args)


def test_core_rechecks_sizes():
    # The private bindings repeat the checks: no input reaches the kernels unchecked.
    with pytest.raises(ValueError, match="w: dimension 0 must be 3, got 4"):
        _core.dense_forward_f32(f32(2, 3), f32(4, 5), None)
    with pytest.raises(ValueError, match="b: dimension 0 must be 5, got 4"):
        _core.dense_forward_f32(f32(2, 3), f32(3, 5), f32(4))
    with pytest.raises(ValueError, match="grad_y: dimension 1 must be 5, got 4"):
        _core.dense_backward_f32(f32(2, 4), f32(2, 3), f32(3, 5))
    with pytest.raises(ValueError, match="dense layer sizes must be >= 1"):
        _core.dense_forward_f32(f32(0, 3), f32(3, 5), None)
    with pytest.raises(ValueError, match=r"N \(the batch size\) does not fit OpenBLAS's 32-bit"):
        _core.dense_backward_f32(f32(BIG, 0), f32(BIG, 0), f32(0, 0))
    with pytest.raises(ValueError, match=r"O \(fan_out\) does not fit OpenBLAS's 32-bit"):
        _core.dense_forward_f64(np.zeros((0, 0)), np.zeros((0, BIG)), None)
    with pytest.raises(ValueError, match="b: dimension 1 must be 4, got 5"):
        _core.gemm_f32(f32(2, 4), f32(3, 5), False, True)


def test_core_never_converts():
    with pytest.raises(TypeError, match="incompatible function arguments"):
        _core.dense_forward_f32(np.zeros((2, 3)), f32(3, 4), None)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        _core.dense_forward_f32(np.asfortranarray(f32(2, 3)), f32(3, 4), None)


# ---------------------------------------------------------------------------------------------
# the bare GEMM binding used by the benchmark
# ---------------------------------------------------------------------------------------------


@pytest.mark.simd
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_bare_gemm(transpose_a, transpose_b):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 5))
    b = rng.standard_normal((5, 3))
    stored_a = np.ascontiguousarray(a.T) if transpose_a else a
    stored_b = np.ascontiguousarray(b.T) if transpose_b else b
    np.testing.assert_allclose(
        _core.gemm_f64(stored_a, stored_b, transpose_a, transpose_b), a @ b, rtol=1e-13
    )


# ---------------------------------------------------------------------------------------------
# PyTorch
# ---------------------------------------------------------------------------------------------


def test_matches_torch_linear(dtype):
    torch = pytest.importorskip("torch")
    x, w, b, grad_y = random_case(13, 9, 17, 6, 1.0, dtype)
    x_t, w_t, b_t = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    # torch stores the weight (out, in): ours is its transpose.
    y_t = torch.nn.functional.linear(x_t, w_t.T, b_t)
    y_t.backward(torch.tensor(grad_y))
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(ops.dense_forward(x, w, b), y_t.detach().numpy(), **tol)
    for ours, theirs in zip(ops.dense_backward(grad_y, x, w), (x_t.grad, w_t.grad, b_t.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), **tol)
