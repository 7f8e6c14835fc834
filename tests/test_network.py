"""MLP: worked example, the reference network for every option, gradchecks, training steps,
dropout masks, determinism, atomicity of failed steps, state dicts, PyTorch and error paths.

Dims: N = batch, D = inputs, C = outputs.
"""

import math
import pickle
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradwatch
import reference
from conftest import DTYPES
from gradwatch import optim


@pytest.fixture
def thread_budget():
    before = gradwatch.get_num_threads()
    yield gradwatch.set_num_threads
    gradwatch.set_num_threads(before)


def network_tolerance(dtype, scale=1.0):
    """The network against the float64 reference. float32 rounding passes through several GEMMs,
    batch norm and a loss, so its tolerance is 10x the single-kernel one of conftest."""
    if np.dtype(dtype) == np.float32:
        return {"rtol": 2e-4 * scale, "atol": 2e-5 * scale}
    return {"rtol": 1e-9 * scale, "atol": 1e-11 * scale}


def assert_net_close(actual, expected, dtype, scale=1.0, what=""):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), expected, err_msg=what, **network_tolerance(dtype, scale)
    )


def assert_gradients_close(actual, expected, dtype, scale=1.0):
    """Each gradient against the reference, relative to the largest gradient of the network:
    rounding errors scale with the terms summed, and a bias before batch norm sums terms of the
    network's size to a gradient of 0."""
    assert actual.keys() == expected.keys()
    magnitude = max(np.abs(g).max() for g in expected.values()) + 1e-6
    for name, value in expected.items():
        assert actual[name].dtype == dtype
        assert_net_close(actual[name] / magnitude, value / magnitude, dtype, scale, what=name)


def config_of(net):
    """The reference's description of a gradwatch.MLP."""
    hidden = len(net.layer_sizes) - 2
    return {
        "activations": list(net.activation),
        "batchnorm": net.batchnorm,
        "residual": [i in net.residual_layers for i in range(hidden)],
        "dropout": list(net.dropout),
        "loss": net.loss,
        "bn_eps": net.bn_eps,
        "bn_momentum": net.bn_momentum,
    }


def state64(net):
    return {name: value.astype(np.float64) for name, value in net.state_dict().items()}


def batch_for(net, n, seed=0, scale=1.0):
    """x (N, D) of the net's dtype and matching targets."""
    rng = np.random.default_rng(seed)
    x = (scale * rng.standard_normal((n, net.layer_sizes[0]))).astype(net.dtype)
    outputs = net.layer_sizes[-1]
    if net.loss == "softmax_cross_entropy":
        y = rng.integers(0, outputs, n)
    elif net.loss == "binary_cross_entropy_with_logits":
        y = rng.uniform(0, 1, (n, outputs)).astype(net.dtype)
    else:
        y = rng.standard_normal((n, outputs)).astype(net.dtype)
    return x, y


def reference_step(net, x, y, training=True):
    """(logits, loss, grads, cache) of the reference for net's current state and masks."""
    params = state64(net)
    masks = net._dropout_masks(x.shape[0]) if training else None
    logits, cache = reference.mlp_forward(params, x, config_of(net), training, masks)
    loss, grad_logits = reference.mlp_loss(logits, y, net.loss)
    grads = reference.mlp_backward(params, cache, grad_logits, config_of(net))
    return logits, loss, grads, cache


def assert_state_equal(before, after):
    assert before.keys() == after.keys()
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


def optimizer_state(opt):
    state = opt.state_dict()
    return state["step"], [{k: v.copy() for k, v in s.items()} for s in state["state"]]


def assert_optimizer_state_equal(before, after):
    assert before[0] == after[0]
    for s_before, s_after in zip(before[1], after[1]):
        for name in s_before:
            np.testing.assert_array_equal(s_before[name], s_after[name])


# ---- worked example -----------------------------------------------------------------------


def test_worked_example(dtype):
    # x = [1, 1]; z0 = x @ W0 + b0 = [4.5, 5.5] (relu keeps it); logits = z0 @ W1 + b1 = -0.75;
    # mse against 0.25: loss 1, dlogits = -2, dW1 = z0^T dlogits = [-9, -11], db1 = -2,
    # dz0 = dlogits W1^T = [-2, 2], dW0 = x^T dz0 = [[-2, 2], [-2, 2]], db0 = [-2, 2].
    net = gradwatch.MLP([2, 2, 1], loss="mse", dtype=dtype, seed=0)
    net.load_state_dict({
        "dense0.weight": np.array([[1, 2], [3, 4]], dtype),
        "dense0.bias": np.array([0.5, -0.5], dtype),
        "dense1.weight": np.array([[1], [-1]], dtype),
        "dense1.bias": np.array([0.25], dtype),
    })
    x = np.ones((1, 2), dtype)
    np.testing.assert_array_equal(net.forward(x), [[-0.75]])
    loss, grads = net.loss_and_gradients(x, np.array([0.25]))
    assert loss == 1.0
    np.testing.assert_array_equal(grads["dense1.weight"], [[-9], [-11]])
    np.testing.assert_array_equal(grads["dense1.bias"], [-2])
    np.testing.assert_array_equal(grads["dense0.weight"], [[-2, 2], [-2, 2]])
    np.testing.assert_array_equal(grads["dense0.bias"], [-2, 2])
    # One SGD step of lr 0.5 with the global norm sqrt(4 + 81 + 121 + 4 + 16 + 4) = sqrt(230).
    loss, norm = net.train_step(x, [0.25], optim.SGD(lr=0.5))
    assert loss == 1.0
    assert norm == pytest.approx(math.sqrt(230.0), rel=1e-7)
    state = net.state_dict()
    np.testing.assert_array_equal(state["dense1.weight"], [[5.5], [4.5]])
    np.testing.assert_array_equal(state["dense0.bias"], [1.5, -1.5])
    assert net.predict(x).shape == (1,)


# ---- construction ---------------------------------------------------------------------------


