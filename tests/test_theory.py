"""gradwatch.theory: closed forms, quadrature accuracy, and Monte Carlo on wide random networks.

The Monte Carlo networks are written here in NumPy float64 (np.tanh, np.maximum: not gradwatch's
kernels). Tolerances come from the sample sizes: with width W and batch N, a layer's squared
norm is a sum of W N terms whose relative standard deviation is about sqrt(2 / (W N)) (1.6% for
W N = 8000), and the ratios and averages below combine a handful of those.
"""

import json
import math

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from threadpoolctl import threadpool_limits

import gradwatch
from gradwatch import theory

SQRT2 = math.sqrt(2.0)


def normal_cdf(x):
    return 0.5 * math.erfc(-x / SQRT2)


def legendre_expectation(f, nodes=200):
    """E[f(z)] by Gauss-Legendre on [-12, 0] and [0, 12] (for q* ~ 4, where Gauss-Hermite with
    200 nodes is off by 5e-8 for tanh)."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    z = 6.0 * (t + 1.0)
    weights = 6.0 * w * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return float(weights @ (f(z) + f(-z)))


def hermite_expectation(f, nodes=200):
    z, w = hermegauss(nodes)
    return float(w @ f(z)) / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# Monte Carlo networks (NumPy float64)
# ---------------------------------------------------------------------------------------------
# The products are small ((N, W) @ (W, W)): one BLAS thread is 8x faster than several on a
# loaded 2-core machine.

ACTIVATIONS = {
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0.0) * 1.0),
    "identity": (lambda x: x, np.ones_like),
}


@threadpool_limits.wrap(limits=1, user_api="blas")
def mc_plain(x, weights, biases, kind, seed):
    """Forward through hidden layers h = a @ W + b, a = phi(h); backward from a random gradient at
    the last activation. Returns per layer the mean of h^2 and ||dx||^2 / ||da||^2."""
    phi, dphi = ACTIVATIONS[kind]
    a, pre = x, []
    for W, b in zip(weights, biases):
        h = a @ W + b
        pre.append(h)
        a = phi(h)
    grad = np.random.default_rng(seed).standard_normal(a.shape)
    chis = []
    for W, h in zip(weights[::-1], pre[::-1]):
        dx = (grad * dphi(h)) @ W.T
        chis.append(np.sum(dx**2) / np.sum(grad**2))
        grad = dx
    return np.array([np.mean(h**2) for h in pre]), np.array(chis[::-1])


@threadpool_limits.wrap(limits=1, user_api="blas")
def mc_batchnorm(batch, width, depth, seed):
    """dense (He) -> batch norm (biased variance, gamma 1, beta 0) -> relu, Gaussian inputs of
    second moment 1. Returns per layer ||dx||^2 / ||da||^2."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((batch, width))
    weights, caches = [], []
    for _ in range(depth):
        W = rng.standard_normal((width, width)) * math.sqrt(2.0 / width)
        h = a @ W
        std = h.std(axis=0)
        xhat = (h - h.mean(axis=0)) / std
        a = np.maximum(xhat, 0.0)
        weights.append(W)
        caches.append((xhat, std))
    grad = rng.standard_normal(a.shape)
    chis = []
    for W, (xhat, std) in zip(weights[::-1], caches[::-1]):
        g = grad * (xhat > 0.0)
        dh = (g - g.mean(axis=0) - xhat * (g * xhat).mean(axis=0)) / std
        dx = dh @ W.T
        chis.append(np.sum(dx**2) / np.sum(grad**2))
        grad = dx
    return np.array(chis[::-1])


