"""Activation functions: worked examples, the float64 reference, gradient checks, extreme inputs,
the vectorised math library under them (cpp/src/vecmath.hpp), threads, inputs and errors."""

import math

import numpy as np
import pytest
import reference as ref
from conftest import DTYPES, assert_close, tolerance
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradwatch
from gradwatch import ops
from gradwatch._core_loader import _core

KINDS = ref.ACTIVATION_KINDS
SUFFIX = {np.dtype(np.float32): "_f32", np.dtype(np.float64): "_f64"}
SELU_SCALE_ALPHA = ref.SELU_SCALE * ref.SELU_ALPHA
LN2 = math.log(2.0)
LN3 = math.log(3.0)
PHI_1 = 0.8413447460685429  # standard normal CDF at 1
DENSITY_1 = 0.24197072451914337  # standard normal density at 1, exp(-1/2) / sqrt(2 pi)


def core(name, dtype):
    return getattr(_core, name + SUFFIX[np.dtype(dtype)])


def backward_from_output(grad_y, y, kind, alpha=None):
    """The private kernel: grad_y * f'(x) from y = f(x) (not in the public API)."""
    alpha = ref.activation_alpha(kind, alpha)
    code = getattr(_core.Activation, kind)
    return core("activation_backward_from_output", grad_y.dtype)(
        grad_y, y, code, 0.0 if alpha is None else alpha
    )


# ---- worked examples -----------------------------------------------------------------------
# (kind, alpha, x, f(x), f'(x)), computed by hand: sigmoid(ln 3) = 1 / (1 + 1/3) = 3/4,
# tanh(ln 2) = (4 - 1) / (4 + 1), elu(-ln 2) = alpha (1/2 - 1), softplus(ln 3) = ln 4, ...
WORKED = [
    ("identity", None, [-2.0, 0.0, 3.5], [-2.0, 0.0, 3.5], [1.0, 1.0, 1.0]),
    ("sigmoid", None, [0.0, LN3, -LN3], [0.5, 0.75, 0.25], [0.25, 0.1875, 0.1875]),
    ("tanh", None, [0.0, LN2, -LN2], [0.0, 0.6, -0.6], [1.0, 0.64, 0.64]),
    ("relu", None, [-2.0, 0.0, 3.0], [0.0, 0.0, 3.0], [0.0, 0.0, 1.0]),
    ("leaky_relu", None, [-2.0, 0.0, 3.0], [-0.02, 0.0, 3.0], [0.01, 0.01, 1.0]),
    ("leaky_relu", 0.25, [-2.0, 0.0, 3.0], [-0.5, 0.0, 3.0], [0.25, 0.25, 1.0]),
    ("leaky_relu", -0.5, [-2.0, 3.0], [1.0, 3.0], [-0.5, 1.0]),
    ("elu", None, [-LN2, 0.0, 2.0], [-0.5, 0.0, 2.0], [0.5, 1.0, 1.0]),
    ("elu", 2.0, [-LN2, 0.0, 2.0], [-1.0, 0.0, 2.0], [1.0, 2.0, 1.0]),
    (
        "selu",
        None,
        [-LN2, 0.0, 2.0],
        [-0.5 * SELU_SCALE_ALPHA, 0.0, 2.0 * ref.SELU_SCALE],
        [0.5 * SELU_SCALE_ALPHA, SELU_SCALE_ALPHA, ref.SELU_SCALE],
    ),
    (
        "gelu",
        None,
        [-1.0, 0.0, 1.0],
        [-(1.0 - PHI_1), 0.0, PHI_1],
        [(1.0 - PHI_1) - DENSITY_1, 0.5, PHI_1 + DENSITY_1],
    ),
    ("silu", None, [0.0, LN3, -LN3], [0.0, 0.75 * LN3, -0.25 * LN3],
     [0.5, 0.75 * (1.0 + 0.25 * LN3), 0.25 * (1.0 - 0.75 * LN3)]),
    ("softplus", None, [0.0, LN3, -LN3], [LN2, 2.0 * LN2, math.log(4.0 / 3.0)], [0.5, 0.75, 0.25]),
]


def gelu_tanh_by_hand(x):
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
    t = math.tanh(inner)
    slope = math.sqrt(2.0 / math.pi) * (1.0 + 3.0 * 0.044715 * x * x)
    return 0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * slope