def test_initial_state_follows_init_and_the_documented_seeds():
    net = gradwatch.MLP([5, 7, 7, 3], init=["lecun_normal", 0.05], batchnorm=True, seed=11,
                        activation=["leaky_relu", "tanh"])
    seeds = np.random.SeedSequence(11).generate_state(4, np.uint64)
    state = net.state_dict()
    np.testing.assert_array_equal(
        state["dense0.weight"], gradwatch.init.weights(5, 7, "lecun_normal", seed=int(seeds[0]))
    )
    np.testing.assert_array_equal(
        state["dense1.weight"], gradwatch.init.weights(7, 7, 0.05, seed=int(seeds[1]))
    )
    # The output layer takes the last hidden layer's scheme.
    np.testing.assert_array_equal(
        state["dense2.weight"], gradwatch.init.weights(7, 3, 0.05, seed=int(seeds[2]))
    )
    for i in range(2):
        np.testing.assert_array_equal(state[f"bn{i}.gamma"], np.ones(7, np.float32))
        np.testing.assert_array_equal(state[f"bn{i}.running_var"], np.ones(7, np.float32))
        for name in (f"dense{i}.bias", f"bn{i}.beta", f"bn{i}.running_mean"):
            np.testing.assert_array_equal(state[name], np.zeros(7, np.float32))
    assert net.init == ("lecun_normal", 0.05, 0.05)


def test_he_init_uses_the_leaky_relu_slope():
    net = gradwatch.MLP([6, 9, 2], activation="leaky_relu", seed=3)
    seed = int(np.random.SeedSequence(3).generate_state(3, np.uint64)[0])
    expected = gradwatch.init.weights(6, 9, "he_normal", seed=seed, nonlinearity="leaky_relu",
                                      negative_slope=0.01)
    np.testing.assert_array_equal(net.state_dict()["dense0.weight"], expected)


def test_seeds():
    a = gradwatch.MLP([4, 6, 3], seed=5).state_dict()
    b = gradwatch.MLP([4, 6, 3], seed=5).state_dict()
    c = gradwatch.MLP([4, 6, 3], seed=6).state_dict()
    assert_state_equal(a, b)
    assert not np.array_equal(a["dense0.weight"], c["dense0.weight"])
    drawn = gradwatch.MLP([4, 6, 3])
    assert isinstance(drawn.seed, int) and 0 <= drawn.seed < 2**64
    assert_state_equal(drawn.state_dict(), gradwatch.MLP([4, 6, 3], seed=drawn.seed).state_dict())


def test_attributes_and_repr():
    net = gradwatch.MLP([4, 8, 8, 6, 6, 3], residual=True, batchnorm=True, dropout=0.25,
                        activation="gelu", seed=1)
    assert net.layer_sizes == (4, 8, 8, 6, 6, 3)
    assert net.residual_layers == (1, 3)
    assert list(net.parameters)[:4] == ["dense0.weight", "dense0.bias", "bn0.gamma", "bn0.beta"]
    assert net.parameters["dense2.weight"] == (8, 6)
    assert net.parameters["dense4.bias"] == (3,)
    assert net.n_parameters == sum(math.prod(s) for s in net.parameters.values())
    assert list(net.state_dict())[:6] == [
        "dense0.weight", "dense0.bias", "bn0.gamma", "bn0.beta", "bn0.running_mean",
        "bn0.running_var",
    ]
    text = repr(net)
    for part in ("layer_sizes=(4, 8, 8, 6, 6, 3)", "activation='gelu'", "batchnorm=True",
                 "residual=True (layers [1, 3])", "dropout=0.25", "dtype=float32", "seed=1",
                 f"n_parameters={net.n_parameters}"):
        assert part in text
    assert gradwatch.MLP([3, 2]).residual_layers == ()


# ---- the reference network ------------------------------------------------------------------

# (layer sizes, MLP options): every option and loss, widths with SIMD remainders.
CASES = [
    ([7, 12, 5], dict(activation="relu")),
    ([7, 12, 9, 5], dict(activation=["sigmoid", "tanh"], init="xavier_uniform")),
    ([6, 11, 11, 4], dict(activation=["leaky_relu", "elu"], batchnorm=True)),
    ([6, 11, 11, 11, 4], dict(activation="selu", residual=True, init="lecun_normal")),
    ([6, 10, 10, 3], dict(activation=["gelu", "gelu_tanh"], batchnorm=True, residual=True)),
    ([5, 13, 13, 3], dict(activation=["silu", "softplus"], dropout=[0.3, 0.6])),
    ([5, 13, 13, 3], dict(activation="relu", batchnorm=True, residual=True, dropout=0.2)),
    ([5, 9, 4], dict(activation="identity", loss="binary_cross_entropy_with_logits")),
    ([5, 9, 9, 2], dict(activation="tanh", batchnorm=True, loss="mse", dropout=0.1)),
    ([8, 3], dict(loss="mse")),
]


def case_id(case):
    sizes, options = case
    return "-".join(map(str, sizes)) + "," + ",".join(f"{k}={v}" for k, v in options.items())


@pytest.mark.simd
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_loss_and_gradients_match_reference(case, dtype):
    sizes, options = case
    net = gradwatch.MLP(sizes, dtype=dtype, seed=7, **options)
    net.dropout_step = 3
    x, y = batch_for(net, 37, seed=1)
    logits, loss, grads, _ = reference_step(net, x, y)
    assert_net_close(net.forward(x, training=True), logits, dtype, what="training forward")
    got_loss, got_grads = net.loss_and_gradients(x, y)
    assert_net_close(got_loss, loss, dtype, what="loss")
    assert list(got_grads) == list(net.parameters)
    assert_gradients_close(got_grads, grads, dtype)
    inference, _ = reference.mlp_forward(state64(net), x, config_of(net), training=False)
    assert_net_close(net.forward(x), inference, dtype, what="inference forward")


@pytest.mark.simd
@settings(max_examples=25, deadline=None)
@given(
    widths=st.lists(st.integers(1, 20), min_size=2, max_size=5),
    batch=st.integers(2, 70),
    activation=st.sampled_from(reference.ACTIVATION_KINDS),
    batchnorm=st.booleans(),
    residual=st.booleans(),
    dropout=st.sampled_from([0.0, 0.5]),
    loss=st.sampled_from(gradwatch.network.LOSSES),
    seed=st.integers(0, 2**32),
    dtype=st.sampled_from(DTYPES),
)
def test_random_networks_match_reference(widths, batch, activation, batchnorm, residual, dropout,
                                         loss, seed, dtype):
    hidden = len(widths) > 2
    net = gradwatch.MLP(widths, activation=activation, batchnorm=batchnorm and hidden,
                        residual=residual, dropout=dropout if hidden else 0.0, loss=loss,
                        dtype=dtype, seed=seed)
    x, y = batch_for(net, batch, seed=seed)
    logits, loss_value, grads, _ = reference_step(net, x, y)
    got_loss, got_grads = net.loss_and_gradients(x, y)
    # Batch norm divides by the batch's spread: float32 errors grow where it is small.
    scale = 20.0 if batchnorm else 1.0
    assert_net_close(net.forward(x, training=True), logits, dtype, scale, "training forward")
    assert_net_close(got_loss, loss_value, dtype, scale, "loss")
    assert_gradients_close(got_grads, grads, dtype, scale)


