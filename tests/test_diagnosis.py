"""gradwatch.diagnose on networks whose state is known by construction."""

import json
import math

import numpy as np
import pytest

import gradwatch
from gradwatch import diagnosis
from gradwatch.datasets import load_digits

DEPTH = 6  # hidden layers
WIDTH = 100


@pytest.fixture(scope="module")
def batch():
    images, labels = load_digits()
    return images[:256], labels[:256]


def deep_net(activation, init, **options):
    sizes = [64] + [WIDTH] * DEPTH + [10]
    return gradwatch.MLP(sizes, activation=activation, init=init, seed=3, **options)


def he_times(factor):
    """One N(0, s^2) scheme per dense layer: factor times the He std."""
    sizes = [64] + [WIDTH] * DEPTH + [10]
    return [factor * math.sqrt(2.0 / fan_in) for fan_in in sizes[:-1]]


def state_bytes(net):
    return {name: value.tobytes() for name, value in net.state_dict().items()}


def test_deep_sigmoid_with_std_001_vanishes(batch):
    net = deep_net("sigmoid", 0.01)
    result = gradwatch.diagnose(net, *batch)
    assert result.verdict == "vanishing"
    assert result.layers[0].status == "vanishing"
    assert result.layers[0].gradient_ratio < 1e-3
    # The gradient shrinks layer after layer towards the input.
    ratios = [layer.gradient_ratio for layer in result.layers]
    assert all(a < b for a, b in zip(ratios[:-2], ratios[1:-1]))
    names = [remedy.name for remedy in result.remedies]
    assert any("ReLU" in name for name in names)
    assert any("Xavier" in name or "LeCun" in name for name in names)
    assert "vanish" in result.summary


def test_relu_with_large_negative_bias_is_dead(batch):
    net = deep_net("relu", "he_normal")
    state = net.state_dict()
    for i in range(DEPTH):
        state[f"dense{i}.bias"] = np.full(WIDTH, -10.0, np.float32)
    net.load_state_dict(state)
    result = gradwatch.diagnose(net, *batch)
    assert result.verdict == "dead units"
    assert all(layer.status == "dead units" for layer in result.layers[:DEPTH])
    assert result.layers[0].numbers["dead_fraction"] == 1.0
    assert result.remedies[0].name.startswith("leaky ReLU")


def test_sigmoid_with_std_1_saturates(batch):
    net = deep_net("sigmoid", 1.0)
    result = gradwatch.diagnose(net, *batch)
    assert result.verdict == "saturated"
    saturated = [layer for layer in result.layers if layer.status == "saturated"]
    assert len(saturated) >= DEPTH - 1
    assert all(layer.numbers["saturated_fraction"] >= diagnosis.SATURATED_FRACTION
               for layer in saturated)
    assert any("Xavier" in remedy.name for remedy in result.remedies)


def test_deep_relu_with_three_times_he_explodes(batch):
    net = deep_net("relu", he_times(3.0))
    result = gradwatch.diagnose(net, *batch)
    assert result.verdict == "exploding"
    assert result.layers[0].gradient_ratio > 30
    # Each ReLU layer at 3x He multiplies the squared gradient norm by about 9 (chi_1 = 2 * 9 / 2).
    growth = [layer.measured_growth for layer in result.layers[1:DEPTH]]
    assert 4 < np.exp(np.mean(np.log(growth))) < 20
    names = [remedy.name for remedy in result.remedies]
    assert names[0].startswith("He initialisation")
    assert any("clipping" in name for name in names)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_he_relu_is_healthy(batch, batchnorm):
    net = deep_net("relu", "he_normal", batchnorm=batchnorm)
    result = gradwatch.diagnose(net, *batch)
    assert result.verdict == "healthy", str(result)
    assert all(layer.status == "healthy" for layer in result.layers)
    assert result.remedies == ()


def test_measured_growth_is_the_squared_gradient_norm_ratio(batch):
    net = deep_net("tanh", "xavier_normal")
    result = gradwatch.diagnose(net, *batch)
    probe = gradwatch.probe(net, *batch)
    for i, layer in enumerate(result.layers):
        expected = (probe.grad_input_norm[i] / probe.grad_output_norm[i]) ** 2
        assert layer.measured_growth == pytest.approx(expected, rel=1e-12)
        assert layer.gradient_ratio == pytest.approx(
            probe.grad_output_norm[i] / probe.grad_output_norm[-2], rel=1e-12)


