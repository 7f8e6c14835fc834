"""Telemetry and probe: every metric against the NumPy reference network, the ring buffer,
recording every k-th step, switching off, probes that change nothing, thread-count equivalence,
non-finite counts, known states by construction, the tables, frames, plots and error paths.

Dims: N = batch, L = dense layers.
"""

import json
import math
import sys

import numpy as np
import pytest

import gradwatch
import reference
from gradwatch import optim
from test_network import batch_for, config_of, state64

METRICS = reference.TELEMETRY_METRICS


@pytest.fixture
def thread_budget():
    before = gradwatch.get_num_threads()
    yield gradwatch.set_num_threads
    gradwatch.set_num_threads(before)


def stats_tolerance(dtype):
    """Statistics of a float32 network against the float64 reference: the float32 rounding
    of several GEMMs, batch norm and the loss reaches them (as in test_network), and a standard
    deviation or cosine subtracts nearly equal sums."""
    if np.dtype(dtype) == np.float32:
        return {"rtol": 2e-3, "atol": 2e-5}
    return {"rtol": 1e-8, "atol": 1e-11}


def assert_stats_close(actual, expected, dtype, what=""):
    for name in METRICS:
        np.testing.assert_allclose(np.asarray(actual[name], np.float64), expected[name],
                                   err_msg=f"{what} {name}", **stats_tolerance(dtype))


def last_record(net):
    """{metric: (L,)} of the newest record, and its nonfinite counts."""
    telemetry = net.telemetry
    return {name: getattr(telemetry, name)[-1] for name in METRICS}, telemetry.nonfinite_count[-1]


# Small networks covering every activation kind with its own statistics, batch norm, dropout,
# residual connections and each loss.
NETWORKS = {
    "relu": dict(layer_sizes=[5, 8, 8, 3], activation="relu"),
    "leaky_relu_bn": dict(layer_sizes=[5, 8, 7, 3], activation="leaky_relu", batchnorm=True),
    "sigmoid": dict(layer_sizes=[5, 8, 6, 3], activation="sigmoid", init="xavier_normal"),
    "tanh_dropout": dict(layer_sizes=[5, 9, 9, 2], activation="tanh", dropout=0.3,
                         loss="binary_cross_entropy_with_logits"),
    "relu_residual_bn_dropout": dict(layer_sizes=[6, 6, 6, 4], activation="relu", residual=True,
                                     batchnorm=True, dropout=0.25, loss="mse"),
    "gelu": dict(layer_sizes=[4, 7, 3], activation="gelu"),
}


@pytest.mark.simd
@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("batch", [13, 70])
def test_train_step_records_reference_statistics(name, batch, dtype):
    net = gradwatch.MLP(**NETWORKS[name], dtype=dtype, seed=3)
    x, y = batch_for(net, batch, seed=1)
    before = state64(net)
    masks = net._dropout_masks(batch)
    opt = optim.SGD(lr=0.05, momentum=0.9)
    loss, grad_norm = net.train_step(x, y, opt)
    expected, nonfinite, expected_loss = reference.layer_statistics(
        before, x, y, config_of(net), masks, params_after=state64(net))
    actual, counts = last_record(net)
    assert_stats_close(actual, expected, dtype, name)
    np.testing.assert_array_equal(counts, nonfinite)
    telemetry = net.telemetry
    assert len(telemetry) == 1
    assert telemetry.steps.tolist() == [0]
    assert telemetry.loss[0] == loss and telemetry.grad_norm[0] == grad_norm
    assert telemetry.lr[0] == 0.05 and telemetry.clipped.tolist() == [False]
    np.testing.assert_allclose(loss, expected_loss, **stats_tolerance(dtype))
    assert math.isnan(actual["grad_input_norm"][0])  # training computes no input gradient