def test_large_batches_are_processed_in_chunks(dtype):
    net = gradwatch.MLP([9, 17, 17, 3], batchnorm=True, residual=True, dtype=dtype, seed=2)
    net.train_step(*batch_for(net, 40), optim.SGD(lr=0.1))  # running statistics away from 0, 1
    x, _ = batch_for(net, 600, seed=3)
    expected, _ = reference.mlp_forward(state64(net), x, config_of(net), training=False)
    assert_net_close(net.forward(x), expected, dtype)


@pytest.mark.simd
@pytest.mark.parametrize("width", [1, 7, 8, 9, 17, 63, 64, 65, 130])
def test_few_row_batches_match_reference(width, dtype):
    # Up to 4 rows the forward GEMMs are gradwatch's own, in column blocks of whole vectors.
    net = gradwatch.MLP([11, width, width, 3], batchnorm=True, residual=True, dtype=dtype, seed=6)
    x, y = batch_for(net, 40)
    net.train_step(x, y, optim.SGD(lr=0.01))
    for rows in range(1, 6):
        expected, _ = reference.mlp_forward(state64(net), x[:rows], config_of(net), training=False)
        assert_net_close(net.forward(x[:rows]), expected, dtype, what=f"{rows} rows")
    _, loss, grads, _ = reference_step(net, x[:3], y[:3])
    got_loss, got_grads = net.loss_and_gradients(x[:3], y[:3])
    assert_net_close(got_loss, loss, dtype, 10.0)
    assert_gradients_close(got_grads, grads, dtype, 10.0)


def test_workspace_grows_and_shrinks(dtype):
    net = gradwatch.MLP([6, 10, 10, 3], batchnorm=True, dropout=0.3, residual=True, dtype=dtype,
                        seed=4)
    for n in (8, 70, 8, 33, 70):
        x, y = batch_for(net, n, seed=n)
        _, loss, grads, _ = reference_step(net, x, y)
        got_loss, got_grads = net.loss_and_gradients(x, y)
        assert_net_close(got_loss, loss, dtype, 10.0)
        assert_gradients_close(got_grads, grads, dtype, 10.0)


def test_loss_and_gradients_and_training_forward_change_nothing(dtype):
    net = gradwatch.MLP([6, 10, 10, 3], batchnorm=True, dropout=0.3, dtype=dtype, seed=4)
    x, y = batch_for(net, 16)
    before = net.state_dict()
    first = net.loss_and_gradients(x, y)
    net.forward(x, training=True)
    second = net.loss_and_gradients(x, y)
    assert_state_equal(before, net.state_dict())
    assert net.dropout_step == 0
    assert first[0] == second[0]
    assert_state_equal(first[1], second[1])


# ---- training steps -------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_sgd_steps_match_reference(case, dtype):
    sizes, options = case
    net = gradwatch.MLP(sizes, dtype=dtype, seed=8, **options)
    opt = optim.SGD(lr=0.05)
    for step in range(3):
        x, y = batch_for(net, 24, seed=step)
        params = state64(net)
        _, loss, grads, cache = reference_step(net, x, y)
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        got_loss, got_norm = net.train_step(x, y, opt)
        assert net.dropout_step == step + 1
        assert_net_close(got_loss, loss, dtype, 10.0)
        assert_net_close(got_norm, norm, dtype, 10.0)
        state = net.state_dict()
        for name, grad in grads.items():
            assert_net_close(state[name], params[name] - 0.05 * grad, dtype, 10.0, what=name)
        if net.batchnorm:
            for name, value in reference.mlp_running_statistics(params, cache,
                                                                config_of(net)).items():
                assert_net_close(state[name], value, dtype, 10.0, what=name)


def test_clipping_by_norm_and_value(dtype):
    net = gradwatch.MLP([6, 10, 3], dtype=dtype, seed=9)
    x, y = batch_for(net, 12, scale=5.0)
    params = state64(net)
    _, _, grads, _ = reference_step(net, x, y)
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    clip_norm, clip_value = norm / 4, 0.01
    _, got_norm = net.train_step(x, y, optim.SGD(lr=1.0), clip_grad_norm=clip_norm,
                                 clip_grad_value=clip_value)
    assert_net_close(got_norm, norm, dtype)  # the norm before clipping
    factor = min(1.0, clip_norm / (norm + 1e-6))
    state = net.state_dict()
    for name, grad in grads.items():
        clipped = np.clip(grad * factor, -clip_value, clip_value)
        assert_net_close(state[name], params[name] - clipped, dtype, what=name)
    # A threshold above the norm changes nothing: the scale is 1.
    other = gradwatch.MLP([6, 10, 3], dtype=dtype, seed=9)
    other.train_step(x, y, optim.SGD(lr=1.0), clip_grad_norm=norm * 10)
    reference_update = {name: params[name] - grads[name] for name in grads}
    for name, value in reference_update.items():
        assert_net_close(other.state_dict()[name], value, dtype, what=name)


def test_training_learns_a_simple_rule():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 16)).astype(np.float32)
    y = (x[:, :4].sum(axis=1) > 0).astype(np.int64) + 2 * (x[:, 4] > 0)
    net = gradwatch.MLP([16, 32, 32, 4], batchnorm=True, seed=0)
    opt = optim.Adam(lr=0.01)
    first = net.evaluate(x, y)
    for epoch in range(30):
        for start in range(0, 256, 32):
            net.train_step(x[start:start + 32], y[start:start + 32], opt)
    last = net.evaluate(x, y)
    assert last["loss"] < first["loss"] / 3
    assert last["accuracy"] > 0.9


