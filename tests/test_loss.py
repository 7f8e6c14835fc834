"""Softmax, log-softmax and the losses: examples, reference, gradients, edge cases, errors."""

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradwatch
import reference
from conftest import assert_close
from gradwatch import ops
from gradwatch._core_loader import _core

LN2 = math.log(2.0)


@pytest.fixture
def thread_budget():
    before = gradwatch.get_num_threads()
    yield gradwatch.set_num_threads
    gradwatch.set_num_threads(before)


# --- worked examples (by hand) ----------------------------------------------------------------


def test_softmax_worked_example(dtype):
    # exp of [0, ln 2, ln 3] is [1, 2, 3]: the probabilities are [1, 2, 3] / 6.
    logits = np.array([[0.0, math.log(2), math.log(3)], [5.0, 5.0, 5.0]], dtype=dtype)
    expected = np.array([[1 / 6, 2 / 6, 3 / 6], [1 / 3, 1 / 3, 1 / 3]])
    out = ops.softmax(logits)
    assert out.dtype == dtype and out.shape == (2, 3)
    assert_close(out, expected, dtype)
    assert_close(ops.log_softmax(logits), np.log(expected), dtype)


def test_softmax_cross_entropy_worked_example(dtype):
    # Row 0: softmax [1/4, 3/4], label 1 -> -log(3/4). Row 1: [1/2, 1/2], label 0 -> log 2.
    logits = np.array([[0.0, math.log(3)], [0.0, 0.0]], dtype=dtype)
    loss, grad = ops.softmax_cross_entropy(logits, np.array([1, 0]))
    assert isinstance(loss, float)
    assert grad.dtype == dtype
    assert loss == pytest.approx((math.log(4 / 3) + LN2) / 2, rel=1e-6)
    assert_close(grad, [[0.125, -0.125], [-0.25, 0.25]], dtype)


def test_softmax_cross_entropy_with_probabilities_worked_example(dtype):
    # softmax [1/2, 1/2]: loss = -(0.25 + 0.75) log(1/2) = log 2; grad = [1/2 - 1/4, 1/2 - 3/4].
    loss, grad = ops.softmax_cross_entropy(
        np.zeros((1, 2), dtype), np.array([[0.25, 0.75]], dtype)
    )
    assert loss == pytest.approx(LN2, rel=1e-6)
    assert_close(grad, [[0.25, -0.25]], dtype)


def test_binary_cross_entropy_worked_example(dtype):
    # x = 0, t = 0: log 2, sigmoid 1/2. x = ln 3, t = 1: log(1 + 1/3), sigmoid 3/4.
    loss, grad = ops.binary_cross_entropy_with_logits(
        np.array([0.0, math.log(3)], dtype), np.array([0.0, 1.0], dtype)
    )
    assert isinstance(loss, float)
    assert loss == pytest.approx((LN2 + math.log(4 / 3)) / 2, rel=1e-6)
    assert grad.dtype == dtype
    assert_close(grad, [0.25, -0.125], dtype)


def test_mse_worked_example(dtype):
    loss, grad = ops.mse(np.array([[1.0, 2.0, 3.0]], dtype), np.array([[1.0, 0.0, 0.0]], dtype))
    assert isinstance(loss, float)
    assert loss == 13 / 3
    assert grad.dtype == dtype and grad.shape == (1, 3)
    assert_close(grad, [[0.0, 4 / 3, 2.0]], dtype)


# --- against the reference --------------------------------------------------------------------

DTYPE = st.sampled_from([np.float32, np.float64])

# Losses are summed in float64, but each term is computed in the input dtype, and float64 sums run
# sequentially within a lane of a chunk of 8192 (error up to ~4096 eps on the baseline's 2 lanes).
LOSS_TOLERANCE = {
    np.dtype(np.float32): {"rel": 1e-5, "abs": 1e-6},
    np.dtype(np.float64): {"rel": 1e-12, "abs": 1e-13},
}