@pytest.mark.simd
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_probe_matches_reference(name, dtype):
    net = gradwatch.MLP(**NETWORKS[name], dtype=dtype, seed=5)
    x, y = batch_for(net, 21, seed=2)
    result = gradwatch.probe(net, x, y)
    expected, nonfinite, expected_loss = reference.layer_statistics(
        state64(net), x, y, config_of(net), masks=None, input_gradient=True)
    assert_stats_close({m: getattr(result, m) for m in METRICS}, expected, dtype, name)
    np.testing.assert_array_equal(result.nonfinite_count, nonfinite)
    np.testing.assert_allclose(result.loss, expected_loss, **stats_tolerance(dtype))
    assert np.isnan(result.update_ratio).all()
    assert result.layer_names == tuple(f"dense{i}" for i in range(len(net.layer_sizes) - 1))
    assert result.activations == net.activation + ("identity",)


@pytest.mark.simd
@pytest.mark.parametrize("sizes,batch", [([4, 520, 3], 9), ([4, 600, 600, 3], 40)])
def test_statistics_when_tiles_split_features(sizes, batch, dtype):
    """Small batches of wide layers split each row over several tiles: the cosine then takes
    its row norms in a pass of its own."""
    net = gradwatch.MLP(sizes, activation="relu", dtype=dtype, seed=7)
    x, y = batch_for(net, batch, seed=3)
    before = state64(net)
    net.train_step(x, y, optim.Adam(lr=1e-3))
    expected, nonfinite, _ = reference.layer_statistics(before, x, y, config_of(net),
                                                        params_after=state64(net))
    actual, counts = last_record(net)
    assert_stats_close(actual, expected, dtype)
    np.testing.assert_array_equal(counts, nonfinite)


@pytest.mark.simd
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("width,batch", [(100, 130), (520, 130)])
def test_statistics_of_narrow_and_wide_whole_row_tiles(activation, width, batch, dtype):
    """Batches of 128 or more fill whole-row tiles: rows narrower than 512 features take their
    statistics in one flat pass over each tile, wider rows row by row."""
    net = gradwatch.MLP([5, width, width, 3], activation=activation, dtype=dtype, seed=8)
    x, y = batch_for(net, batch, seed=6)
    before = state64(net)
    net.train_step(x, y, optim.SGD(lr=0.1, momentum=0.9))
    expected, nonfinite, _ = reference.layer_statistics(before, x, y, config_of(net),
                                                        params_after=state64(net))
    actual, counts = last_record(net)
    assert_stats_close(actual, expected, dtype, f"{activation} {width}")
    np.testing.assert_array_equal(counts, nonfinite)


@pytest.mark.simd
def test_gradient_norms_whose_float_squares_overflow():
    """Output gradients ~1e18: their squares add past float32's range in every block, so the
    norms are summed again in double. Batch 40 < fan_in 600: the GEMM blocks of grad_x split the
    columns, whose rows are summed group by group."""
    net = gradwatch.MLP([4, 600, 600, 3], activation="relu", loss="mse", seed=7)
    x, _ = batch_for(net, 40, seed=3)
    y = np.full((40, 3), -1e20, np.float32)
    result = gradwatch.probe(net, x, y)
    expected, _, _ = reference.layer_statistics(state64(net), x, y, config_of(net), masks=None,
                                                input_gradient=True)
    for name in ("grad_weight_norm", "grad_bias_norm", "grad_output_norm", "grad_input_norm"):
        actual = np.asarray(getattr(result, name), np.float64)
        assert np.isfinite(actual).all() and (actual > 1e19).all(), name
        np.testing.assert_allclose(actual, expected[name], rtol=1e-5, err_msg=name)


@pytest.mark.simd
@pytest.mark.parametrize("scaled,weight_scale,lr", [(("dense0", "dense1"), 1e-20, 1e-2),
                                                    (("dense1",), 1e21, 1e14)])