def test_predict_predict_proba_and_evaluate(dtype):
    for loss, outputs in (("softmax_cross_entropy", 4), ("binary_cross_entropy_with_logits", 3),
                          ("binary_cross_entropy_with_logits", 1), ("mse", 2)):
        net = gradwatch.MLP([5, 8, outputs], loss=loss, dtype=dtype, seed=1)
        x, y = batch_for(net, 300, seed=2)  # more than one inference chunk
        logits, _ = reference.mlp_forward(state64(net), x, config_of(net), training=False)
        expected_loss, _ = reference.mlp_loss(logits, y, loss)
        result = net.evaluate(x, y)
        assert_net_close(result["loss"], expected_loss, dtype, 10.0)
        if loss == "softmax_cross_entropy":
            np.testing.assert_array_equal(net.predict(x), logits.argmax(axis=1))
            assert_net_close(net.predict_proba(x), reference.softmax(logits), dtype)
            assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(axis=1) == y))
        elif loss == "mse":
            assert set(result) == {"loss"}
            assert_net_close(net.predict(x), logits, dtype)
            with pytest.raises(TypeError, match="regression network: use predict"):
                net.predict_proba(x)
        else:
            predicted = (logits > 0).astype(np.int64)
            expected_predict = predicted[:, 0] if outputs == 1 else predicted
            np.testing.assert_array_equal(net.predict(x), expected_predict)
            assert_net_close(net.predict_proba(x), 1 / (1 + np.exp(-logits)), dtype)
            accuracy = np.mean(predicted == (y > 0.5))
            assert result["accuracy"] == pytest.approx(accuracy)


def test_targets_of_shape_n_for_one_output_and_integer_targets(dtype):
    net = gradwatch.MLP([3, 4, 1], loss="binary_cross_entropy_with_logits", dtype=dtype, seed=0)
    x = np.ones((4, 3), dtype)
    flat = net.loss_and_gradients(x, np.array([0, 1, 1, 0]))
    column = net.loss_and_gradients(x, np.array([[0], [1], [1], [0]], dtype))
    assert flat[0] == column[0]


# ---- dropout --------------------------------------------------------------------------------


def test_dropout_masks_follow_the_documented_stream():
    net = gradwatch.MLP([4, 13, 6, 3], dropout=[0.3, 0.75], seed=12)
    net.dropout_step = 2**32 + 5  # both halves of the step counter
    masks = net._dropout_masks(21)
    seed = int(np.random.SeedSequence(12).generate_state(4, np.uint64)[-1])
    expected = reference.dropout_masks(seed, 2**32 + 5, [13, 6], 21, [0.3, 0.75])
    assert masks.keys() == expected.keys() == {0, 1}
    for i in masks:
        np.testing.assert_array_equal(masks[i], expected[i])


def test_dropout_rate_and_step_counter():
    net = gradwatch.MLP([4, 500, 3], dropout=0.3, seed=1)
    first = net._dropout_masks(100)[0]
    assert abs(first.mean() - 0.7) < 0.01
    x, y = batch_for(net, 100)
    net.train_step(x, y, optim.SGD(lr=0.0))
    second = net._dropout_masks(100)[0]
    assert net.dropout_step == 1
    assert abs(second.mean() - 0.7) < 0.01
    assert 0.55 < np.mean(first == second) < 0.6  # independent: 0.7^2 + 0.3^2 = 0.58
    net.dropout_step = 0
    np.testing.assert_array_equal(net._dropout_masks(100)[0], first)


def test_dropout_is_inverted_and_off_in_inference():
    net = gradwatch.MLP([3, 40, 2], activation="identity", dropout=0.5, seed=2)
    net.load_state_dict({**net.state_dict(), "dense1.weight": np.ones((40, 2), np.float32)})
    x = np.ones((1, 3), np.float32)
    state = net.state_dict()
    a = x @ state["dense0.weight"]
    mask = net._dropout_masks(1)[0]
    np.testing.assert_allclose(net.forward(x, training=True), (a * mask * 2).sum() * np.ones(
        (1, 2)), rtol=1e-6)
    np.testing.assert_allclose(net.forward(x), a.sum() * np.ones((1, 2)), rtol=1e-6)


# ---- gradcheck ------------------------------------------------------------------------------

GRADCHECK_CASES = [
    ([3, 5, 4, 3], dict(activation=["sigmoid", "tanh"])),
    ([3, 5, 5, 3], dict(activation=["leaky_relu", "elu"], residual=True)),
    ([3, 5, 5, 2], dict(activation=["selu", "gelu"], batchnorm=True)),
    ([3, 6, 6, 3], dict(activation=["gelu_tanh", "silu"], batchnorm=True, residual=True,
                        dropout=0.3)),
    ([3, 5, 2], dict(activation="softplus", loss="binary_cross_entropy_with_logits")),
    ([3, 5, 5, 2], dict(activation="relu", batchnorm=True, dropout=0.4, loss="mse")),
    ([4, 2], dict(activation="identity")),
]


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=case_id)
def test_gradcheck(case):
    sizes, options = case
    net = gradwatch.MLP(sizes, dtype="float64", seed=3, **options)
    x, y = batch_for(net, 6, seed=4)
    before = net.state_dict()
    worst = gradwatch.gradcheck(net, x, y)
    assert worst.keys() == net.parameters.keys()
    assert max(worst.values()) < 1e-5, worst
    assert_state_equal(before, net.state_dict())


def test_gradcheck_sees_a_wrong_gradient(monkeypatch):
    net = gradwatch.MLP([3, 4, 2], activation="tanh", dtype="float64", seed=3)
    x, y = batch_for(net, 5)
    original = net.loss_and_gradients

    def wrong(x, y):
        loss, grads = original(x, y)
        grads["dense0.weight"][1, 2] *= 1.01
        return loss, grads

    monkeypatch.setattr(net, "loss_and_gradients", wrong)
    worst = gradwatch.gradcheck(net, x, y)
    assert worst["dense0.weight"] > 5e-3
    assert worst["dense1.weight"] < 1e-5


def test_gradcheck_errors():
    with pytest.raises(TypeError, match="needs a float64 network"):
        gradwatch.gradcheck(gradwatch.MLP([2, 2]), np.ones((2, 2), np.float32), [0, 1])
    with pytest.raises(TypeError, match="net must be a gradwatch.MLP"):
        gradwatch.gradcheck("net", None, None)
    net = gradwatch.MLP([2, 2], dtype="float64")
    with pytest.raises(ValueError, match="eps must be > 0"):
        gradwatch.gradcheck(net, np.ones((2, 2)), [0, 1], eps=0)


# ---- determinism ----------------------------------------------------------------------------