WORKED.append(
    ("gelu_tanh", None, [-1.0, 0.0, 1.0],
     [gelu_tanh_by_hand(v)[0] for v in (-1.0, 0.0, 1.0)],
     [gelu_tanh_by_hand(v)[1] for v in (-1.0, 0.0, 1.0)])
)


@pytest.mark.parametrize("kind, alpha, x, y, slope", WORKED, ids=[f"{w[0]}-{w[1]}" for w in WORKED])
def test_worked_examples(kind, alpha, x, y, slope, dtype):
    x = np.array(x, dtype=dtype)
    grad_y = np.array([2.0, -3.0, 0.5][: x.size], dtype=dtype)
    forward = ops.activation_forward(x, kind, alpha=alpha)
    derivative = ops.activation_derivative(x, kind, alpha=alpha)
    backward = ops.activation_backward(grad_y, x, kind, alpha=alpha)
    assert forward.dtype == derivative.dtype == backward.dtype == dtype
    assert_close(forward, y, dtype)
    assert_close(derivative, slope, dtype)
    assert_close(backward, grad_y.astype(np.float64) * np.array(slope), dtype)


def test_every_kind_has_a_worked_example():
    assert {w[0] for w in WORKED} == set(KINDS)


# ---- properties against the reference --------------------------------------------------------
def alphas(kind):
    if kind == "leaky_relu":
        return st.one_of(st.none(), st.floats(-1.0, 3.0))
    if kind == "elu":
        return st.one_of(st.none(), st.floats(0.05, 3.0))
    return st.none()


@st.composite
def activation_cases(draw, dtype, low=-40.0, high=40.0):
    kind = draw(st.sampled_from(KINDS))
    alpha = draw(alphas(kind))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7))
    width = 32 if dtype == np.float32 else 64
    elements = st.floats(low, high, width=width)
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    grad_y = draw(hnp.arrays(dtype, shape, elements=st.floats(-10.0, 10.0, width=width)))
    return kind, alpha, x, grad_y


@pytest.mark.simd
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@given(data=st.data())
def test_forward_matches_reference(dtype, data):
    kind, alpha, x, _ = data.draw(activation_cases(dtype))
    y = ops.activation_forward(x, kind, alpha=alpha)
    assert y.shape == x.shape and y.dtype == dtype
    assert_close(y, ref.activation_forward(x, kind, alpha), dtype)


@pytest.mark.simd
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@given(data=st.data())
def test_derivative_matches_reference(dtype, data):
    kind, alpha, x, _ = data.draw(activation_cases(dtype))
    slope = ops.activation_derivative(x, kind, alpha=alpha)
    assert slope.shape == x.shape and slope.dtype == dtype
    assert_close(slope, ref.activation_derivative(x, kind, alpha), dtype)


@pytest.mark.simd
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@given(data=st.data())
def test_backward_matches_reference(dtype, data):
    kind, alpha, x, grad_y = data.draw(activation_cases(dtype))
    grad_x = ops.activation_backward(grad_y, x, kind, alpha=alpha)
    assert grad_x.shape == x.shape and grad_x.dtype == dtype
    # grad_y up to 10 scales the derivative's absolute error.
    assert_close(grad_x, ref.activation_backward(grad_y, x, kind, alpha), dtype, scale=10.0)


@pytest.mark.simd
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@given(data=st.data())
def test_backward_from_output_matches_reference(dtype, data):
    kind = data.draw(st.sampled_from(ref.ACTIVATION_FROM_OUTPUT_KINDS))
    alpha = data.draw(st.floats(0.05, 3.0)) if kind in ("leaky_relu", "elu") else None
    width = 32 if dtype == np.float32 else 64
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=9))
    x = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-20.0, 20.0, width=width)))
    grad_y = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-10.0, 10.0, width=width)))
    y = ops.activation_forward(x, kind, alpha=alpha)
    grad_x = backward_from_output(grad_y, y, kind, alpha)
    assert grad_x.dtype == dtype
    expected = ref.activation_backward_from_output(grad_y, y, kind, alpha)
    assert_close(grad_x, expected, dtype, scale=10.0)