def test_update_ratio_whose_float_squares_leave_the_float_range(scaled, weight_scale, lr):
    """Weights of ~1e-20 and updates of ~1e-22 (their float32 squares underflow), and output
    weights of ~1e21 (theirs overflow; updates large enough to change them): the optimiser's norms are summed in double, so the ratio
    stays exact."""
    net = gradwatch.MLP([6, 300, 3], activation="tanh", init="xavier_normal", seed=2)
    state = net.state_dict()
    for name in scaled:
        state[f"{name}.weight"] = state[f"{name}.weight"] * np.float32(weight_scale)
    net.load_state_dict(state)
    x, y = batch_for(net, 16, seed=4)
    before = state64(net)
    net.train_step(x, y, optim.SGD(lr=lr))
    after = state64(net)
    actual = net.telemetry.update_ratio[-1]
    for i in range(2):
        weight = before[f"dense{i}.weight"]
        expected = np.linalg.norm(after[f"dense{i}.weight"] - weight) / np.linalg.norm(weight)
        assert np.isfinite(actual[i]) and actual[i] > 0, (i, actual[i])
        np.testing.assert_allclose(actual[i], expected, rtol=1e-6, err_msg=f"dense{i}")


def test_worked_cosine_and_dead_units():
    """Two hidden units, identity output weights: rows (1, 0), (1, 0), (0, 0), (0, 1) after relu.
    Nonzero rows: 3; cosines of the ordered pairs: 1, 1 and four 0s -> 2 / 6. No unit is dead;
    with the second unit's bias at -100 it is dead for every row (dead_fraction 1/2)."""
    net = gradwatch.MLP([2, 2, 2], activation="relu", dtype="float64", seed=0)
    state = net.state_dict()
    state["dense0.weight"] = np.eye(2)
    state["dense0.bias"] = np.zeros(2)
    net.load_state_dict(state)
    x = np.array([[1.0, -1.0], [2.0, -3.0], [-1.0, -1.0], [-2.0, 5.0]])
    result = gradwatch.probe(net, x, np.array([0, 1, 0, 1]))
    assert result.activation_cosine[0] == pytest.approx(2 / 6, abs=1e-15)
    assert result.dead_fraction[0] == 0.0
    assert result.act_mean[0] == pytest.approx((1 + 2 + 5) / 8)
    state["dense0.bias"] = np.array([0.0, -100.0])
    net.load_state_dict(state)
    assert gradwatch.probe(net, x, np.array([0, 1, 0, 1])).dead_fraction[0] == 0.5


def test_clipping_flags():
    net = gradwatch.MLP([5, 8, 3], seed=0)
    x, y = batch_for(net, 16)
    opt = optim.SGD(lr=0.01)
    _, norm = net.train_step(x, y, opt, clip_grad_norm=1e6)
    net.train_step(x, y, opt, clip_grad_norm=norm / 10)
    net.train_step(x, y, opt, clip_grad_value=1e6)
    net.train_step(x, y, opt, clip_grad_value=1e-6)
    assert net.telemetry.clipped.tolist() == [False, True, False, True]


def test_learning_rate_follows_the_schedule():
    net = gradwatch.MLP([5, 8, 3], seed=0)
    x, y = batch_for(net, 64)
    history = net.fit(x, y, optimizer=optim.SGD(lr=0.1), epochs=2, batch_size=16,
                      schedule=gradwatch.schedules.Step(step_size=3, gamma=0.5),
                      progress=False)
    np.testing.assert_array_equal(net.telemetry.lr, history.step_lr)
    np.testing.assert_array_equal(net.telemetry.steps, np.arange(8))
    assert len(set(history.step_lr)) > 1


def run_steps(net, steps, seed=0):
    opt = optim.Adam(lr=1e-3)
    for step in range(steps):
        x, y = batch_for(net, 24, seed=seed + step)
        net.train_step(x, y, opt)


def records(net):
    t = net.telemetry
    return [t.steps, t.loss, t.lr, t.grad_norm, t.clipped, t.nonfinite_count] + [
        getattr(t, name) for name in METRICS]


def assert_records_equal(a, b):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)