# (layer sizes, MLP options, optimiser, batch, train_step options). The shapes split the hidden
# GEMMs into 4 blocks and the passes into several tiles (100 x 160 x 160: 4 column blocks, a
# pass over (100, 160): 4 row chunks; 64 x 192 x 192: 4 blocks, 2 chunks), so with 2 threads both
# threads really share each phase.
DETERMINISM_CASES = {
    "bn_dropout_residual_momentum": (
        [48, 160, 160, 10], dict(batchnorm=True, dropout=0.2, residual=True),
        lambda: optim.SGD(lr=0.05, momentum=0.9), 100, dict(clip_grad_norm=5.0)),
    "dropout_residual_adam": (
        [64, 192, 192, 10], dict(activation="tanh", dropout=0.1, residual=True),
        lambda: optim.Adam(lr=1e-3, weight_decay=1e-4), 64, dict(clip_grad_value=0.5)),
    "bn_lars_mse": (
        [48, 160, 160, 6], dict(batchnorm=True, activation="gelu", loss="mse"),
        lambda: optim.LARS(lr=0.5, weight_decay=1e-4, trust_coefficient=0.02), 100, {}),
}


def train_100_steps(case, threads, thread_budget):
    thread_budget(threads)
    sizes, options, make_optimizer, batch, step_options = DETERMINISM_CASES[case]
    net = gradwatch.MLP(sizes, seed=21, **options)
    opt = make_optimizer()
    x, y = batch_for(net, batch)
    norms = [net.train_step(x, y, opt, **step_options)[1] for _ in range(100)]
    return net.state_dict(), norms, optimizer_state(opt)


@pytest.mark.parametrize("case", list(DETERMINISM_CASES))
def test_100_steps_are_bitwise_identical_for_one_and_two_threads_and_runs(case, thread_budget):
    two, norms_two, opt_two = train_100_steps(case, 2, thread_budget)
    again, norms_again, opt_again = train_100_steps(case, 2, thread_budget)
    one, norms_one, opt_one = train_100_steps(case, 1, thread_budget)
    assert norms_two == norms_again == norms_one
    assert_state_equal(two, again)
    assert_state_equal(two, one)
    assert_optimizer_state_equal(opt_two, opt_again)
    assert_optimizer_state_equal(opt_two, opt_one)


def test_inference_is_bitwise_identical_for_one_and_two_threads(thread_budget):
    net = gradwatch.MLP([300, 512, 512, 10], batchnorm=True, seed=1)
    x, _ = batch_for(net, 700)
    results = []
    for threads in (1, 2):
        thread_budget(threads)
        results.append((net.forward(x), net.forward(x[:1]), net.forward(x[:3])))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ---- non-finite values and atomicity --------------------------------------------------------


def snapshot(net, opt):
    return net.state_dict(), optimizer_state(opt), net.dropout_step


def assert_unchanged(net, opt, before):
    assert_state_equal(before[0], net.state_dict())
    assert_optimizer_state_equal(before[1], optimizer_state(opt))
    assert net.dropout_step == before[2]


def trained_net(dtype, **options):
    net = gradwatch.MLP([4, 6, 6, 3], batchnorm=True, dropout=0.25, dtype=dtype, seed=5,
                        **options)
    opt = optim.Adam(lr=0.01)
    for step in range(3):
        net.train_step(*batch_for(net, 8, seed=step), opt)
    return net, opt


def test_nan_input_raises_and_changes_nothing(dtype):
    net, opt = trained_net(dtype)
    x, y = batch_for(net, 8)
    x[3, 1] = np.nan
    before = snapshot(net, opt)
    with pytest.raises(gradwatch.NonFiniteError, match="non-finite value in loss") as error:
        net.train_step(x, y, opt)
    assert (error.value.layer, error.value.tensor) == ("loss", "value")
    assert_unchanged(net, opt, before)
    net.train_step(*batch_for(net, 8), opt)  # the network still trains
    assert net.dropout_step == before[2] + 1


def test_overflowing_gradient_names_the_first_layer_in_backward_order(dtype):
    # tanh keeps the forward finite; the large output weights make the first layer's weight
    # gradient overflow while the loss (about 1e30, in double) stays finite.
    huge = 1e30 if dtype == np.float32 else 1e300
    net = gradwatch.MLP([3, 4, 2], activation="tanh", dtype=dtype, seed=1)
    state = net.state_dict()
    state["dense0.weight"] = np.full((3, 4), 1 / huge ** 0.5, dtype)
    state["dense1.weight"] = np.array([[huge, -huge]] * 4, dtype)
    net.load_state_dict(state)
    opt = optim.SGD(lr=0.1, momentum=0.9)
    x = np.full((2, 3), huge ** 0.5, dtype)
    loss, grads = net.loss_and_gradients(x, [0, 1])
    assert math.isfinite(loss) and not np.isfinite(grads["dense0.weight"]).all()
    assert np.isfinite(grads["dense1.weight"]).all()
    before = snapshot(net, opt)
    with pytest.raises(gradwatch.NonFiniteError) as error:
        net.train_step(x, [0, 1], opt)
    assert (error.value.layer, error.value.tensor) == ("dense0", "weight gradient")
    assert_unchanged(net, opt, before)


def test_every_layer_non_finite_names_the_output_layer_first():
    # Targets near float32's largest value: the mse loss (summed in double) stays finite, each
    # row's output gradient is about -1.5e38 and the sums over 4 rows overflow in every layer;
    # the output layer comes first in backward order, its bias gradient before its weights'.
    net = gradwatch.MLP([3, 4, 1], loss="mse", seed=1)  # relu, which passes the gradient on
    state = net.state_dict()
    state["dense0.weight"] = np.full((3, 4), 1.0, np.float32)
    state["dense1.weight"] = np.full((4, 1), 1.0, np.float32)
    net.load_state_dict(state)
    x = np.ones((4, 3), np.float32)
    y = np.full((4, 1), 3e38, np.float32)
    loss, grads = net.loss_and_gradients(x, y)
    assert math.isfinite(loss)
    assert not any(np.isfinite(g).all() for g in grads.values())
    opt = optim.Adam(lr=0.01)
    net.train_step(x, np.zeros((4, 1), np.float32), opt)  # optimiser state to keep
    before = snapshot(net, opt)
    with pytest.raises(gradwatch.NonFiniteError, match="bias gradient in dense1") as error:
        net.train_step(x, y, opt)
    assert (error.value.layer, error.value.tensor) == ("dense1", "bias gradient")
    assert_unchanged(net, opt, before)