def assert_loss_close(loss, expected, dtype):
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected, **LOSS_TOLERANCE[np.dtype(dtype)])


@st.composite
def logits_arrays(draw, min_dims=2, max_dims=2):
    """A float array of rows (..., C), C up to 70 so that vector loops get a tail."""
    dtype = draw(DTYPE)
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=70))
    scale = draw(st.sampled_from([1.0, 30.0, 1e3]))
    return draw(hnp.arrays(dtype, shape, elements=st.floats(-scale, scale, width=32)))


@pytest.mark.simd
@given(logits=logits_arrays(min_dims=1, max_dims=3))
def test_softmax_and_log_softmax_match_reference(logits):
    rows = logits.reshape(-1, logits.shape[-1])
    expected = reference.softmax(rows).reshape(logits.shape)
    out = ops.softmax(logits)
    assert out.shape == logits.shape and out.dtype == logits.dtype
    assert_close(out, expected, logits.dtype)
    log_out = ops.log_softmax(logits)
    assert log_out.shape == logits.shape and log_out.dtype == logits.dtype
    assert_close(log_out, reference.log_softmax(rows).reshape(logits.shape), logits.dtype)


@pytest.mark.simd
@given(logits=logits_arrays(), data=st.data())
def test_softmax_cross_entropy_with_class_indices_matches_reference(logits, data):
    batch, classes = logits.shape
    labels = data.draw(hnp.arrays(np.int64, batch, elements=st.integers(0, classes - 1)))
    loss, grad = ops.softmax_cross_entropy(logits, labels)
    expected_loss, expected_grad = reference.softmax_cross_entropy(
        logits, reference.one_hot(labels, classes)
    )
    assert_loss_close(loss, expected_loss, logits.dtype)
    assert grad.dtype == logits.dtype
    assert_close(grad, expected_grad, logits.dtype)


@pytest.mark.simd
@given(logits=logits_arrays(), data=st.data())
def test_softmax_cross_entropy_with_probabilities_matches_reference(logits, data):
    weights = data.draw(hnp.arrays(logits.dtype, logits.shape, elements=st.floats(0, 1, width=32)))
    # Rows that sum to 1 where possible; an all-zero row stays zero (a valid, if odd, target).
    sums = weights.sum(axis=1, keepdims=True)
    probs = np.where(sums > 0, weights / np.where(sums > 0, sums, 1), weights).astype(logits.dtype)
    loss, grad = ops.softmax_cross_entropy(logits, probs)
    expected_loss, expected_grad = reference.softmax_cross_entropy(logits, probs)
    assert_loss_close(loss, expected_loss, logits.dtype)
    assert_close(grad, expected_grad, logits.dtype)


@st.composite
def value_pairs(draw, target_elements):
    dtype = draw(DTYPE)
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=40))
    scale = draw(st.sampled_from([1.0, 30.0, 1e3]))
    x = draw(hnp.arrays(dtype, shape, elements=st.floats(-scale, scale, width=32)))
    t = draw(hnp.arrays(dtype, shape, elements=target_elements))
    return x, t


@pytest.mark.simd
@given(pair=value_pairs(st.floats(0, 1, width=32)))
def test_binary_cross_entropy_matches_reference(pair):
    x, t = pair
    loss, grad = ops.binary_cross_entropy_with_logits(x, t)
    expected_loss, expected_grad = reference.binary_cross_entropy_with_logits(x, t)
    assert_loss_close(loss, expected_loss, x.dtype)
    assert grad.shape == x.shape and grad.dtype == x.dtype
    assert_close(grad, expected_grad, x.dtype)


@pytest.mark.simd
@given(pair=value_pairs(st.floats(-1e3, 1e3, width=32)))
def test_mse_matches_reference(pair):
    pred, target = pair
    loss, grad = ops.mse(pred, target)
    expected_loss, expected_grad = reference.mse(pred, target)
    assert_loss_close(loss, expected_loss, pred.dtype)
    assert grad.shape == pred.shape and grad.dtype == pred.dtype
    assert_close(grad, expected_grad, pred.dtype)