@pytest.mark.simd
@pytest.mark.parametrize("kind", ref.ACTIVATION_FROM_OUTPUT_KINDS)
def test_backward_from_output_agrees_with_backward_from_input(kind):
    rng = np.random.default_rng(3)
    x = rng.uniform(-4.0, 4.0, size=(6, 50))
    grad_y = rng.standard_normal(x.shape)
    y = ops.activation_forward(x, kind)
    # y + alpha (elu) and (1 - y)(1 + y) (tanh) lose some bits of f' that f' from x keeps.
    np.testing.assert_allclose(
        backward_from_output(grad_y, y, kind), ops.activation_backward(grad_y, x, kind),
        rtol=1e-9, atol=1e-12,
    )


# ---- gradient checks -------------------------------------------------------------------------
def away_from_kinks(shape, seed):
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(0.1, 4.0, size=shape)
    return magnitude * rng.choice([-1.0, 1.0], size=shape)


@pytest.mark.parametrize("kind", KINDS)
def test_backward_matches_central_differences(kind):
    x = away_from_kinks((3, 4), seed=KINDS.index(kind))
    grad_y = np.random.default_rng(99).standard_normal(x.shape)

    def loss(values):
        return float(np.sum(ops.activation_forward(values, kind) * grad_y))

    numerical = ref.numerical_gradient(loss, x)
    # Central differences: O(eps^2) truncation plus O(1e-16 / eps) rounding.
    np.testing.assert_allclose(
        ops.activation_backward(grad_y, x, kind), numerical, rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        ops.activation_derivative(x, kind),
        ref.numerical_gradient(lambda v: float(np.sum(ops.activation_forward(v, kind))), x),
        rtol=1e-6, atol=1e-8,
    )


@pytest.mark.parametrize("kind, alpha", [("leaky_relu", 0.3), ("elu", 2.5)])
def test_backward_with_alpha_matches_central_differences(kind, alpha):
    x = away_from_kinks((2, 5), seed=7)
    grad_y = np.random.default_rng(8).standard_normal(x.shape)
    numerical = ref.numerical_gradient(
        lambda v: float(np.sum(ops.activation_forward(v, kind, alpha=alpha) * grad_y)), x
    )
    np.testing.assert_allclose(
        ops.activation_backward(grad_y, x, kind, alpha=alpha), numerical, rtol=1e-6, atol=1e-8
    )