def test_non_finite_batch_variance():
    # The variance of z ~ 1e25 is finite in double (where it is computed) but not in float32.
    big = 1e25
    net = gradwatch.MLP([2, 3, 2], batchnorm=True, activation="tanh", seed=1)
    opt = optim.SGD(lr=0.1)
    x = np.array([[big, -big], [-big, big]], np.float32)
    loss, grads = net.loss_and_gradients(x, [0, 1])
    assert math.isfinite(loss) and all(np.isfinite(g).all() for g in grads.values())
    before = snapshot(net, opt)
    with pytest.raises(gradwatch.NonFiniteError) as error:
        net.train_step(x, [0, 1], opt)
    assert (error.value.layer, error.value.tensor) == ("bn0", "batch variance")
    assert_unchanged(net, opt, before)


def test_clipping_an_infinite_norm_of_finite_gradients_raises():
    # Outputs ~1e10 (loss ~1e20), weight gradients ~1e160: finite, but their squares overflow.
    net = gradwatch.MLP([2, 2], loss="mse", dtype="float64", seed=1)
    net.load_state_dict({"dense0.weight": np.full((2, 2), 1e-140), "dense0.bias": np.zeros(2)})
    x = np.full((2, 2), 1e150)
    y = np.zeros((2, 2))
    opt = optim.SGD(lr=1e-300)
    _, grads = net.loss_and_gradients(x, y)
    assert all(np.isfinite(g).all() for g in grads.values())
    before = snapshot(net, opt)
    with pytest.raises(gradwatch.NonFiniteError) as error:
        net.train_step(x, y, opt, clip_grad_norm=1.0)
    assert (error.value.layer, error.value.tensor) == ("all layers", "gradient norm")
    assert_unchanged(net, opt, before)
    _, norm = net.train_step(x, y, opt)  # without clipping the step is taken
    assert norm == math.inf


def test_nan_targets_are_a_value_error():
    net = gradwatch.MLP([2, 3, 2], loss="mse", seed=1)
    opt = optim.SGD(lr=0.1)
    y = np.zeros((2, 2), np.float32)
    y[1, 0] = np.nan
    before = snapshot(net, opt)
    with pytest.raises(ValueError, match="y contains NaN at flat index 2"):
        net.train_step(np.ones((2, 2), np.float32), y, opt)
    assert_unchanged(net, opt, before)
    with pytest.raises(ValueError, match="y contains NaN"):
        net.evaluate(np.ones((2, 2), np.float32), y)


def test_non_finite_error_class():
    error = gradwatch.NonFiniteError("non-finite x in dense1", "dense1", "weight gradient")
    assert isinstance(error, FloatingPointError) and isinstance(error, ArithmeticError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.layer, copy.tensor) == (str(error), "dense1", "weight gradient")


def test_optimizer_errors_change_nothing():
    net, opt = trained_net(np.float32)
    other = gradwatch.MLP([4, 5, 3], seed=1)
    before = snapshot(other, opt)
    with pytest.raises(ValueError):
        other.train_step(*batch_for(other, 8), opt)  # opt is bound to net's layout
    assert_unchanged(other, opt, before)
    with pytest.raises(TypeError, match="bound to float32"):
        gradwatch.MLP([4, 5, 3], dtype="float64").train_step(
            *batch_for(gradwatch.MLP([4, 5, 3], dtype="float64"), 8), opt)


# ---- state dicts ----------------------------------------------------------------------------


def test_state_dict_round_trip_and_copies(dtype):
    net, _ = trained_net(dtype)
    state = net.state_dict()
    state["dense0.weight"][0, 0] = 1234.0
    assert net.state_dict()["dense0.weight"][0, 0] != 1234.0
    other = gradwatch.MLP([4, 6, 6, 3], batchnorm=True, dropout=0.25, dtype=dtype, seed=99)
    other.load_state_dict(state)
    assert_state_equal(other.state_dict(), state)
    state["dense0.weight"][0, 0] = 0.0
    assert other.state_dict()["dense0.weight"][0, 0] == 1234.0
    x, _ = batch_for(net, 5)
    state["dense0.weight"][0, 0] = net.state_dict()["dense0.weight"][0, 0]
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.forward(x), net.forward(x))


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda s: s.pop("bn1.beta"), ValueError, re.escape("missing keys ['bn1.beta']")),
        (lambda s: s.update(extra=np.zeros(1)), ValueError, re.escape("unexpected keys ['extra']")),
        (lambda s: s.update({"dense0.bias": s["dense0.bias"].astype(np.float64)}), TypeError,
         "dense0.bias must be float32 .the network's dtype., got float64"),
        (lambda s: s.update({"dense1.weight": np.zeros((6, 5), np.float32)}), ValueError,
         re.escape("dense1.weight must have shape (6, 6), got (6, 5)")),
        (lambda s: s["bn0.gamma"].__setitem__(2, np.inf), ValueError,
         "bn0.gamma contains NaN or infinity"),
        (lambda s: s["bn1.running_var"].__setitem__(0, -1), ValueError,
         re.escape("bn1.running_var must be >= 0 (a variance)")),
        (lambda s: s.update({"dense0.weight": [[0.0] * 6] * 4}), TypeError,
         "dense0.weight must be a numpy array, got list"),
    ],
)
def test_load_state_dict_errors_change_nothing(change, error, message):
    net, _ = trained_net(np.float32)
    before = net.state_dict()
    state = net.state_dict()
    state["dense0.weight"] += 1  # a valid change that must not be applied either
    change(state)
    with pytest.raises(error, match=message):
        net.load_state_dict(state)
    assert_state_equal(before, net.state_dict())