@pytest.mark.simd
@pytest.mark.parametrize("shape", [(3, 1), (2, 7), (5, 33), (4, 1000)])
def test_large_and_odd_rows_match_reference(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    logits = (rng.standard_normal(shape) * 5).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    assert_close(ops.softmax(logits), reference.softmax(logits), dtype)
    loss, grad = ops.softmax_cross_entropy(logits, labels)
    expected_loss, expected_grad = reference.softmax_cross_entropy(
        logits, reference.one_hot(labels, shape[1])
    )
    assert_loss_close(loss, expected_loss, dtype)
    assert_close(grad, expected_grad, dtype)


# --- gradients by central differences (float64) -----------------------------------------------


def check_gradient(loss_of, x, grad):
    numerical = reference.numerical_gradient(loss_of, x)
    np.testing.assert_allclose(grad, numerical, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_cross_entropy_gradient_with_class_indices(seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((4, 6)) * 3
    labels = rng.integers(0, 6, 4)
    _, grad = ops.softmax_cross_entropy(logits, labels)
    check_gradient(lambda z: ops.softmax_cross_entropy(z, labels)[0], logits, grad)


@pytest.mark.parametrize("seed", [0, 1])
def test_softmax_cross_entropy_gradient_with_probabilities(seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((3, 5)) * 3
    # Rows deliberately not summing to 1: the gradient is softmax * sum(p) - p, not softmax - p.
    probs = rng.random((3, 5)) * 2
    _, grad = ops.softmax_cross_entropy(logits, probs)
    check_gradient(lambda z: ops.softmax_cross_entropy(z, probs)[0], logits, grad)


def test_binary_cross_entropy_gradient():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4)) * 4
    t = rng.random((3, 4))
    _, grad = ops.binary_cross_entropy_with_logits(x, t)
    check_gradient(lambda z: ops.binary_cross_entropy_with_logits(z, t)[0], x, grad)


def test_mse_gradient():
    rng = np.random.default_rng(3)
    pred, target = rng.standard_normal((2, 5)), rng.standard_normal((2, 5))
    _, grad = ops.mse(pred, target)
    check_gradient(lambda z: ops.mse(z, target)[0], pred, grad)


# --- extreme inputs ----------------------------------------------------------------------------


@pytest.mark.parametrize("big", [1e4, 1e30])
def test_softmax_cross_entropy_with_huge_logits(big, dtype):
    logits = np.array([[big, -big, 0.0], [big, -big, 0.0]], dtype)
    loss, grad = ops.softmax_cross_entropy(logits, np.array([1, 0]))
    # Row 0 puts all mass on class 0 while the label is 1: loss 2 big; row 1 is right: loss 0.
    assert loss == pytest.approx(big, rel=1e-6)
    assert_close(grad, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], dtype)
    assert_close(ops.softmax(logits), [[1.0, 0.0, 0.0]] * 2, dtype)
    assert_close(ops.log_softmax(logits), [[0.0, -2 * big, -big]] * 2, dtype)


def test_float32_loss_beyond_float32_range_is_exact_in_float64():
    # The label's logit minus the maximum is taken in float64: 6e38 is no float32, but the loss is.
    logits = np.array([[3e38, -3e38]], np.float32)
    loss, grad = ops.softmax_cross_entropy(logits, np.array([1]))
    assert loss == pytest.approx(2 * float(np.float32(3e38)), rel=1e-7)
    assert np.array_equal(grad, np.array([[1.0, -1.0]], np.float32))
    loss, _ = ops.mse(np.array([3e19], np.float32), np.array([0.0], np.float32))
    assert loss == pytest.approx(float(np.float32(3e19)) ** 2, rel=1e-7)


def test_all_equal_logits_give_uniform_probabilities(dtype):
    for value in (-1e4, 0.0, 1e4):
        logits = np.full((2, 5), value, dtype)
        assert_close(ops.softmax(logits), np.full((2, 5), 0.2), dtype)
        loss, grad = ops.softmax_cross_entropy(logits, np.array([0, 4]))
        assert loss == pytest.approx(math.log(5), rel=1e-6)
        assert_close(grad, [[-0.4, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1, -0.4]], dtype)


def test_binary_cross_entropy_with_huge_logits(dtype):
    x = np.array([1e4, -1e4, 1e4, -1e4], dtype)
    t = np.array([0.0, 1.0, 1.0, 0.0], dtype)
    loss, grad = ops.binary_cross_entropy_with_logits(x, t)
    assert loss == pytest.approx(2e4 / 4, rel=1e-7)
    assert_close(grad, [0.25, -0.25, 0.0, 0.0], dtype)
    # Close to t = 1 the loss x (1 - t) has no cancellation of x against x t.
    x = np.array([1e4], dtype)
    t = np.array([0.9990000128746033], dtype)  # a float32 number
    loss, _ = ops.binary_cross_entropy_with_logits(x, t)
    assert loss == pytest.approx(1e4 * (1 - 0.9990000128746033), rel=1e-6)


def test_binary_cross_entropy_keeps_relative_accuracy_of_tiny_losses(dtype):
    # Confident and right: every term is log1p(exp(-|x|)) ~ exp(-|x|), far below 1.
    x = np.array([20.0, -30.0, 40.0, -60.0], dtype)
    t = np.array([1.0, 0.0, 1.0, 0.0], dtype)
    loss, _ = ops.binary_cross_entropy_with_logits(x, t)
    expected, _ = reference.binary_cross_entropy_with_logits(x, t)
    assert loss == pytest.approx(expected, rel=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.simd
def test_binary_cross_entropy_around_the_log1p_split(dtype):
    # exp(-|x|) crosses 1/2 at |x| = ln 2, where the log1p reduction switches form.
    x = (math.log(2) + np.linspace(-1e-3, 1e-3, 41)).astype(dtype)
    x = np.concatenate([x, -x, np.linspace(-3, 3, 61, dtype=dtype)])
    t = np.linspace(0, 1, x.size).astype(dtype)
    loss, grad = ops.binary_cross_entropy_with_logits(x, t)
    expected_loss, expected_grad = reference.binary_cross_entropy_with_logits(x, t)
    assert loss == pytest.approx(expected_loss, rel=1e-6 if dtype == np.float32 else 1e-14)
    assert_close(grad, expected_grad, dtype)


def test_subnormal_inputs(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    logits = np.array([[tiny, 0.0, -tiny]], dtype)
    assert_close(ops.softmax(logits), [[1 / 3] * 3], dtype)
    loss, grad = ops.binary_cross_entropy_with_logits(
        np.array([tiny], dtype), np.array([1.0], dtype)
    )
    assert loss == pytest.approx(LN2)
    assert_close(grad, [-0.5], dtype)
    # A probability that is itself subnormal is kept, not flushed to zero.
    small = -100.0 if dtype == np.float32 else -720.0
    probabilities = ops.softmax(np.array([0.0, small], dtype))
    assert probabilities[0] == 1.0
    assert probabilities[1] == pytest.approx(math.exp(small), rel=0.1)
    assert 0 < probabilities[1] < np.finfo(dtype).smallest_normal


def test_minus_infinity_logits_get_probability_zero(dtype):
    logits = np.array([[1.0, -np.inf, 2.0]], dtype)
    assert_close(ops.softmax(logits), [[0.2689414213699951, 0.0, 0.7310585786300049]], dtype)
    log_out = ops.log_softmax(logits)
    assert log_out[0, 1] == -np.inf
    assert log_out[0, 2] == pytest.approx(-0.3132616875182228, rel=1e-6)
    loss, grad = ops.softmax_cross_entropy(logits, np.array([2]))
    assert loss == pytest.approx(0.3132616875182228, rel=1e-6)
    assert_close(grad, [[0.2689414213699951, 0.0, -0.2689414213699951]], dtype)
    loss, _ = ops.softmax_cross_entropy(logits, np.array([1]))
    assert loss == np.inf


def test_plus_infinity_and_all_minus_infinity_rows_are_nan_as_pytorch(dtype):
    logits = np.array([[1.0, np.inf, 2.0], [-np.inf, -np.inf, -np.inf], [0.0, 0.0, 0.0]], dtype)
    for out in (ops.softmax(logits), ops.log_softmax(logits)):
        assert np.isnan(out[:2]).all()
        assert np.isfinite(out[2]).all()


# --- NaN ---------------------------------------------------------------------------------------


def test_nan_logits_propagate_to_their_row(dtype):
    logits = np.zeros((3, 70), dtype)
    logits[1, 37] = np.nan
    for out in (ops.softmax(logits), ops.log_softmax(logits)):
        assert np.isnan(out[1]).all()
        assert np.isfinite(out[[0, 2]]).all()
    loss, grad = ops.softmax_cross_entropy(logits, np.array([0, 1, 2]))
    assert math.isnan(loss)
    assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()
    probs = np.full((3, 70), 1 / 70, dtype)
    loss, grad = ops.softmax_cross_entropy(logits, probs)
    assert math.isnan(loss)
    assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()


def test_nan_logits_and_predictions_give_nan_without_error(dtype):
    x = np.zeros(20000, dtype)
    x[17000] = np.nan
    for loss_fn in (ops.binary_cross_entropy_with_logits, ops.mse):
        loss, grad = loss_fn(x, np.full(20000, 0.5, dtype))
        assert math.isnan(loss)
        assert np.isnan(grad[17000]) and np.isfinite(np.delete(grad, 17000)).all()


def test_nan_in_probability_labels_is_an_error(dtype):
    probs = np.full((40, 1000), 1e-3, dtype)
    probs[33, 999] = np.nan
    with pytest.raises(ValueError, match="labels contain NaN"):
        ops.softmax_cross_entropy(np.zeros((40, 1000), dtype), probs)
    # Also when the logits of that row are NaN too.
    logits = np.zeros((40, 1000), dtype)
    logits[33, 0] = np.nan
    with pytest.raises(ValueError, match="labels contain NaN"):
        ops.softmax_cross_entropy(logits, probs)


def test_nan_in_targets_is_an_error(dtype):
    x = np.zeros(20000, dtype)
    x[5] = np.nan
    target = np.zeros(20000, dtype)
    target[17000] = np.nan
    with pytest.raises(ValueError, match="targets contain NaN"):
        ops.binary_cross_entropy_with_logits(x, target)
    with pytest.raises(ValueError, match="target contains NaN"):
        ops.mse(x, target)


def test_binary_cross_entropy_accepts_targets_outside_unit_interval():
    x, t = np.array([0.5, -2.0]), np.array([2.0, -1.0])
    loss, grad = ops.binary_cross_entropy_with_logits(x, t)
    expected_loss, expected_grad = reference.binary_cross_entropy_with_logits(x, t)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    assert_close(grad, expected_grad, np.float64)


# --- threads -----------------------------------------------------------------------------------


def test_one_and_two_threads_give_the_same_bits(thread_budget, dtype):
    rng = np.random.default_rng(4)
    logits = (rng.standard_normal((96, 1000)) * 4).astype(dtype)
    labels = rng.integers(0, 1000, 96)
    probs = rng.random((96, 1000)).astype(dtype)
    targets = rng.random((96, 1000)).astype(dtype)
    calls = [
        lambda: ops.softmax(logits),
        lambda: ops.log_softmax(logits),
        lambda: ops.softmax_cross_entropy(logits, labels),
        lambda: ops.softmax_cross_entropy(logits, probs),
        lambda: ops.binary_cross_entropy_with_logits(logits, targets),
        lambda: ops.mse(logits, targets),
    ]
    thread_budget(1)
    single = [call() for call in calls]
    thread_budget(2)
    double = [call() for call in calls]
    for one, two in zip(single, double):
        if isinstance(one, tuple):
            assert one[0] == two[0]
            one, two = one[1], two[1]
        assert np.array_equal(one, two, equal_nan=True)


# --- input forms -------------------------------------------------------------------------------


def test_softmax_over_last_axis_of_any_rank(dtype):
    logits = np.arange(24, dtype=dtype).reshape(2, 3, 4) / 7
    out = ops.softmax(logits)
    assert out.shape == (2, 3, 4)
    assert_close(out, reference.softmax(logits.reshape(6, 4)).reshape(2, 3, 4), dtype)
    assert_close(ops.softmax(logits[0, 0]), reference.softmax(logits[0, 0][None])[0], dtype)


@pytest.mark.parametrize("label_dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32,
                                         np.int64, np.uint64])
def test_any_integer_label_dtype(label_dtype):
    logits = np.array([[0.0, math.log(3)], [0.0, 0.0]])
    loss, _ = ops.softmax_cross_entropy(logits, np.array([1, 0], label_dtype))
    assert loss == pytest.approx((math.log(4 / 3) + LN2) / 2, rel=1e-12)


def test_non_contiguous_and_list_inputs():
    rng = np.random.default_rng(5)
    wide = rng.standard_normal((4, 10)).astype(np.float32)
    logits = wide[:, ::2]
    assert not logits.flags.c_contiguous
    assert_close(ops.softmax(logits), reference.softmax(logits), np.float32)
    loss, grad = ops.softmax_cross_entropy(logits, [0, 1, 2, 3])
    assert grad.dtype == np.float32
    expected_loss, expected_grad = reference.softmax_cross_entropy(
        logits, reference.one_hot([0, 1, 2, 3], 5)
    )
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert_close(grad, expected_grad, np.float32)
    # Probabilities as a list take the dtype of the logits.
    loss, grad = ops.softmax_cross_entropy(logits[:1], [[0.2, 0.2, 0.2, 0.2, 0.2]])
    assert grad.dtype == np.float32
    loss, grad = ops.mse([1.0, 2.0], [0.0, 0.0])
    assert loss == 2.5 and grad.dtype == np.float64


def test_zero_dimensional_elementwise_losses_keep_the_shape(dtype):
    loss, grad = ops.mse(np.array(3.0, dtype), np.array(1.0, dtype))
    assert loss == 4.0 and grad.shape == () and grad == 4.0
    loss, grad = ops.binary_cross_entropy_with_logits(np.array(0.0, dtype), 1.0)
    assert loss == pytest.approx(LN2) and grad.shape == () and grad == -0.5


# --- PyTorch cross-checks ----------------------------------------------------------------------


def test_matches_pytorch(dtype):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(6)
    logits = (rng.standard_normal((8, 13)) * 3).astype(dtype)
    logits[0, 3] = -np.inf
    labels = rng.integers(0, 13, 8)
    labels[0] = 4
    probs = rng.random((8, 13)).astype(dtype)
    probs /= probs.sum(axis=1, keepdims=True)
    probs[0, 3] = 0.0
    targets = rng.random((8, 13)).astype(dtype)

    def torch_loss_and_grad(loss_of, x):
        tensor = torch.tensor(x, requires_grad=True)
        loss = loss_of(tensor)
        loss.backward()
        return loss.item(), tensor.grad.numpy()

    tol = {"rel": 1e-5} if dtype == np.float32 else {"rel": 1e-12}
    cases = [
        (ops.softmax_cross_entropy(logits, labels),
         torch_loss_and_grad(lambda z: functional.cross_entropy(z, torch.tensor(labels)), logits)),
        (ops.binary_cross_entropy_with_logits(logits[1:], targets[1:]),
         torch_loss_and_grad(lambda z: functional.binary_cross_entropy_with_logits(
             z, torch.tensor(targets[1:])), logits[1:])),
        (ops.mse(logits[1:], targets[1:]),
         torch_loss_and_grad(lambda z: functional.mse_loss(z, torch.tensor(targets[1:])),
                             logits[1:])),
        # With a -inf logit and probability 0, PyTorch's loss is NaN (0 * -inf): compare rows 1:.
        (ops.softmax_cross_entropy(logits[1:], probs[1:]),
         torch_loss_and_grad(lambda z: functional.cross_entropy(z, torch.tensor(probs[1:])),
                             logits[1:])),
    ]
    for (loss, grad), (torch_loss, torch_grad) in cases:
        assert loss == pytest.approx(torch_loss, **tol)
        assert_close(grad, torch_grad, dtype)
    loss, grad = ops.softmax_cross_entropy(logits, probs)
    torch_loss, torch_grad = torch_loss_and_grad(
        lambda z: functional.cross_entropy(z, torch.tensor(probs)), logits
    )
    assert math.isnan(loss) and math.isnan(torch_loss)
    assert_close(grad, torch_grad, dtype)
    inf = np.inf
    special = np.array([[1.0, inf, 2.0], [-inf, -inf, 0.0], [-inf] * 3, [3.0, 1.0, 2.0]], dtype)
    np.testing.assert_allclose(ops.softmax(special), functional.softmax(torch.tensor(special), -1),
                               rtol=1e-6)
    np.testing.assert_allclose(ops.log_softmax(special),
                               functional.log_softmax(torch.tensor(special), -1), rtol=1e-6)


# --- errors ------------------------------------------------------------------------------------


def raises(error, message):
    """pytest.raises matching `message` literally (the messages quote shapes and ranges)."""
    return pytest.raises(error, match=re.escape(message))


@pytest.mark.parametrize("function", [ops.softmax, ops.log_softmax])
def test_softmax_errors(function):
    with raises(TypeError, "logits must be a float32 or float64 array, got dtype int64"):
        function(np.zeros((2, 3), np.int64))
    for bad in (np.float16, np.complex128, np.bool_):
        with raises(TypeError, "logits must be a float32 or float64 array"):
            function(np.zeros((2, 3), bad))
    with raises(ValueError, "logits must have at least 1 dimension (..., C), got a 0-d array"):
        function(np.float64(1.0))
    for shape in [(0, 3), (3, 0), (0,)]:
        with raises(ValueError, "logits is empty (shape"):
            function(np.zeros(shape))


def test_softmax_cross_entropy_logits_errors():
    with raises(ValueError, "logits must be 2-dimensional (shape (N, C)), got shape (3,)"):
        ops.softmax_cross_entropy(np.zeros(3), np.array([0]))
    with raises(ValueError, "logits is empty (shape (0, 3))"):
        ops.softmax_cross_entropy(np.zeros((0, 3)), np.zeros(0, np.int64))
    with raises(ValueError, "logits is empty (shape (2, 0))"):
        ops.softmax_cross_entropy(np.zeros((2, 0)), np.zeros(2, np.int64))
    with raises(TypeError, "logits must be a float32 or float64 array"):
        ops.softmax_cross_entropy(np.zeros((2, 3), np.int32), np.zeros(2, np.int64))


@pytest.mark.parametrize("bad", [3, -1, 2**40])
def test_labels_out_of_range(bad):
    with raises(ValueError, f"labels must be class indices in [0, 3), got {bad} at index 1"):
        ops.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, bad]))