# ---- extreme inputs --------------------------------------------------------------------------
def extreme_finite(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    big = 1e4
    return np.array(
        [-big, -1000.0, -700.0, -100.0, -40.0, -1.0, -1e-30, -tiny, -0.0, 0.0, tiny, 1e-30,
         1.0, 40.0, 100.0, 700.0, 1000.0, big, np.finfo(dtype).max, -np.finfo(dtype).max],
        dtype=dtype,
    )


@pytest.mark.simd
@pytest.mark.parametrize("kind", KINDS)
def test_extreme_finite_inputs_match_reference(kind, dtype):
    x = extreme_finite(dtype)[:-2]  # the reference overflows at +-max; checked just below
    grad_y = np.full_like(x, 0.5)
    assert_close(ops.activation_forward(x, kind), ref.activation_forward(x, kind), dtype)
    assert_close(ops.activation_derivative(x, kind), ref.activation_derivative(x, kind), dtype)
    assert_close(
        ops.activation_backward(grad_y, x, kind), ref.activation_backward(grad_y, x, kind), dtype
    )


@pytest.mark.parametrize("kind", KINDS)
def test_finite_inputs_give_finite_outputs(kind, dtype):
    x = extreme_finite(dtype)
    assert np.all(np.isfinite(ops.activation_forward(x, kind)) | (np.abs(x) == np.finfo(dtype).max))
    assert np.all(np.isfinite(ops.activation_derivative(x, kind)))
    assert np.all(np.isfinite(ops.activation_backward(np.ones_like(x), x, kind)))


@pytest.mark.parametrize(
    "kind, x, expected",
    [
        ("sigmoid", -1000.0, 0.0),
        ("sigmoid", 1000.0, 1.0),
        ("softplus", 1000.0, 1000.0),
        ("softplus", -1000.0, 0.0),
        ("elu", -1e4, -1.0),
        ("selu", -1e4, -SELU_SCALE_ALPHA),
        ("gelu", -1e4, 0.0),
        ("gelu_tanh", -1e4, 0.0),
        ("silu", -1e4, 0.0),
        ("tanh", 1e4, 1.0),
        ("tanh", -1e4, -1.0),
    ],
)
def test_saturated_values_are_exact(kind, x, expected, dtype):
    y = ops.activation_forward(np.array([x], dtype=dtype), kind)
    if kind == "selu":
        assert y[0] == dtype(expected)
    else:
        assert y[0] == expected


@pytest.mark.simd
def test_tails_keep_their_relative_accuracy():
    # Where the value is tiny, its relative error is what counts: no 1 + erf or 1 - sigmoid
    # cancellation, no exp(-x^2) rounding amplified by x^2.
    x = -np.linspace(1.0, 35.0, 200)
    tol = tolerance(np.float64)["rtol"]
    for kind in ("gelu", "sigmoid", "silu", "softplus"):
        np.testing.assert_allclose(
            ops.activation_forward(x, kind), ref.activation_forward(x, kind), rtol=tol, atol=0
        )
    np.testing.assert_allclose(
        ops.activation_derivative(x, "gelu"), ref.activation_derivative(x, "gelu"), rtol=tol, atol=0
    )
    x32 = -np.linspace(1.0, 12.0, 100, dtype=np.float32)
    np.testing.assert_allclose(
        ops.activation_forward(x32, "gelu"), ref.activation_forward(x32, "gelu"),
        rtol=tolerance(np.float32)["rtol"], atol=0,
    )


# f(+inf), f(-inf), f'(+inf), f'(-inf) with default alpha: the limits (PyTorch's values where
# they are finite; PyTorch gives NaN for gelu, gelu_tanh and silu at -inf and for some f').
INFINITE = {
    "identity": (math.inf, -math.inf, 1.0, 1.0),
    "sigmoid": (1.0, 0.0, 0.0, 0.0),
    "tanh": (1.0, -1.0, 0.0, 0.0),
    "relu": (math.inf, 0.0, 1.0, 0.0),
    "leaky_relu": (math.inf, -math.inf, 1.0, 0.01),
    "elu": (math.inf, -1.0, 1.0, 0.0),
    "selu": (math.inf, -SELU_SCALE_ALPHA, ref.SELU_SCALE, 0.0),
    "gelu": (math.inf, 0.0, 1.0, 0.0),
    "gelu_tanh": (math.inf, 0.0, 1.0, 0.0),
    "silu": (math.inf, 0.0, 1.0, 0.0),
    "softplus": (math.inf, 0.0, 1.0, 0.0),
}


@pytest.mark.parametrize("kind", KINDS)
def test_infinite_inputs_give_the_limits(kind, dtype):
    x = np.array([np.inf, -np.inf], dtype=dtype)
    f_plus, f_minus, slope_plus, slope_minus = INFINITE[kind]
    assert_close(ops.activation_forward(x, kind), [f_plus, f_minus], dtype)
    assert_close(ops.activation_derivative(x, kind), [slope_plus, slope_minus], dtype)


@pytest.mark.parametrize("kind", KINDS)
def test_nan_in_gives_nan_out(kind, dtype):
    x = np.array([1.0, np.nan, -np.nan, -2.0, np.nan], dtype=dtype)
    nan_at = np.isnan(x)
    grad_y = np.ones_like(x)
    for result in (
        ops.activation_forward(x, kind),
        ops.activation_derivative(x, kind),
        ops.activation_backward(grad_y, x, kind),
    ):
        np.testing.assert_array_equal(np.isnan(result), nan_at)
    nan_grad = np.array([np.nan, 1.0], dtype=dtype)
    assert np.isnan(ops.activation_backward(nan_grad, np.array([0.5, 0.5], dtype=dtype), kind)[0])
    if kind in ref.ACTIVATION_FROM_OUTPUT_KINDS:
        np.testing.assert_array_equal(np.isnan(backward_from_output(grad_y, x, kind)), nan_at)


def test_relu_keeps_the_sign_of_zero_like_pytorch():
    y = ops.activation_forward(np.array([-0.0, 0.0, -1.0]), "relu")
    assert list(np.signbit(y)) == [True, False, False]


# ---- the vectorised math library -------------------------------------------------------------
def ulp_errors(actual, expected, dtype):
    """|actual - expected| in units of the spacing at expected (the subnormal spacing near 0)."""
    expected = np.asarray(expected, dtype=np.float64)
    rounded = expected.astype(dtype)
    spacing = np.maximum(np.abs(np.spacing(rounded)), np.finfo(dtype).smallest_subnormal)
    return np.abs(actual.astype(np.float64) - expected) / spacing.astype(np.float64)


def vecmath_points(function, dtype):
    rng = np.random.default_rng(11)
    is64 = dtype == np.float64
    exp_low = -745.0 if is64 else -103.9
    exp_high = 709.7 if is64 else 88.7
    tiny = 10.0 ** rng.uniform(-300 if is64 else -37, 0, 500)
    signed_tiny = tiny * rng.choice([-1.0, 1.0], tiny.size)
    points = {
        "exp": [rng.uniform(exp_low, exp_high, 3000), rng.uniform(-1, 1, 500),
                rng.uniform(exp_low, exp_low + 40, 500), signed_tiny],
        "expm1": [rng.uniform(-50, exp_high, 2000), rng.uniform(-2, 2, 1000), signed_tiny],
        "log": [10.0 ** rng.uniform(-320 if is64 else -45, 307 if is64 else 38, 3000),
                rng.uniform(0.5, 2.0, 1000), 1.0 + rng.uniform(-1e-6, 1e-6, 300)],
        "log1p": [10.0 ** rng.uniform(-30, 30, 1500), -(10.0 ** rng.uniform(-30, -1e-7, 1000)),
                  rng.uniform(-0.999, 2.0, 1000), signed_tiny],
        "log1p_unit": [rng.uniform(0.0, 1.0, 3000), tiny, [0.5, 1.0]],
        "tanh": [rng.uniform(-25, 25, 2000), rng.uniform(-1, 1, 1000), signed_tiny],
        "erf": [rng.uniform(-7, 7, 2000), rng.uniform(-1.5, 1.5, 1000), signed_tiny],
        "erfc": [rng.uniform(-7, 28 if is64 else 10.1, 3000), rng.uniform(-1.5, 1.5, 1000),
                 signed_tiny],
    }[function]
    x = np.concatenate(points).astype(dtype)
    return x[np.isfinite(x)]


# Maximum distance in ulps from Python's math module (glibc) in float64 and from math's result
# rounded to float32 in float32: the largest seen on these points at any SIMD level, plus one.
# glibc's own error (below 1 ulp; a few for erfc) is part of the float64 figures.
VECMATH_ULPS = {  # function: (float32, float64)
    "exp": (2.0, 2.0),
    "expm1": (2.0, 3.0),
    "log": (2.0, 2.0),
    "log1p": (2.0, 2.0),
    "log1p_unit": (2.0, 2.0),
    "tanh": (3.0, 4.0),
    "erf": (4.0, 3.0),
    "erfc": (5.0, 5.0),
}


@pytest.mark.simd
@pytest.mark.parametrize("function", sorted(VECMATH_ULPS))
def test_vecmath_accuracy_in_ulps(function, dtype):
    x = vecmath_points(function, dtype)
    math_function = math.log1p if function == "log1p_unit" else getattr(math, function)
    reference_function = np.vectorize(math_function, otypes=[np.float64])
    with np.errstate(over="ignore"):
        expected = reference_function(x.astype(np.float64))
        if dtype == np.float32:
            expected = expected.astype(np.float32).astype(np.float64)
    actual = core("vecmath", dtype)(x, getattr(_core.VecmathFunction, function))
    errors = ulp_errors(actual, expected, dtype)
    bound = VECMATH_ULPS[function][0 if dtype == np.float32 else 1]
    worst = int(np.argmax(errors))
    assert errors[worst] <= bound, (
        f"{function}({x[worst]!r}) = {actual[worst]!r}, expected {expected[worst]!r}"
    )


@pytest.mark.simd
def test_vecmath_subnormal_results_of_exp(dtype):
    # exp(x) for x where the result is subnormal: within one subnormal spacing.
    low, high = (-745.0, -708.5) if dtype == np.float64 else (-103.9, -87.4)
    x = np.linspace(low, high, 2000).astype(dtype)
    expected = np.exp(x.astype(np.float64))
    actual = core("vecmath", dtype)(x, _core.VecmathFunction.exp)
    info = np.finfo(dtype)
    allowed = info.smallest_subnormal * 1.01 + np.abs(expected) * 3 * info.eps
    assert np.all(np.abs(actual - expected) <= allowed)


SPECIAL = [np.inf, -np.inf, np.nan, 0.0, -0.0, -1.0, 1e4, -1e4, 1e30, -1e30]
SPECIAL_VALUES = {
    "exp": [np.inf, 0.0, np.nan, 1.0, 1.0, math.exp(-1.0), np.inf, 0.0, np.inf, 0.0],
    "expm1": [np.inf, -1.0, np.nan, 0.0, -0.0, math.expm1(-1.0), np.inf, -1.0, np.inf, -1.0],
    "log": [np.inf, np.nan, np.nan, -np.inf, -np.inf, np.nan, math.log(1e4), np.nan,
            math.log(1e30), np.nan],
    "log1p": [np.inf, np.nan, np.nan, 0.0, -0.0, -np.inf, math.log1p(1e4), np.nan,
              math.log1p(1e30), np.nan],
    "tanh": [1.0, -1.0, np.nan, 0.0, -0.0, math.tanh(-1.0), 1.0, -1.0, 1.0, -1.0],
    "erf": [1.0, -1.0, np.nan, 0.0, -0.0, math.erf(-1.0), 1.0, -1.0, 1.0, -1.0],
    "erfc": [0.0, 2.0, np.nan, 1.0, 1.0, math.erfc(-1.0), 0.0, 2.0, 0.0, 2.0],
}


@pytest.mark.simd
@pytest.mark.parametrize("function", sorted(SPECIAL_VALUES))
def test_vecmath_special_values(function, dtype):
    x = np.array(SPECIAL, dtype=dtype)
    actual = core("vecmath", dtype)(x, getattr(_core.VecmathFunction, function))
    expected = np.array(SPECIAL_VALUES[function], dtype=dtype)
    np.testing.assert_allclose(actual, expected, rtol=4 * np.finfo(dtype).eps, atol=0)
    np.testing.assert_array_equal(np.signbit(actual[3:5]), np.signbit(expected[3:5]))


# ---- threads ---------------------------------------------------------------------------------
def test_one_and_two_threads_give_identical_bits(dtype):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(70_001) * 6).astype(dtype)
    x[:: 997] = extreme_finite(dtype)[0]
    x[1:: 991] = np.nan
    x[2:: 983] = 0.0
    grad_y = rng.standard_normal(x.size).astype(dtype)
    before = gradwatch.get_num_threads()

    def run_all():
        results = []
        for kind in KINDS:
            y = ops.activation_forward(x, kind)
            results.append(y)
            results.append(ops.activation_derivative(x, kind))
            results.append(ops.activation_backward(grad_y, x, kind))
            if kind in ref.ACTIVATION_FROM_OUTPUT_KINDS:
                results.append(backward_from_output(grad_y, y, kind))
        return [r.tobytes() for r in results]

    try:
        gradwatch.set_num_threads(1)
        one = run_all()
        gradwatch.set_num_threads(2)
        two = run_all()
    finally:
        gradwatch.set_num_threads(before)
    assert one == two