def test_ring_buffer_keeps_the_newest_steps():
    full = gradwatch.MLP([5, 8, 3], seed=0)
    ring = gradwatch.MLP([5, 8, 3], seed=0, telemetry_capacity=3)
    run_steps(full, 7)
    run_steps(ring, 7)
    assert len(ring.telemetry) == 3 and ring.telemetry.capacity == 3
    assert ring.telemetry.steps.tolist() == [4, 5, 6]
    assert_records_equal(records(ring), [r[-3:] for r in records(full)])
    full.set_telemetry(capacity=2)  # shrinking keeps the newest
    assert full.telemetry.steps.tolist() == [5, 6]
    full.set_telemetry(capacity=10)
    run_steps(full, 1, seed=7)
    assert full.telemetry.steps.tolist() == [5, 6, 7]


def test_every_kth_step_and_off():
    net = gradwatch.MLP([5, 8, 3], seed=0, telemetry_every=3)
    run_steps(net, 7)
    assert net.telemetry.steps.tolist() == [0, 3, 6]
    assert net.telemetry.grad_weight_norm.shape == (3, 2)
    off = gradwatch.MLP([5, 8, 3], seed=0, telemetry=False)
    run_steps(off, 4)
    assert len(off.telemetry) == 0 and off.telemetry.grad_weight_norm.shape == (0, 2)
    assert off.telemetry.enabled is False
    off.set_telemetry(enabled=True, every=2)
    run_steps(off, 2, seed=4)
    assert off.telemetry.steps.tolist() == [4]
    off.telemetry.clear()
    assert len(off.telemetry) == 0
    # The training itself is the same with telemetry on or off.
    on = gradwatch.MLP([5, 8, 3], seed=0)
    plain = gradwatch.MLP([5, 8, 3], seed=0, telemetry=False)
    run_steps(on, 3)
    run_steps(plain, 3)
    for name, value in on.state_dict().items():
        np.testing.assert_array_equal(value, plain.state_dict()[name])


def test_probe_changes_nothing():
    spec = dict(layer_sizes=[6, 6, 6, 3], activation="relu", residual=True, batchnorm=True,
                dropout=0.2)
    net, twin = gradwatch.MLP(**spec, seed=1), gradwatch.MLP(**spec, seed=1)
    opt, twin_opt = optim.Adam(lr=1e-2), optim.Adam(lr=1e-2)
    x, y = batch_for(net, 16)
    net.train_step(x, y, opt)
    twin.train_step(x, y, twin_opt)
    before = (net.state_dict(), opt.state_dict(), records(net), net.dropout_step)
    gradwatch.probe(net, x * 3, y)
    after = (net.state_dict(), opt.state_dict(), records(net), net.dropout_step)
    for name in before[0]:
        np.testing.assert_array_equal(after[0][name], before[0][name])
    assert repr(after[1]) == repr(before[1])
    assert_records_equal(after[2], before[2])
    assert after[3] == before[3]
    assert net.train_step(x, y, opt) == twin.train_step(x, y, twin_opt)
    assert_records_equal(records(net), records(twin))


def test_one_and_two_threads_record_the_same_bits(thread_budget):
    spec = dict(layer_sizes=[64, 256, 256, 256, 10], activation="relu", batchnorm=True)
    results = []
    for threads in (1, 2):
        thread_budget(threads)
        net = gradwatch.MLP(**spec, seed=2)
        opt = optim.SGD(lr=0.05, momentum=0.9)
        for step in range(2):
            x, y = batch_for(net, 256, seed=step)
            net.train_step(x, y, opt)
        x, y = batch_for(net, 40, seed=9)
        probed = gradwatch.probe(net, x, y)
        results.append((records(net), [getattr(probed, m) for m in METRICS]))
    assert_records_equal(results[0][0], results[1][0])
    assert_records_equal(results[0][1], results[1][1])