def test_uint64_labels_beyond_int64_are_out_of_range():
    with raises(ValueError, "labels must be class indices in [0, 3), got 18446744073709551615"):
        ops.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 2**64 - 1], np.uint64))


def test_labels_shape_and_dtype_errors():
    logits = np.zeros((4, 3))
    with raises(ValueError, "labels must have shape (N,) = (4,) to match logits of shape (4, 3), "
                            "got (3,)"):
        ops.softmax_cross_entropy(logits, np.array([0, 1, 2]))
    with raises(ValueError, "integer labels are class indices and must have shape (N,) = (4,), "
                            "got (4, 3)"):
        ops.softmax_cross_entropy(logits, np.zeros((4, 3), np.int64))
    with pytest.raises(TypeError, match="1-D float array .*class indices must be integers"):
        ops.softmax_cross_entropy(logits, np.array([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(TypeError, match="labels must be integer class indices .* got dtype bool"):
        ops.softmax_cross_entropy(logits, np.array([True, False, True, False]))
    with raises(TypeError, "got dtype complex128"):
        ops.softmax_cross_entropy(logits, np.zeros(4, np.complex128))
    with raises(TypeError, "got dtype str"):
        ops.softmax_cross_entropy(logits, ["a", "b", "c", "d"])
    with raises(TypeError, "labels must be array-like of numbers"):
        ops.softmax_cross_entropy(logits, [[0.5, 0.5], [1.0]])


def test_probability_labels_errors():
    logits = np.zeros((4, 3), np.float32)
    with raises(TypeError, "cannot mix float32 and float64 in one call"):
        ops.softmax_cross_entropy(logits, np.full((4, 3), 1 / 3))
    with raises(TypeError, "labels must be a float32 or float64 array, got dtype float16"):
        ops.softmax_cross_entropy(logits, np.zeros((4, 3), np.float16))
    with raises(ValueError, "probability labels must have the shape of logits (4, 3), got (4, 2)"):
        ops.softmax_cross_entropy(logits, np.zeros((4, 2), np.float32))
    with raises(ValueError, "must have the shape of logits (4, 3), got (4, 3, 1)"):
        ops.softmax_cross_entropy(logits, np.zeros((4, 3, 1), np.float32))


@pytest.mark.parametrize(
    "function, first, second",
    [(ops.binary_cross_entropy_with_logits, "logits", "targets"), (ops.mse, "pred", "target")],
)
def test_elementwise_loss_errors(function, first, second):
    with raises(ValueError, f"{second} must have the shape of {first} (2, 3), got (3, 2)"):
        function(np.zeros((2, 3)), np.zeros((3, 2)))
    with raises(ValueError, f"{first} is empty (shape (0, 3))"):
        function(np.zeros((0, 3)), np.zeros((0, 3)))
    with raises(TypeError, "cannot mix float32 and float64"):
        function(np.zeros(3, np.float32), np.zeros(3))
    with raises(TypeError, f"{second} must be a float32 or float64 array, got dtype int64"):
        function(np.zeros(3), np.zeros(3, np.int64))


def test_core_rechecks_sizes_without_crashing():
    logits = np.zeros((4, 3))
    with raises(ValueError, "labels: dimension 0 must be 4, got 3"):
        _core.softmax_cross_entropy(logits, np.zeros(3, np.int64))
    with raises(ValueError, "labels must be class indices in [0, 3), got 7 at index 0"):
        _core.softmax_cross_entropy(logits, np.array([7, 0, 0, 0]))
    with raises(ValueError, "logits and labels must have the same shape"):
        _core.softmax_cross_entropy(logits, np.zeros((4, 2)))
    with raises(ValueError, "logits must have 2 dimensions, got 1"):
        _core.softmax(np.zeros(3))
    with raises(ValueError, "C (classes) must be >= 1, got 0"):
        _core.log_softmax(np.zeros((2, 0)))
    with raises(ValueError, "input and target must have the same shape"):
        _core.mse(np.zeros(3), np.zeros(4))
    with raises(ValueError, "E (elements) must be >= 1, got 0"):
        _core.binary_cross_entropy_with_logits(np.zeros(0), np.zeros(0))
    with raises(TypeError, "incompatible function arguments"):
        _core.softmax_cross_entropy(logits, np.zeros(4, np.int32))