# ---- inputs ----------------------------------------------------------------------------------
def test_non_contiguous_input_equals_contiguous(dtype):
    x = np.linspace(-3, 3, 60, dtype=dtype).reshape(6, 10)
    strided = x[:, ::3]
    grad_y = np.ones_like(x)[::2, :5].T
    for kind in ("gelu", "elu"):
        np.testing.assert_array_equal(
            ops.activation_forward(strided, kind), ops.activation_forward(strided.copy(), kind)
        )
        np.testing.assert_array_equal(
            ops.activation_backward(grad_y, x[:5, :3], kind),
            ops.activation_backward(grad_y.copy(), x[:5, :3].copy(), kind),
        )


def test_list_inputs_are_float64_and_take_the_array_dtype():
    y = ops.activation_forward([[-1.0, 2.0]], "relu")
    assert y.dtype == np.float64 and y.tolist() == [[0.0, 2.0]]
    assert ops.activation_forward([1, -2, 3], "relu").dtype == np.float64
    grad = ops.activation_backward([1.0, 1.0], np.array([-1.0, 2.0], dtype=np.float32), "relu")
    assert grad.dtype == np.float32 and grad.tolist() == [0.0, 1.0]


def test_zero_dimensional_and_empty_inputs(dtype):
    scalar = ops.activation_forward(np.array(-2.0, dtype=dtype), "relu")
    assert scalar.shape == () and scalar.dtype == dtype and scalar == 0.0
    assert ops.activation_derivative(dtype(3.0), "relu").shape == ()
    assert ops.activation_forward(2.0, "identity").shape == ()
    assert ops.activation_backward(dtype(2.0), dtype(3.0), "tanh").shape == ()
    empty = np.empty((0, 4), dtype=dtype)
    for result in (
        ops.activation_forward(empty, "gelu"),
        ops.activation_derivative(empty, "gelu"),
        ops.activation_backward(empty, empty, "gelu"),
    ):
        assert result.shape == (0, 4) and result.dtype == dtype