def test_theory_is_set_beside_the_measurement(batch):
    # Critical ReLU (He): the mean-field chi_1 of a hidden layer is 1 (here from the drawn
    # weights' variance, within a few percent of 2 / fan_in); measured on a finite batch and
    # width it is close to it.
    net = deep_net("relu", "he_normal")
    result = gradwatch.diagnose(net, *batch)
    for layer in result.layers[1:DEPTH]:
        assert layer.predicted_growth == pytest.approx(1.0, rel=0.05)
        assert 0.5 < layer.measured_growth < 2.0
    prediction = gradwatch.theory.for_network(net, x=batch[0], from_weights=True)
    np.testing.assert_allclose([layer.predicted_growth for layer in result.layers],
                               prediction.chi, rtol=1e-12)


def test_training_steps_run_on_a_copy(batch):
    net = deep_net("relu", "he_normal", batchnorm=True)
    optimizer = gradwatch.optim.SGD(lr=0.05, momentum=0.9)
    before, optimizer_before = state_bytes(net), optimizer.state_dict()
    result = gradwatch.diagnose(net, *batch, steps=5, optimizer=optimizer)
    assert state_bytes(net) == before
    assert optimizer.state_dict() == optimizer_before
    assert result.training["steps"] == 5
    assert len(result.training["losses"]) == 5
    assert result.training["nonfinite"] is None
    assert "5 steps with SGD" in str(result)


def test_training_that_diverges_is_reported(batch):
    net = deep_net("relu", he_times(3.0))
    result = gradwatch.diagnose(net, *batch, steps=20, optimizer=gradwatch.optim.SGD(lr=10.0))
    assert result.training["nonfinite"] or result.training["update_ratio_high"]
    names = [remedy.name for remedy in result.remedies]
    assert "smaller learning rate" in names


def test_report_and_dict(batch):
    net = deep_net("sigmoid", 0.01)
    result = gradwatch.diagnose(net, *batch, steps=2)
    text = str(result)
    assert text.startswith("verdict: vanishing")
    for layer in result.layers:
        assert layer.name in text
    assert "remedies, most relevant first:" in text
    data = result.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["verdict"] == "vanishing"
    assert len(data["layers"]) == DEPTH + 1
    assert data["remedies"][0] == result.remedies[0].to_dict()


def test_float64_network(batch):
    net = gradwatch.MLP([64, 50, 50, 10], activation="relu", init="he_normal", dtype="float64",
                        seed=1)
    x, y = batch
    result = gradwatch.diagnose(net, x.astype(np.float64), y)
    assert result.verdict == "healthy"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"steps": -1}, ValueError, "steps must be >= 0"),
        ({"steps": 1.5}, TypeError, "steps must be an int"),
        ({"steps": True}, TypeError, "steps must be an int"),
        ({"optimizer": "sgd"}, TypeError, "optimizer must be a gradwatch.optim optimizer"),
    ],
)
def test_bad_arguments(batch, kwargs, error, match):
    net = deep_net("relu", "he_normal")
    with pytest.raises(error, match=match):
        gradwatch.diagnose(net, *batch, **kwargs)


def test_bad_net_and_batch(batch):
    with pytest.raises(TypeError, match="net must be a gradwatch.MLP"):
        gradwatch.diagnose(object(), *batch)
    net = deep_net("relu", "he_normal")
    x, y = batch
    with pytest.raises(ValueError, match="x"):
        gradwatch.diagnose(net, x[:, :10], y)


def test_residual_network_has_no_theory_but_a_diagnosis(batch):
    net = deep_net("relu", "he_normal", residual=True)
    result = gradwatch.diagnose(net, *batch)
    assert result.verdict in diagnosis.STATUSES
    assert all(math.isnan(layer.predicted_growth) for layer in result.layers)
    json.dumps(result.to_dict(), allow_nan=False)


def test_a_one_layer_network(batch):
    net = gradwatch.MLP([64, 10], init="xavier_normal", seed=0)
    result = gradwatch.diagnose(net, *batch)
    assert result.verdict == "healthy"
    assert result.layers[0].gradient_ratio == 1.0