def test_nonfinite_counts_are_recorded_for_a_failed_step():
    net = gradwatch.MLP([4, 6, 5, 3], activation="tanh", dtype="float64", seed=0)
    x, y = batch_for(net, 8)
    net.train_step(x, y, optim.SGD(lr=0.1))
    assert net.telemetry.nonfinite_count.tolist() == [[0, 0, 0]]
    net._core.exchange_parameter(7, math.nan)  # dense0.weight[1, 1]
    expected, nonfinite, _ = reference.layer_statistics(state64_with_nan(net), x, y,
                                                        config_of(net))
    with pytest.raises(gradwatch.NonFiniteError):
        net.train_step(x, y, optim.SGD(lr=0.1))
    assert net.telemetry.steps.tolist() == [0, 1]
    assert net.dropout_step == 1  # the failed step changed nothing but the records
    np.testing.assert_array_equal(net.telemetry.nonfinite_count[-1], nonfinite)
    assert (nonfinite > 0).all()
    assert math.isnan(net.telemetry.update_ratio[-1, 0])
    probed = gradwatch.probe(net, x, y)
    np.testing.assert_array_equal(probed.nonfinite_count, nonfinite)
    assert json.loads(json.dumps(probed.to_dict()))["layers"][0]["preact_mean"] is None


@pytest.mark.parametrize("batch", [8, 70])
def test_nan_preactivation_keeps_relu_units_alive(batch, dtype):
    """A NaN pre-activation counts as alive (it is not <= 0), in tiles of whole rows too, where
    the alive flags otherwise come from the features' maxima, which would drop a NaN."""
    net = gradwatch.MLP([4, 40, 40, 3], activation="relu", dtype=dtype, seed=2)
    x, y = batch_for(net, batch, seed=4)
    bias = net.state_dict()["dense0.bias"]
    bias[:] = -100.0  # every unit of layer 0 dead ...
    state = net.state_dict()
    state["dense0.bias"] = bias
    net.load_state_dict(state)
    index = net._param_names.index("dense0.bias")
    offset = sum(p.size for p in net._core.parameters()[:index])
    net._core.exchange_parameter(offset + 5, math.nan)  # ... but unit 5, NaN in every row
    expected, nonfinite, _ = reference.layer_statistics(state64_with_nan(net), x, y,
                                                        config_of(net))
    with pytest.raises(gradwatch.NonFiniteError):
        net.train_step(x, y, optim.SGD(lr=0.1))
    assert net.telemetry.dead_fraction[-1, 0] == expected["dead_fraction"][0] == 39 / 40
    np.testing.assert_array_equal(net.telemetry.nonfinite_count[-1], nonfinite)


def state64_with_nan(net):
    """state64 of a network whose parameters the state dict refuses (NaN): read from the core."""
    names = net._param_names
    params = dict(zip(names, (p.astype(np.float64) for p in net._core.parameters())))
    params.update(zip(net._buffer_names, (b.astype(np.float64) for b in net._core.buffers())))
    return params


def test_deep_sigmoid_with_small_weights_vanishes_toward_the_input():
    net = gradwatch.MLP([30] + [50] * 6 + [10], activation="sigmoid", init=0.01, seed=0)
    x, y = batch_for(net, 64)
    result = gradwatch.probe(net, x, y)
    hidden = result.grad_weight_norm[:-1]
    assert (np.diff(hidden) > 0).all()  # each layer nearer the input gets less gradient
    assert hidden[0] < 1e-3 * hidden[-1]
    assert (result.saturated_fraction[:-1] == 0).all()  # collapsed near 0.5, not saturated


def test_relu_with_large_negative_bias_is_dead():
    net = gradwatch.MLP([10, 20, 20, 3], activation="relu", seed=0)
    state = net.state_dict()
    state["dense0.bias"] = np.full(20, -100.0, np.float32)
    state["dense1.bias"] = np.full(20, -100.0, np.float32)
    net.load_state_dict(state)
    x, y = batch_for(net, 32)
    result = gradwatch.probe(net, x, y)
    np.testing.assert_array_equal(result.dead_fraction[:2], [1.0, 1.0])
    assert np.isnan(result.activation_cosine[:2]).all()  # every row is zero
    net.train_step(x, y, optim.SGD(lr=0.1))
    np.testing.assert_array_equal(net.telemetry.dead_fraction[-1, :2], [1.0, 1.0])