def test_inputs_are_not_modified():
    x = np.array([-1.0, 0.5, 2.0])
    grad_y = np.array([1.0, 2.0, 3.0])
    ops.activation_backward(grad_y, x, "softplus")
    assert x.tolist() == [-1.0, 0.5, 2.0] and grad_y.tolist() == [1.0, 2.0, 3.0]


# ---- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.int64, np.int32, np.bool_, np.complex128, np.float16])
def test_wrong_dtypes_are_type_errors_naming_the_argument(bad):
    values = np.ones(3, dtype=bad)
    good = np.ones(3)
    with pytest.raises(TypeError, match="x must be a float32 or float64 array"):
        ops.activation_forward(values, "relu")
    with pytest.raises(TypeError, match="x must be a float32 or float64 array"):
        ops.activation_derivative(values, "relu")
    with pytest.raises(TypeError, match="grad_y must be a float32 or float64 array"):
        ops.activation_backward(values, good, "relu")
    with pytest.raises(TypeError, match="x must be a float32 or float64 array"):
        ops.activation_backward(good, values, "relu")


@pytest.mark.parametrize("bad", [[True, False], [1 + 2j], ["a"], [[1.0, 2.0], [3.0]]])
def test_bad_lists_are_type_errors(bad):
    with pytest.raises(TypeError, match="x must"):
        ops.activation_forward(bad, "relu")