def test_load_state_dict_needs_a_mapping():
    with pytest.raises(TypeError, match="state_dict must be a dict of arrays, got list"):
        gradwatch.MLP([2, 2]).load_state_dict([])


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (([784],), ValueError, re.escape("layer_sizes must have at least 2 entries")),
        (([784, 0, 10],), ValueError, re.escape("layer_sizes[1] must be >= 1, got 0")),
        (([784, 2.5, 10],), TypeError, re.escape("layer_sizes[1] must be an int, got float")),
        (("784",), TypeError, "layer_sizes must be a sequence of ints"),
        (([4, 5, 3], dict(activation="swish")), ValueError,
         "unknown activation 'swish'; valid values are 'identity', 'sigmoid'"),
        (([4, 5, 5, 3], dict(activation=["relu"])), ValueError,
         re.escape("activation must be one name or a list of one per hidden layer (2), got 1")),
        (([4, 5, 3], dict(init="glorot")), ValueError, "init of layer 0: unknown scheme 'glorot'"),
        (([4, 5, 3], dict(init="normal")), ValueError, "pass it as a number, e.g. init=0.01"),
        (([4, 5, 3], dict(init="uniform")), ValueError, "needs a limit"),
        (([4, 5, 3], dict(init=-0.1)), ValueError, "init of layer 0: scheme as a number"),
        (([4, 5, 5, 3], dict(init=["he", "he", "he", "he"])), ValueError,
         re.escape("init must be one scheme or a list of one per hidden layer (2) or one per "
                   "dense layer (3), got 4")),
        (([4, 5, 3], dict(loss="cross_entropy")), ValueError,
         "unknown loss 'cross_entropy'; valid values are 'softmax_cross_entropy'"),
        (([4, 5, 3], dict(dtype="float16")), TypeError, "dtype must be float32 or float64"),
        (([4, 5, 3], dict(dropout=-0.1)), ValueError, re.escape("dropout must be in [0, 1)")),
        (([4, 5, 3], dict(dropout=1.0)), ValueError, re.escape("dropout must be in [0, 1)")),
        (([4, 5, 3], dict(bn_momentum=1.5)), ValueError, re.escape("bn_momentum must be in [0, 1]")),
        (([4, 5, 3], dict(bn_eps=0.0)), ValueError, "bn_eps must be > 0"),
        (([4, 5, 3], dict(batchnorm=1)), TypeError, "batchnorm must be True or False, got int"),
        (([4, 3], dict(batchnorm=True)), ValueError, "apply to hidden layers"),
        (([4, 3], dict(dropout=0.5)), ValueError, "apply to hidden layers"),
        (([4, 5, 3], dict(seed=-1)), ValueError, re.escape("seed must be in [0, 2**64)")),
    ],
)
def test_invalid_hyperparameters(arguments, error, message):
    args = arguments[0]
    kwargs = arguments[1] if len(arguments) > 1 else {}
    with pytest.raises(error, match=message):
        gradwatch.MLP(args, **kwargs)


def test_batch_errors():
    net = gradwatch.MLP([784, 10, 10], batchnorm=True, seed=0)
    opt = optim.SGD(lr=0.1)
    x = np.zeros((32, 784), np.float32)
    y = np.zeros(32, np.int64)
    with pytest.raises(ValueError, match=re.escape("x must have shape (N, 784), got (32, 785)")):
        net.train_step(np.zeros((32, 785), np.float32), y, opt)
    with pytest.raises(ValueError, match=re.escape("got (784,); one sample is x[None, :]")):
        net.forward(np.zeros(784, np.float32))
    with pytest.raises(TypeError, match="x must be float32 .the network's dtype., got float64"):
        net.train_step(x.astype(np.float64), y, opt)
    with pytest.raises(ValueError, match="x is an empty batch"):
        net.forward(np.zeros((0, 784), np.float32))
    with pytest.raises(ValueError, match=re.escape("y must hold class indices in [0, 10), got 10 "
                                                   "at index 5")):
        net.train_step(x, np.where(np.arange(32) == 5, 10, 0), opt)
    with pytest.raises(ValueError, match=re.escape("got -1 at index 0")):
        net.loss_and_gradients(x, -np.ones(32, np.int64))
    with pytest.raises(TypeError, match="y must hold integer class indices"):
        net.train_step(x, y.astype(np.float32), opt)
    with pytest.raises(ValueError, match=re.escape("y must be class indices of shape (N,) = (32,) "
                                                   "to match x, got (31,)")):
        net.train_step(x, y[:31], opt)
    with pytest.raises(ValueError, match="for one-hot rows pass y.argmax"):
        net.train_step(x, np.eye(10)[y], opt)
    one = "batch norm in training mode needs at least 2 samples per batch .the variance of one"
    with pytest.raises(ValueError, match=one):
        net.train_step(x[:1], y[:1], opt)
    with pytest.raises(ValueError, match=one):
        net.forward(x[:1], training=True)
    with pytest.raises(ValueError, match=one):
        net.loss_and_gradients(x[:1], y[:1])
    assert net.forward(x[:1]).shape == (1, 10)  # inference uses the running statistics
    with pytest.raises(TypeError, match="optimizer must be a gradwatch.optim optimiser"):
        net.train_step(x, y, "sgd")
    with pytest.raises(ValueError, match=re.escape("clip_grad_norm must be > 0 (or None")):
        net.train_step(x, y, opt, clip_grad_norm=0)
    with pytest.raises(ValueError, match="clip_grad_value must be finite"):
        net.train_step(x, y, opt, clip_grad_value=math.nan)
    assert opt.step_count == 0 and net.dropout_step == 0


def test_target_errors_for_elementwise_losses():
    net = gradwatch.MLP([3, 4, 2], loss="binary_cross_entropy_with_logits", seed=0)
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=re.escape("y must have shape (N, C) = (5, 2) to match x "
                                                   "and the 2 outputs of the network, got (5,)")):
        net.train_step(x, np.zeros(5), optim.SGD(lr=0.1))
    with pytest.raises(TypeError, match="y must hold real numbers, got dtype str"):
        net.evaluate(x, np.full((5, 2), "a"))


def test_lists_are_converted():
    net = gradwatch.MLP([2, 3, 2], seed=0)
    np.testing.assert_array_equal(net.forward([[1, 2]]),
                                  net.forward(np.array([[1, 2]], np.float32)))
    assert net.predict([[1.0, 2.0], [3.0, 4.0]]).shape == (2,)


def test_non_contiguous_inputs(dtype):
    net = gradwatch.MLP([3, 5, 2], dtype=dtype, seed=0)
    x = np.asfortranarray(np.arange(12, dtype=dtype).reshape(4, 3))
    np.testing.assert_array_equal(net.forward(x), net.forward(np.ascontiguousarray(x)))


# ---- PyTorch --------------------------------------------------------------------------------