# ---------------------------------------------------------------------------------------------
# closed forms and quadrature
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("q", [1e-3, 0.7, 5.0, 300.0])
@pytest.mark.parametrize("sigma_w, sigma_b", [(1.0, 0.0), (SQRT2, 0.3), (2.5, 1.0)])
def test_relu_and_identity_closed_forms(q, sigma_w, sigma_b):
    # E[relu(sqrt(q) z)^2] = q / 2, E[relu'^2] = 1/2; identity: q' = sigma_w^2 q + sigma_b^2.
    assert theory.length_map(q, "relu", sigma_w, sigma_b) == pytest.approx(
        sigma_w**2 * q / 2 + sigma_b**2, rel=1e-13)
    assert theory.chi_1(q, "relu", sigma_w) == pytest.approx(sigma_w**2 / 2, rel=1e-13)
    assert theory.chi_1(q, "leaky_relu", sigma_w, alpha=0.2) == pytest.approx(
        sigma_w**2 * (1 + 0.04) / 2, rel=1e-13)
    assert theory.length_map(q, "identity", sigma_w, sigma_b) == pytest.approx(
        sigma_w**2 * q + sigma_b**2, rel=1e-13)
    assert theory.chi_1(q, "identity", sigma_w) == pytest.approx(sigma_w**2, rel=1e-13)


@pytest.mark.parametrize("q", [0.01, 1.0, 4.0])
def test_elu_kink_is_integrated_exactly(q):
    # E[elu'(sqrt(q) z)^2] = 1/2 + exp(2q) Phi(-2 sqrt(q)) for alpha = 1: the derivative's kink
    # at 0 costs Gauss-Hermite 1e-3; the split rule is exact to rounding.
    expected = 0.5 + math.exp(2 * q) * normal_cdf(-2 * math.sqrt(q))
    assert theory.chi_1(q, "elu") == pytest.approx(expected, rel=1e-12)
    # And for alpha = 0.5: E[alpha^2 exp(2u) 1{u<0}] scales by alpha^2.
    assert theory.chi_1(q, "elu", alpha=0.5) == pytest.approx(
        0.5 + 0.25 * math.exp(2 * q) * normal_cdf(-2 * math.sqrt(q)), rel=1e-12)