def test_summary_and_probe_summary():
    net = gradwatch.MLP([5, 8, 8, 3], activation="sigmoid", seed=0)
    assert net.telemetry.summary() == "telemetry: no steps recorded"
    run_steps(net, 3)
    text = net.telemetry.summary()
    assert "3 steps recorded" in text and "saturated" in text
    lines = text.splitlines()
    assert [line.split()[0] for line in lines[3:]] == ["dense0", "dense1", "dense2"]
    assert lines[-1].split()[5:7] == ["-", "-"]  # dead: not a relu layer
    assert "Telemetry(3 steps, 3 layers, every=1, capacity=10000)" == repr(net.telemetry)
    x, y = batch_for(net, 16)
    probed = gradwatch.probe(net, x, y)
    assert "dense2" in probed.summary() and "identity" in probed.summary()
    data = json.loads(json.dumps(probed.to_dict()))
    assert [layer["name"] for layer in data["layers"]] == ["dense0", "dense1", "dense2"]
    assert data["layers"][0]["update_ratio"] is None


def test_to_frame():
    pandas = pytest.importorskip("pandas")
    net = gradwatch.MLP([5, 8, 3], seed=0)
    run_steps(net, 2)
    frame = net.telemetry.to_frame()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns[:2]) == ["step", "layer"] and len(frame) == 4
    assert frame["layer"].tolist() == ["dense0", "dense1"] * 2
    np.testing.assert_array_equal(frame["grad_weight_norm"], net.telemetry.grad_weight_norm.ravel())


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    net = gradwatch.MLP([5, 8, 8, 3], activation=["relu", "tanh"], seed=0)
    run_steps(net, 3)
    path = tmp_path / "telemetry.png"
    net.telemetry.plot(path)
    assert path.stat().st_size > 1000
    with pytest.raises(ValueError, match="no steps recorded"):
        gradwatch.MLP([5, 8, 3], seed=0).telemetry.plot(tmp_path / "empty.png")


def test_optional_dependencies_missing(monkeypatch, tmp_path):
    net = gradwatch.MLP([5, 8, 3], seed=0)
    run_steps(net, 1)
    monkeypatch.setitem(sys.modules, "pandas", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install gradwatch\[pandas\]"):
        net.telemetry.to_frame()
    with pytest.raises(ImportError, match=r"pip install gradwatch\[plot\]"):
        net.telemetry.plot(tmp_path / "x.png")


def test_bad_options():
    with pytest.raises(ValueError, match="telemetry_every must be >= 1, got 0"):
        gradwatch.MLP([3, 2], telemetry_every=0)
    with pytest.raises(TypeError, match="telemetry_every must be an integer"):
        gradwatch.MLP([3, 2], telemetry_every=1.5)
    with pytest.raises(ValueError, match="telemetry_capacity must be >= 1"):
        gradwatch.MLP([3, 2], telemetry_capacity=0)
    with pytest.raises(ValueError, match=r"telemetry_capacity must be <= 2\*\*31"):
        gradwatch.MLP([3, 2], telemetry_capacity=2**31 + 1)
    with pytest.raises(TypeError, match="telemetry must be True or False"):
        gradwatch.MLP([3, 2], telemetry="yes")
    net = gradwatch.MLP([3, 2])
    with pytest.raises(ValueError, match="telemetry_every"):
        net.set_telemetry(every=-1)
    assert net.telemetry.every == 1  # unchanged
    with pytest.raises(ValueError, match="telemetry every must be >= 1"):
        net._core.set_telemetry(True, 0, 10)  # the core checks again
    with pytest.raises(ValueError, match="capacity must be in"):
        net._core.set_telemetry(True, 1, 0)
    with pytest.raises(TypeError, match="net must be a gradwatch.MLP"):
        gradwatch.probe("net", np.zeros((2, 3), np.float32), [0, 1])
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\)"):
        gradwatch.probe(net, np.zeros((2, 4), np.float32), [0, 1])
    with pytest.raises(ValueError, match="batch norm in training mode needs at least 2"):
        gradwatch.probe(gradwatch.MLP([3, 4, 2], batchnorm=True), np.zeros((1, 3), np.float32),
                        [0])