def torch_activation(torch, kind):
    functional = torch.nn.functional
    return {
        "identity": lambda t: t,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": lambda t: functional.leaky_relu(t, 0.01),
        "elu": functional.elu,
        "selu": functional.selu,
        "gelu": functional.gelu,
        "gelu_tanh": lambda t: functional.gelu(t, approximate="tanh"),
        "silu": functional.silu,
        "softplus": functional.softplus,
    }[kind]


def torch_network(torch, net):
    """Leaf tensors of net's state (weights as (I, O), like ours) and a forward function."""
    state = {name: torch.tensor(value, requires_grad=name in net.parameters)
             for name, value in net.state_dict().items()}
    config = config_of(net)
    layers = len(net.layer_sizes) - 1

    def forward(x, masks):
        out = x
        for i in range(layers):
            z = out @ state[f"dense{i}.weight"] + state[f"dense{i}.bias"]
            if i == layers - 1:
                return z
            if net.batchnorm:
                z = torch.nn.functional.batch_norm(
                    z, state[f"bn{i}.running_mean"], state[f"bn{i}.running_var"],
                    state[f"bn{i}.gamma"], state[f"bn{i}.beta"], training=True,
                    momentum=net.bn_momentum, eps=net.bn_eps)
            a = torch_activation(torch, config["activations"][i])(z)
            if config["dropout"][i] > 0:
                a = a * torch.tensor(masks[i]) / (1 - config["dropout"][i])
            out = a + out if config["residual"][i] else a

    return state, forward


def torch_loss(torch, net, logits, y):
    functional = torch.nn.functional
    if net.loss == "softmax_cross_entropy":
        return functional.cross_entropy(logits, torch.tensor(y))
    if net.loss == "binary_cross_entropy_with_logits":
        return functional.binary_cross_entropy_with_logits(logits, torch.tensor(y))
    return functional.mse_loss(logits, torch.tensor(y))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_and_gradients_match_pytorch(case, dtype):
    torch = pytest.importorskip("torch")
    sizes, options = case
    net = gradwatch.MLP(sizes, dtype=dtype, seed=13, **options)
    x, y = batch_for(net, 20, seed=5)
    state, forward = torch_network(torch, net)
    logits = forward(torch.tensor(x), net._dropout_masks(20))
    loss = torch_loss(torch, net, logits, y)
    loss.backward()
    got_loss, got_grads = net.loss_and_gradients(x, y)
    assert_net_close(net.forward(x, training=True), logits.detach().numpy(), dtype, 10.0)
    assert_net_close(got_loss, loss.item(), dtype, 10.0)
    expected = {name: state[name].grad.numpy().astype(np.float64) for name in net.parameters}
    assert_gradients_close(got_grads, expected, dtype, 10.0)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_momentum_sgd_steps_match_pytorch(batchnorm):
    torch = pytest.importorskip("torch")
    net = gradwatch.MLP([6, 12, 12, 3], batchnorm=batchnorm, dropout=0.2, residual=True, seed=2)
    state, forward = torch_network(torch, net)
    params = [state[name] for name in net.parameters]
    torch_opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=0.01)
    opt = optim.SGD(lr=0.05, momentum=0.9, weight_decay=0.01)
    for step in range(5):
        x, y = batch_for(net, 16, seed=step)
        masks = net._dropout_masks(16)
        torch_opt.zero_grad()
        loss = torch_loss(torch, net, forward(torch.tensor(x), masks), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        torch_opt.step()
        got_loss, _ = net.train_step(x, y, opt, clip_grad_norm=1.0)
        assert got_loss == pytest.approx(loss.item(), rel=1e-4)
    ours = net.state_dict()
    for name, value in state.items():
        np.testing.assert_allclose(ours[name], value.detach().numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=name)


# ---- the GIL and allocations ----------------------------------------------------------------


def test_calls_release_the_gil():
    from test_gil import ran_inside_call

    net = gradwatch.MLP([512, 1024, 512, 10], seed=0)  # about 20 ms a call
    x, y = batch_for(net, 256)
    many_x, many_y = np.repeat(x, 4, axis=0), np.repeat(y, 4)
    opt = optim.SGD(lr=0.01)
    calls = {
        "train_step": lambda: net.train_step(x, y, opt),
        "loss_and_gradients": lambda: net.loss_and_gradients(x, y),
        "forward": lambda: net.forward(many_x),
        "evaluate": lambda: net.evaluate(many_x, many_y),
    }
    for name, call in calls.items():
        call()
        assert any(ran_inside_call(call) for _ in range(5)), f"{name} held the GIL"


def test_training_steps_allocate_no_arrays():
    import tracemalloc

    net = gradwatch.MLP([32, 64, 64, 10], batchnorm=True, dropout=0.1, seed=0)
    x, y = batch_for(net, 64)
    opt = optim.Adam(lr=0.01)
    net.train_step(x, y, opt)  # the first step allocates the workspace and the optimiser state
    tracemalloc.start()
    try:
        for _ in range(20):
            net.train_step(x, y, opt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4096  # a few Python floats and tuples, no array (x alone is 8 KiB)


def test_core_rechecks_its_arguments():
    # gradwatch/network.py validates first; the compiled class must not trust it.
    net = gradwatch.MLP([3, 4, 2], seed=0)
    core = net._core
    x = np.zeros((5, 3), np.float32)
    with pytest.raises(TypeError, match="x must be a C-contiguous float32 array"):
        core.forward(x.astype(np.float64), False)
    with pytest.raises(TypeError, match="x must be a C-contiguous float32 array"):
        core.forward(np.asfortranarray(np.zeros((5, 3), np.float32)), False)
    with pytest.raises(ValueError, match="x: dimension 1 must be 3, got 4"):
        core.forward(np.zeros((5, 4), np.float32), False)
    with pytest.raises(ValueError, match="y: dimension 0 must be 5, got 4"):
        core.loss_and_gradients(x, np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="y must be a C-contiguous float32 array"):
        core.loss(x, np.zeros(5, np.int32))
    with pytest.raises(ValueError, match="softmax_cross_entropy needs int64 class indices"):
        core.loss(x, np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match="is not a hidden layer with dropout"):
        core.dropout_mask(0, 5)
    with pytest.raises(ValueError, match="parameter index 99 is out of range"):
        core.exchange_parameter(99, 0.0)
    with pytest.raises(ValueError, match=re.escape("params: expected 4 arrays, got 1")):
        core.load([np.zeros(3, np.float32)], [])