def test_mixing_float32_and_float64_is_a_type_error():
    message = r"cannot mix float32 and float64 .*grad_y is float32, x is float64"
    with pytest.raises(TypeError, match=message):
        ops.activation_backward(np.ones(2, np.float32), np.ones(2), "tanh")


def test_shape_mismatch_names_both_shapes():
    message = r"grad_y and x must have the same shape, got grad_y \(2, 3\) and x \(3, 2\)"
    with pytest.raises(ValueError, match=message):
        ops.activation_backward(np.ones((2, 3)), np.ones((3, 2)), "relu")
    with pytest.raises(ValueError, match=r"got grad_y \(\) and x \(1,\)"):
        ops.activation_backward(1.0, [1.0], "relu")


def test_unknown_kind_lists_every_valid_kind():
    with pytest.raises(ValueError, match="unknown kind 'swish'; valid values are") as info:
        ops.activation_forward(np.ones(2), "swish")
    for kind in KINDS:
        assert repr(kind) in str(info.value)
    with pytest.raises(ValueError, match="unknown kind 'Relu'"):
        ops.activation_backward(np.ones(2), np.ones(2), "Relu")


@pytest.mark.parametrize("bad", [None, 3, _core.Activation.relu])
def test_non_string_kind_is_a_type_error(bad):
    with pytest.raises(TypeError, match="kind must be a string, one of 'identity'"):
        ops.activation_derivative(np.ones(2), bad)


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("leaky_relu", "elu")])
def test_alpha_for_a_kind_without_alpha_is_rejected(kind):
    message = f"kind '{kind}' takes no alpha .only 'leaky_relu' and 'elu' do"
    with pytest.raises(ValueError, match=message):
        ops.activation_forward(np.ones(2), kind, alpha=0.1)