@pytest.mark.parametrize("kind, numpy_phi", [
    ("tanh", np.tanh),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("softplus", lambda x: np.logaddexp(x, 0.0)),
    ("silu", lambda x: x / (1 + np.exp(-x))),
])
def test_smooth_activations_agree_with_gauss_hermite(kind, numpy_phi):
    # Where Gauss-Hermite converges fast (smooth integrands, q <= 1 for 200 nodes), it and the
    # split rule agree.
    for q in (0.3, 1.0):
        expected = hermite_expectation(lambda z: numpy_phi(math.sqrt(q) * z) ** 2)
        assert theory.length_map(q, kind, 1.0, 0.0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("q", [100.0, 1e4])
def test_large_q_is_resolved(q):
    # E[tanh'(sqrt(q) z)^2]: tanh' has width 1 / sqrt(q) in z; compare with a fine composite
    # Gauss-Legendre rule (400 panels of 16 nodes on [0, 12], graded near 0) with numpy's tanh.
    t, w = np.polynomial.legendre.leggauss(16)
    edges = np.concatenate([np.linspace(0, 20 / math.sqrt(q), 301)[:-1], np.linspace(
        20 / math.sqrt(q), 12, 101)])
    z = np.concatenate([(b - a) / 2 * (t + 1) + a for a, b in zip(edges[:-1], edges[1:])])
    weights = np.concatenate([(b - a) / 2 * w for a, b in zip(edges[:-1], edges[1:])])
    weights = 2 * weights * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    expected = float(weights @ (1 - np.tanh(math.sqrt(q) * z) ** 2) ** 2)
    assert theory.chi_1(q, "tanh") == pytest.approx(expected, rel=1e-12)
    # The two-dimensional rule at c = 1 reduces to the same expectation.
    point_slope = theory.correlation_map(1.0, q, "tanh")
    assert point_slope == pytest.approx(1.0, rel=1e-12)


def test_relu_critical_point():
    point = theory.fixed_point("relu", sigma_w=SQRT2, sigma_b=0.0, q_start=3.0)
    assert point.chi_1 == pytest.approx(1.0, abs=1e-13)
    assert point.phase == "critical"
    assert point.q_star == pytest.approx(3.0, rel=1e-12)  # every q is a fixed point
    assert point.gradient_depth_scale == math.inf
    assert point.c_star == 1.0


def test_relu_off_criticality():
    ordered = theory.fixed_point("relu", sigma_w=1.2, sigma_b=0.5)
    assert ordered.q_star == pytest.approx(0.25 / (1 - 0.72), rel=1e-12)
    assert ordered.chi_1 == pytest.approx(0.72, rel=1e-13)
    assert ordered.phase == "ordered"
    assert ordered.gradient_depth_scale == pytest.approx(-1 / math.log(0.72), rel=1e-12)
    exploding = theory.fixed_point("relu", sigma_w=1.6)
    assert exploding.q_star == math.inf
    assert exploding.chi_1 == pytest.approx(1.28, rel=1e-13)
    assert exploding.phase == "chaotic"
    assert exploding.gradient_depth_scale < 0
    assert math.isnan(exploding.c_star)
    assert "no finite fixed point" in exploding.note
    # sigma_b = 0 and chi_1 < 1: the pre-activations shrink to 0; chi_1 is the q -> 0 limit.
    shrinking = theory.fixed_point("relu", sigma_w=1.0)
    assert shrinking.q_star == 0.0 and shrinking.chi_1 == pytest.approx(0.5, rel=1e-13)
    # chi_1 = 1 with a bias: q grows linearly, no finite fixed point.
    assert theory.fixed_point("relu", sigma_w=SQRT2, sigma_b=0.1).q_star == math.inf


def test_tanh_critical_line():
    # sigma_w = 1, sigma_b = 0: q* = 0 and chi_1 = tanh'(0)^2 = 1 (Poole et al. 2016).
    point = theory.fixed_point("tanh", 1.0, 0.0)
    assert point.q_star == 0.0
    assert point.chi_1 == pytest.approx(1.0, abs=1e-12)
    assert point.phase == "critical"
    assert point.length_depth_scale == math.inf


def test_tanh_ordered_phase():
    point = theory.fixed_point("tanh", 0.8, 0.3)
    q = point.q_star
    assert theory.length_map(q, "tanh", 0.8, 0.3) == pytest.approx(q, rel=1e-13)
    assert point.phase == "ordered" and point.c_star == 1.0
    assert point.chi_c == pytest.approx(point.chi_1, rel=1e-13)
    assert point.correlation_depth_scale == pytest.approx(point.gradient_depth_scale, rel=1e-12)
    assert theory.correlation_map(1.0, q, "tanh", 0.8, 0.3) == pytest.approx(1.0, rel=1e-12)
    # xi_q from the length map's slope, checked by a central difference.
    step = 1e-5 * q
    slope = (theory.length_map(q + step, "tanh", 0.8, 0.3)
             - theory.length_map(q - step, "tanh", 0.8, 0.3)) / (2 * step)
    assert point.length_depth_scale == pytest.approx(-1 / math.log(slope), rel=1e-7)


def test_tanh_chaotic_phase():
    # Odd phi and sigma_b = 0: c* = 0, where the slope factorises into sigma_w^2 E[phi']^2.
    point = theory.fixed_point("tanh", 2.5, 0.0)
    assert point.phase == "chaotic" and point.chi_1 > 1
    assert point.c_star == pytest.approx(0.0, abs=1e-15)
    mean_slope = legendre_expectation(lambda z: 1 - np.tanh(math.sqrt(point.q_star) * z) ** 2)
    assert point.chi_c == pytest.approx(6.25 * mean_slope**2, rel=1e-9)
    # With a bias c* is inside (0, 1) and a fixed point of the correlation map.
    biased = theory.fixed_point("tanh", 2.5, 0.5)
    assert 0 < biased.c_star < 1
    assert theory.correlation_map(biased.c_star, biased.q_star, "tanh", 2.5, 0.5) == (
        pytest.approx(biased.c_star, abs=1e-9))
    assert 0 < biased.chi_c < 1  # the fixed point c* is stable


def test_selu_is_self_normalising():
    # Klambauer et al. 2017: with LeCun init (sigma_w = 1, sigma_b = 0) q* = 1, a stable point.
    point = theory.fixed_point("selu", 1.0, 0.0, q_start=3.0)
    assert point.q_star == pytest.approx(1.0, rel=1e-12)
    assert 0 < point.length_depth_scale < math.inf


def test_fixed_point_record():
    point = theory.fixed_point("tanh", 1.5, 0.1)
    record = point.to_dict()
    assert record["activation"] == "tanh" and record["phase"] == "chaotic"
    json.dumps(record)
    assert repr(point).startswith("FixedPoint(tanh, sigma_w=1.5, sigma_b=0.1: q*=")
    with pytest.raises(AttributeError):
        point.q_star = 1.0


# ---------------------------------------------------------------------------------------------
# Monte Carlo: plain networks
# ---------------------------------------------------------------------------------------------


def noise_bound(width, batch, depth):
    """4 standard deviations of a layer's measured mean(h^2) (or squared-norm ratio): each layer
    adds sqrt(2 / (W N)) of relative noise, and the noise compounds down the layers."""
    return 4.0 * math.sqrt(2.0 / (width * batch)) * np.sqrt(np.arange(1, depth + 1))


@pytest.mark.parametrize("kind, sigma_w, sigma_b, q_input", [
    ("tanh", 1.5, 0.3, 1.0),
    ("tanh", 0.9, 0.05, 4.0),
    ("relu", 1.6, 0.2, 0.5),
])
def test_trajectory_matches_wide_network(kind, sigma_w, sigma_b, q_input):
    width, batch, depth = 1000, 32, 6
    rng = np.random.default_rng(7)
    x = rng.standard_normal((batch, width)) * math.sqrt(q_input)
    weights = [rng.standard_normal((width, width)) * sigma_w / math.sqrt(width)
               for _ in range(depth)]
    biases = [rng.standard_normal(width) * sigma_b for _ in range(depth)]
    measured_q, measured_chi = mc_plain(x, weights, biases, kind, seed=8)
    predicted = theory.trajectory(depth, kind, sigma_w, sigma_b, q_input=q_input)
    bound = noise_bound(width, batch, depth)  # 4.5% ... 11%
    assert np.all(np.abs(measured_q / predicted.q - 1) < bound)
    # A layer's chi is a ratio of two squared norms whose noise does not compound, but the
    # samples grow correlated with depth (fewer independent ones): 4 sigma with only 8
    # independent samples and relative variance 5 / (W N) (g^2 and the active fraction) is 10%;
    # the mean over the 6 layers is within 10% / sqrt(6).
    ratio = measured_chi / predicted.chi
    assert np.all(np.abs(ratio - 1) < 4 * math.sqrt(5 / (width * 8)))
    assert abs(np.mean(ratio) - 1) < 4 * math.sqrt(5 / (width * 8)) / math.sqrt(depth)
    np.testing.assert_allclose(predicted.gradient_growth, np.cumprod(predicted.chi[::-1])[::-1])


def test_identity_trajectory_grows_by_sigma_w_squared():
    predicted = theory.trajectory(5, "identity", 1.3, 0.0, q_input=2.0)
    np.testing.assert_allclose(predicted.q, 2.0 * 1.69 ** np.arange(1, 6), rtol=1e-13)
    np.testing.assert_allclose(predicted.chi, 1.69, rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# for_network
# ---------------------------------------------------------------------------------------------

SIZES = (300, 200, 200, 100, 10)


@pytest.mark.parametrize("init, expected", [
    ("he_normal", lambda i, o: 2.0),
    ("he_uniform", lambda i, o: 2.0),
    ("kaiming_normal", lambda i, o: 2.0),
    ("xavier_normal", lambda i, o: 2.0 * i / (i + o)),
    ("glorot_uniform", lambda i, o: 2.0 * i / (i + o)),
    ("lecun_normal", lambda i, o: 1.0),
    ("lecun_uniform", lambda i, o: 1.0),
    ("orthogonal", lambda i, o: i / max(i, o)),
    (0.05, lambda i, o: 0.0025 * i),
    ("zeros", lambda i, o: 0.0),
])
def test_for_network_maps_each_init_scheme(init, expected):
    net = gradwatch.MLP(SIZES, activation="relu", init=init, seed=3, dtype="float64")
    prediction = theory.for_network(net)
    fans = list(zip(SIZES[:-1], SIZES[1:]))
    sigma_w2 = np.array([layer.sigma_w**2 for layer in prediction.layers])
    np.testing.assert_allclose(sigma_w2, [expected(i, o) for i, o in fans], rtol=1e-12)
    assert all(layer.sigma_b == 0.0 for layer in prediction.layers)
    # The same variances measured from the drawn weights: mean(W^2) over >= 1000 entries has a
    # relative standard deviation <= sqrt(2 / 1000) = 4.5% (uniform and orthogonal: less).
    measured = theory.for_network(net, from_weights=True)
    for layer, (fan_in, fan_out) in zip(measured.layers, fans):
        assert layer.sigma_w**2 == pytest.approx(expected(fan_in, fan_out),
                                                 rel=4 * math.sqrt(2 / (fan_in * fan_out)))
    assert [layer.activation for layer in prediction.layers] == ["relu"] * 3 + ["identity"]


def test_for_network_he_for_leaky_relu():
    net = gradwatch.MLP((50, 40, 10), activation="leaky_relu", init="he_normal", seed=0)
    layer = theory.for_network(net).layers[0]
    assert layer.sigma_w**2 == pytest.approx(2 / (1 + 0.01**2), rel=1e-12)
    assert layer.chi == pytest.approx(1.0, rel=1e-12)  # He for leaky relu is critical


def test_for_network_matches_monte_carlo_of_the_network():
    # The MLP's own weights, run through NumPy: theory.for_network(net, x=x) per layer.
    width, batch = 1000, 32
    net = gradwatch.MLP((400, width, width, width, 10), activation="tanh", init="xavier_normal",
                        seed=11, dtype="float64")
    x = np.random.default_rng(12).uniform(-1.5, 1.5, (batch, 400))
    state = net.state_dict()
    weights = [state[f"dense{i}.weight"] for i in range(4)]
    biases = [state[f"dense{i}.bias"] for i in range(4)]
    measured_q, _ = mc_plain(x, weights, biases, "tanh", seed=0)
    _, measured_chi = mc_plain(x, weights[:3], biases[:3], "tanh", seed=13)
    prediction = theory.for_network(net, x=x)
    assert prediction.q_input == pytest.approx(np.mean(x**2))
    bound = noise_bound(width, batch, 3)
    assert np.all(np.abs(measured_q[:3] / prediction.q[:3] - 1) < bound)
    # The output layer has 10 units: W N = 320 values, 8% per standard deviation.
    assert measured_q[3] == pytest.approx(prediction.q[3], rel=0.32)
    assert np.all(np.abs(measured_chi / prediction.chi[:3] - 1) < 4 * math.sqrt(5 / (width * 8)))


def test_for_network_dropout_and_record():
    net = gradwatch.MLP((20, 30, 30, 5), activation="relu", dropout=0.5, seed=1)
    plain = theory.for_network(gradwatch.MLP((20, 30, 30, 5), activation="relu", seed=1))
    dropped = theory.for_network(net)
    # Inverted dropout p = 0.5 doubles the second moment passed on and chi of each hidden layer;
    # relu is homogeneous, so the doublings compound along q.
    np.testing.assert_allclose(dropped.chi[:2], 2 * plain.chi[:2], rtol=1e-13)
    np.testing.assert_allclose(dropped.q, [1, 2, 4] * plain.q, rtol=1e-13)
    record = dropped.to_dict()
    json.dumps(record)
    assert len(record["layers"]) == 3 and record["batch_size"] is None
    assert "layer activation" in repr(dropped)


# ---------------------------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------------------------


def test_batchnorm_relu_limits():
    limit = math.pi / (math.pi - 1)
    rates = [theory.batchnorm_gradient_growth(b) for b in (4, 8, 16, 64, 1024, 10**6)]
    assert all(a > b for a, b in zip(rates, rates[1:]))  # smaller batches explode faster
    assert rates[-1] == pytest.approx(limit, rel=1e-5)
    assert theory.batchnorm_gradient_growth(2) == math.inf
    assert theory.batchnorm_gradient_growth(3) == math.inf


@pytest.mark.parametrize("batch", [4, 5, 8, 33, 1000, 10**5])
def test_batchnorm_quadrature_agrees_with_closed_forms(batch):
    # leaky_relu with alpha = 0 is relu, but goes through the sphere quadrature.
    sampled = theory.batchnorm_gradient_growth(batch, "leaky_relu", alpha=0.0)
    assert type(sampled) is float
    assert sampled == pytest.approx(theory.batchnorm_gradient_growth(batch), rel=1e-10)
    # Identity: phi' = 1 gives E|GA|^2 = B - 2 and E|G phi(x)|^2 = B, so lambda = (B-2)/(B-3).
    assert theory.batchnorm_gradient_growth(batch, "identity") == pytest.approx(
        (batch - 2) / (batch - 3), rel=1e-10)


@pytest.mark.parametrize("batch", [8, 32])
def test_batchnorm_growth_matches_wide_network(batch):
    # width 800, 8 layers, 2 networks. The per-layer ratio fluctuates by 2.5% at width 1500
    # (measured over 4 x 15 layers), so by 3.4% at width 800: the mean over 2 x 5 interior
    # layers has 1.1% and 4.5% is 4 sigma; the first layer's mean over 2 networks: 10%.
    chis = np.array([mc_batchnorm(batch, 800, 8, seed) for seed in (0, 1)])
    predicted = theory.batchnorm_gradient_growth(batch)
    assert np.mean(chis[:, 1:-2]) == pytest.approx(predicted, rel=0.045)
    # The first layer sees the raw inputs, not the relu sphere's output (chi about 0.4 lambda).
    net = gradwatch.MLP((800,) * 9, activation="relu", batchnorm=True, seed=0)
    first = theory.for_network(net, batch_size=batch).chi[0]
    assert np.mean(chis[:, 0]) == pytest.approx(first, rel=0.10)


def test_for_network_with_batchnorm():
    net = gradwatch.MLP((40, 64, 64, 64, 10), activation="relu", batchnorm=True, seed=2)
    x = np.random.default_rng(0).standard_normal((16, 40)) * 2.0
    prediction = theory.for_network(net, x=x)
    assert prediction.batch_size == 16
    rate = theory.batchnorm_gradient_growth(16)
    np.testing.assert_allclose(prediction.chi[1:3], rate, rtol=1e-13)
    assert list(prediction.q[:3]) == [1.0, 1.0, 1.0]
    assert prediction.chi[3] == pytest.approx(prediction.layers[3].sigma_w**2, rel=1e-13)
    # The first layer's chi scales as 1 / (batch variance of x).
    scaled = theory.for_network(net, x=x / 2.0)
    assert scaled.chi[0] == pytest.approx(4.0 * prediction.chi[0], rel=1e-12)
    assert theory.for_network(net, batch_size=3).chi[1] == math.inf


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def test_errors():
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        theory.fixed_point("swish")
    with pytest.raises(ValueError, match="takes no alpha"):
        theory.chi_1(1.0, "tanh", alpha=0.1)
    with pytest.raises(ValueError, match="sigma_w must be >= 0"):
        theory.length_map(1.0, "tanh", -1.0)
    with pytest.raises(TypeError, match="q must be a real number"):
        theory.length_map("1", "tanh")
    with pytest.raises(ValueError, match=r"c must be a correlation in \[-1, 1\]"):
        theory.correlation_map(1.5, 1.0)
    with pytest.raises(ValueError, match="q_start must be > 0"):
        theory.fixed_point("tanh", q_start=0.0)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        theory.trajectory(0)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        theory.batchnorm_gradient_growth(1)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        theory.batchnorm_gradient_growth(8.0)
    with pytest.raises(TypeError, match="net must be a gradwatch.MLP"):
        theory.for_network("net")
    residual = gradwatch.MLP((8, 8, 8, 2), residual=True, seed=0)
    with pytest.raises(ValueError, match=r"layers \[0, 1\] are residual"):
        theory.for_network(residual)
    bn = gradwatch.MLP((8, 8, 2), batchnorm=True, seed=0)
    with pytest.raises(ValueError, match="pass batch_size="):
        theory.for_network(bn)
    net = gradwatch.MLP((8, 8, 2), seed=0)
    with pytest.raises(ValueError, match="give q_input or x, not both"):
        theory.for_network(net, 1.0, x=np.ones((2, 8)))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 8\), got \(2, 7\)"):
        theory.for_network(net, x=np.ones((2, 7)))
    with pytest.raises(TypeError, match="from_weights must be True or False"):
        theory.for_network(net, from_weights=1)