@pytest.mark.parametrize("bad, error, message", [
    ("0.1", TypeError, "alpha must be a real number, got str"),
    (True, TypeError, "alpha must be a real number, got bool"),
    (1 + 1j, TypeError, "alpha must be a real number, got complex"),
    (math.inf, ValueError, "alpha must be finite, got inf"),
    (math.nan, ValueError, "alpha must be finite, got nan"),
])
def test_alpha_must_be_a_finite_real_number(bad, error, message):
    with pytest.raises(error, match=message):
        ops.activation_backward(np.ones(2), np.ones(2), "elu", alpha=bad)


def test_alpha_accepts_numpy_and_integer_numbers():
    x = np.array([-2.0])
    assert ops.activation_forward(x, "leaky_relu", alpha=np.float32(0.5))[0] == -1.0
    assert ops.activation_forward(x, "leaky_relu", alpha=1)[0] == -2.0


def test_core_rechecks_shapes_and_contiguity():
    relu = _core.Activation.relu
    message = r"grad_y and x must have the same shape, got grad_y \(2,\) and x \(3,\)"
    with pytest.raises(ValueError, match=message):
        _core.activation_backward_f64(np.ones(2), np.ones(3), relu, 0.0)
    with pytest.raises(TypeError):
        _core.activation_forward_f64(np.ones((4, 4))[:, ::2], relu, 0.0)
    with pytest.raises(TypeError):
        _core.activation_forward_f64(np.ones(3, dtype=np.float32), relu, 0.0)
    with pytest.raises(ValueError, match="alpha must be finite"):
        _core.activation_forward_f32(np.ones(3, dtype=np.float32), relu, math.nan)


def test_backward_from_output_errors():
    y = np.ones(3)
    message = "backward from the output is not available for gelu; it is for identity, sigmoid"
    with pytest.raises(ValueError, match=message):
        _core.activation_backward_from_output_f64(y, y, _core.Activation.gelu, 0.0)
    message = "backward from the output of leaky_relu needs alpha > 0, got -0.1"
    with pytest.raises(ValueError, match=message):
        _core.activation_backward_from_output_f64(y, y, _core.Activation.leaky_relu, -0.1)
    with pytest.raises(ValueError, match="backward from the output of elu needs alpha > 0, got 0"):
        y32 = y.astype(np.float32)
        _core.activation_backward_from_output_f32(y32, y32, _core.Activation.elu, 0.0)
    message = r"grad_y and y must have the same shape, got grad_y \(3,\) and y \(1, 3\)"
    with pytest.raises(ValueError, match=message):
        _core.activation_backward_from_output_f64(y, y.reshape(1, 3), _core.Activation.tanh, 0.0)


# ---- PyTorch ---------------------------------------------------------------------------------
def torch_function(kind, alpha):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    return {
        "identity": lambda t: t * 1.0,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": functional.relu,
        "leaky_relu": lambda t: functional.leaky_relu(t, alpha if alpha is not None else 0.01),
        "elu": lambda t: functional.elu(t, alpha if alpha is not None else 1.0),
        "selu": functional.selu,
        "gelu": functional.gelu,
        "gelu_tanh": lambda t: functional.gelu(t, approximate="tanh"),
        "silu": functional.silu,
        "softplus": functional.softplus,
    }[kind]


TORCH_CASES = [(kind, None) for kind in KINDS] + [("leaky_relu", 0.2), ("elu", 2.0)]


@pytest.mark.simd
@pytest.mark.parametrize("kind, alpha", TORCH_CASES, ids=[f"{k}-{a}" for k, a in TORCH_CASES])
def test_matches_pytorch_including_kinks_and_infinities(kind, alpha):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    x = np.concatenate([[0.0, -0.0, 1e-300, -1e-300, np.inf, -np.inf, 15.0, -15.0],
                        rng.uniform(-8.0, 8.0, 200)])
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch_function(kind, alpha)(tx)
    ty.sum().backward()
    torch_y = ty.detach().numpy()
    torch_slope = tx.grad.numpy()
    y = ops.activation_forward(x, kind, alpha=alpha)
    slope = ops.activation_derivative(x, kind, alpha=alpha)
    tol = tolerance(np.float64)
    finite = np.isfinite(torch_y)
    np.testing.assert_allclose(y[finite], torch_y[finite], **tol)
    infinite = np.isinf(torch_y)
    np.testing.assert_array_equal(y[infinite], torch_y[infinite])
    known = ~np.isnan(torch_slope)
    np.testing.assert_allclose(slope[known], torch_slope[known], **tol)
