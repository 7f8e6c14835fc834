"""Weight initialisation: the generator, the layout of its streams, every scheme's distribution."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradwatch
import reference
from gradwatch import init
from gradwatch._core_loader import _core

SEEDS = st.integers(min_value=0, max_value=2**64 - 1)
FANS = st.integers(min_value=1, max_value=40)

# Large enough for moments within a few standard errors and for both threads to take part.
BIG = (800, 1250)


def w64(fan_in, fan_out, scheme, **kwargs):
    return init.weights(fan_in, fan_out, scheme, dtype="float64", **kwargs)


# --- the generator --------------------------------------------------------------------------

# Random123's kat_vectors (Salmon et al. 2011), the three "philox4x32 10" lines:
# counter (4 words), key (2 words), expected output (4 words).
PHILOX_KNOWN_ANSWERS = [
    ([0x00000000] * 4, [0x00000000] * 2, [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]


@pytest.mark.parametrize("counter, key, expected", PHILOX_KNOWN_ANSWERS)
def test_philox_known_answers(counter, key, expected):
    counters = np.array([counter], dtype=np.uint32)
    keys = np.array(key, dtype=np.uint32)
    assert _core.philox4x32_10(counters, keys)[0].tolist() == expected
    assert reference.philox4x32_10(counters, keys)[0].tolist() == expected


@pytest.mark.simd
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=4, max_size=40).map(
        lambda words: words[: len(words) // 4 * 4]
    ),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
def test_philox_matches_reference(words, key0, key1):
    counters = np.array(words, dtype=np.uint32).reshape(-1, 4)
    key = np.array([key0, key1], dtype=np.uint32)
    np.testing.assert_array_equal(
        _core.philox4x32_10(counters, key), reference.philox4x32_10(counters, key)
    )


def test_philox_binding_checks_shapes():
    key = np.zeros(2, np.uint32)
    with pytest.raises(ValueError, match="counters: dimension 1 must be 4, got 3"):
        _core.philox4x32_10(np.zeros((2, 3), np.uint32), key)
    with pytest.raises(ValueError, match="key: dimension 0 must be 2, got 3"):
        _core.philox4x32_10(np.zeros((2, 4), np.uint32), np.zeros(3, np.uint32))


# --- the streams, against the reference -----------------------------------------------------


def test_pinned_values_for_seed_12345():
    # Pinned: a change of the stream layout silently changes every seeded model. The uniform
    # values are exact arithmetic on Philox words; the normals go through libm (1e-15).
    uniform = w64(1, 4, "uniform", limit=1.0, seed=12345)
    assert uniform.tolist() == [
        [0.883027042597005, 0.3027158434964823, 0.2641430670283398, 0.10169020867673484]
    ]
    normal = w64(1, 4, "normal", std=1.0, seed=12345)
    np.testing.assert_allclose(
        normal,
        [[-0.37082146180464964, -0.10773541564798639, -0.29816427059319883, -0.9155087773722682]],
        rtol=1e-15,
    )


def test_first_uniform_value_by_hand():
    # Block 0 of stream 2 (uniform) under key (seed mod 2^32, seed div 2^32); the value is
    # limit * (2u - 1) with u = (2k + 1) / 2^53, k the top 52 bits of x1:x0.
    seed = 7 + (3 << 32)
    x = _core.philox4x32_10(np.array([[0, 0, 2, 0]], np.uint32), np.array([7, 3], np.uint32))[0]
    k = ((int(x[1]) << 32) | int(x[0])) >> 12
    expected = 0.25 * ((2 * k + 1) / 2**52 - 1)
    assert w64(1, 1, "uniform", limit=0.25, seed=seed)[0, 0] == expected


@pytest.mark.simd
@given(FANS, FANS, SEEDS, st.floats(0.0, 10.0))
def test_normal_matches_reference(fan_in, fan_out, seed, std):
    expected = reference.init_normal(seed, fan_in, fan_out, std)
    # libm's log/cos/sin against NumPy's: a few ulp at most.
    np.testing.assert_allclose(w64(fan_in, fan_out, "normal", std=std, seed=seed), expected,
                               rtol=1e-14, atol=1e-300)


@pytest.mark.simd
@given(FANS, FANS, SEEDS, st.floats(0.0, 10.0))
def test_uniform_matches_reference_bitwise(fan_in, fan_out, seed, limit):
    expected = reference.init_uniform(seed, fan_in, fan_out, limit)
    np.testing.assert_array_equal(w64(fan_in, fan_out, "uniform", limit=limit, seed=seed), expected)


@pytest.mark.simd
@given(FANS, FANS, SEEDS, st.floats(0.1, 10.0))
def test_orthogonal_matches_reference_qr(fan_in, fan_out, seed, gain):
    expected = reference.init_orthogonal(seed, fan_in, fan_out, gain)
    # Householder QR against LAPACK's on a well-conditioned Gaussian matrix of size <= 40.
    np.testing.assert_allclose(
        w64(fan_in, fan_out, "orthogonal", gain=gain, seed=seed), expected,
        rtol=0, atol=1e-12 * gain,
    )


def test_elements_follow_the_counter_so_smaller_matrices_are_prefixes():
    big = w64(7, 9, "normal", std=1.0, seed=5).ravel()
    for fan_in, fan_out in [(1, 1), (1, 3), (3, 5), (5, 7)]:
        small = w64(fan_in, fan_out, "normal", std=1.0, seed=5).ravel()
        np.testing.assert_array_equal(small, big[: small.size])
    big = w64(7, 9, "uniform", limit=1.0, seed=5).ravel()
    np.testing.assert_array_equal(w64(3, 5, "uniform", limit=1.0, seed=5).ravel(), big[:15])


# --- moments and distributions on large matrices ---------------------------------------------

NORMAL_CASES = [
    (0.01, {}),
    (2, {}),
    ("normal", {"std": 0.5}),
    ("normal", {"std": 0.5, "gain": 3.0}),
    ("xavier_normal", {}),
    ("glorot_normal", {"gain": 2.0}),
    ("he_normal", {}),
    ("he", {}),
    ("kaiming_normal", {"nonlinearity": "leaky_relu", "negative_slope": 0.2}),
    ("lecun_normal", {}),
]
UNIFORM_CASES = [
    ("uniform", {"limit": 0.3}),
    ("uniform", {"limit": 0.3, "gain": 0.5}),
    ("xavier_uniform", {}),
    ("glorot_uniform", {"gain": 1.5}),
    ("he_uniform", {}),
    ("kaiming_uniform", {"nonlinearity": "leaky_relu", "negative_slope": 5.0}),
    ("lecun_uniform", {}),
]


def normal_cdf(values):
    erf = np.frompyfunc(math.erf, 1, 1)
    return 0.5 * (1.0 + erf(values / math.sqrt(2.0)).astype(np.float64))


def assert_moments(w, std, kurtosis):
    """Mean within 5 standard errors of 0, variance within 5 of std^2 (kurtosis: E x^4 / std^4)."""
    n = w.size
    assert abs(w.mean()) < 5 * std / math.sqrt(n)
    variance = np.mean(w * w)  # the mean is known: 0
    assert abs(variance - std**2) < 5 * std**2 * math.sqrt((kurtosis - 1) / n)


@pytest.mark.parametrize("index", range(len(NORMAL_CASES)))
def test_normal_schemes_have_the_theoretical_distribution(index):
    scheme, kwargs = NORMAL_CASES[index]
    std = init.std_for(scheme, *BIG, **kwargs)
    w = w64(*BIG, scheme, seed=1000 + index, **kwargs)
    assert_moments(w, std, kurtosis=3.0)
    assert np.abs(w).max() <= math.sqrt(-2 * math.log(2.0**-53)) * std  # Box-Muller's largest
    sample = np.sort(w.ravel()[:200_000]) / std
    cdf = normal_cdf(sample)
    ranks = np.arange(1, sample.size + 1) / sample.size
    ks = max(np.max(ranks - cdf), np.max(cdf - (ranks - 1 / sample.size)))
    assert ks < 1.95 / math.sqrt(sample.size)  # Kolmogorov-Smirnov at the 0.1% level


@pytest.mark.parametrize("index", range(len(UNIFORM_CASES)))
def test_uniform_schemes_have_the_theoretical_distribution(index):
    scheme, kwargs = UNIFORM_CASES[index]
    std = init.std_for(scheme, *BIG, **kwargs)
    limit = math.sqrt(3) * std
    w = w64(*BIG, scheme, seed=2000 + index, **kwargs)
    assert_moments(w, std, kurtosis=9 / 5)
    # The open interval, reached to within a few spacings of 2 limit / n.
    assert np.abs(w).max() < limit * (1 + 1e-15)
    assert w.max() > limit * (1 - 1e-4) and w.min() < -limit * (1 - 1e-4)
    sample = np.sort(w.ravel())
    cdf = (sample + limit) / (2 * limit)
    ranks = np.arange(1, sample.size + 1) / sample.size
    ks = max(np.max(ranks - cdf), np.max(cdf - (ranks - 1 / sample.size)))
    assert ks < 1.95 / math.sqrt(sample.size)


def test_uniform_bound_is_never_exceeded_exactly():
    limit = 0.1
    w = w64(*BIG, "uniform", limit=limit, seed=3)
    assert np.all(np.abs(w) < limit)
    w32 = init.weights(*BIG, "uniform", limit=limit, seed=3, dtype="float32")
    assert np.all(np.abs(w32) <= np.float32(limit))


# --- the formulas ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scheme, fan_in, fan_out, kwargs, expected",
    [
        (0.01, 784, 100, {}, 0.01),
        ("zeros", 3, 4, {}, 0.0),
        ("normal", 3, 4, {"std": 0.2, "gain": 2.0}, 0.4),
        ("uniform", 3, 4, {"limit": math.sqrt(3)}, 1.0),
        ("he_normal", 50, 7, {}, 0.2),  # sqrt(2 / 50)
        ("he_normal", 50, 7, {"nonlinearity": "leaky_relu", "negative_slope": 1.0},
         math.sqrt(1 / 50)),  # sqrt(2 / ((1 + 1) 50))
        ("he_uniform", 6, 1, {}, math.sqrt(1 / 3)),  # limit sqrt(6 / 6) = 1
        ("xavier_normal", 100, 100, {}, 0.1),  # sqrt(2 / 200)
        ("xavier_uniform", 2, 1, {}, math.sqrt(2 / 3)),  # limit sqrt(6 / 3)
        ("lecun_normal", 25, 3, {"gain": 3.0}, 0.6),  # 3 sqrt(1 / 25)
        ("lecun_uniform", 3, 9, {}, 1 / math.sqrt(3)),  # limit sqrt(3 / 3) = 1
        ("orthogonal", 4, 16, {"gain": 2.0}, 0.5),  # 2 / sqrt(16)
        ("orthogonal", 100, 9, {}, 0.1),
    ],
)
def test_std_for_worked_examples(scheme, fan_in, fan_out, kwargs, expected):
    assert init.std_for(scheme, fan_in, fan_out, **kwargs) == pytest.approx(expected, rel=1e-15)


FAN_SCHEMES = ["xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "lecun_normal",
               "lecun_uniform"]


@given(st.sampled_from(FAN_SCHEMES), FANS, FANS, st.floats(0.01, 10.0), st.floats(-5.0, 5.0))
def test_std_for_matches_the_papers_formulas(scheme, fan_in, fan_out, gain, negative_slope):
    kwargs = {"gain": gain}
    slope = 0.0
    if scheme.startswith("he"):
        kwargs.update(nonlinearity="leaky_relu", negative_slope=negative_slope)
        slope = negative_slope
    distribution, spread = reference.init_spread(scheme, fan_in, fan_out, gain, slope)
    expected = spread if distribution == "normal" else spread / math.sqrt(3)
    assert init.std_for(scheme, fan_in, fan_out, **kwargs) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("alias, name", sorted(init.ALIASES.items()))
def test_aliases_give_the_same_weights(alias, name):
    np.testing.assert_array_equal(w64(30, 20, alias, seed=4), w64(30, 20, name, seed=4))


def test_he_default_is_relu_and_ignores_negative_slope():
    relu = w64(30, 20, "he_normal", seed=4)
    np.testing.assert_array_equal(relu, w64(30, 20, "he_normal", seed=4, negative_slope=0.3))
    leaky = w64(30, 20, "he_normal", seed=4, nonlinearity="leaky_relu", negative_slope=0.3)
    np.testing.assert_allclose(leaky, relu / math.sqrt(1 + 0.3**2), rtol=1e-15)


def test_gain_scales_the_standard_deviation():
    # gain * s is exact here, so the weights are the same bits.
    np.testing.assert_array_equal(w64(9, 11, 0.5, gain=2.0, seed=8), w64(9, 11, 1.0, seed=8))
    np.testing.assert_array_equal(
        w64(9, 11, "uniform", limit=3.0, gain=0.5, seed=8),
        w64(9, 11, "uniform", limit=1.5, seed=8),
    )


# --- orthogonal -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fan_in, fan_out", [(300, 120), (120, 300), (200, 200), (1, 1), (1, 7), (7, 1)]
)
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_is_orthonormal(fan_in, fan_out, gain, dtype):
    w = init.weights(fan_in, fan_out, "orthogonal", gain=gain, seed=6, dtype=dtype)
    assert w.shape == (fan_in, fan_out) and w.dtype == dtype and w.flags.c_contiguous
    w = w.astype(np.float64)
    gram = w.T @ w if fan_in >= fan_out else w @ w.T
    atol = 1e-13 if dtype == np.float64 else 2e-6  # float32: rounding of every entry
    np.testing.assert_allclose(gram / gain**2, np.eye(min(fan_in, fan_out)), rtol=0, atol=atol)


def test_orthogonal_entries_have_variance_one_over_the_longer_side():
    w = w64(500, 400, "orthogonal", gain=2.0, seed=9)
    std = init.std_for("orthogonal", 500, 400, gain=2.0)
    assert_moments(w, std, kurtosis=3.0)


def test_orthogonal_sign_fix_makes_the_diagonal_symmetric():
    # Without the fix, Householder's Q[0, 0] = -|a_00| / |a_0| is never positive.
    first = [w64(30, 20, "orthogonal", seed=seed)[0, 0] for seed in range(40)]
    positive = sum(value > 0 for value in first)
    assert 8 <= positive <= 32
    # The trace of a Haar-distributed orthogonal matrix has mean 0 and variance 1.
    assert abs(np.trace(w64(300, 300, "orthogonal", seed=10))) < 5


# --- zeros, dtypes, seeds, threads -----------------------------------------------------------


def test_zeros(dtype):
    w = init.weights(5, 3, "zeros", dtype=dtype, seed=1)
    assert w.shape == (5, 3) and w.dtype == dtype and w.flags.c_contiguous
    assert not w.any()


@pytest.mark.parametrize(
    "scheme, kwargs",
    [(0.05, {}), ("uniform", {"limit": 0.2}), ("he_normal", {}), ("xavier_uniform", {}),
     ("orthogonal", {"gain": 1.3})],
)
def test_float32_is_the_float64_result_rounded(scheme, kwargs):
    w32 = init.weights(130, 70, scheme, seed=11, dtype="float32", **kwargs)
    w64_ = init.weights(130, 70, scheme, seed=11, dtype="float64", **kwargs)
    assert w32.dtype == np.float32 and w32.flags.c_contiguous and w32.shape == (130, 70)
    np.testing.assert_array_equal(w32, w64_.astype(np.float32))


@pytest.mark.parametrize("dtype_argument, expected", [
    ("float32", np.float32), ("float64", np.float64), (np.float32, np.float32),
    (np.dtype("float64"), np.float64), (float, np.float64),
])
def test_dtype_spellings(dtype_argument, expected):
    assert init.weights(2, 3, "he", seed=0, dtype=dtype_argument).dtype == expected


def test_default_dtype_is_float32():
    assert init.weights(2, 3, "he", seed=0).dtype == np.float32


@pytest.mark.parametrize(
    "scheme, kwargs", [(0.1, {}), ("uniform", {"limit": 1.0}), ("orthogonal", {})]
)
def test_seeds_reproduce_and_differ(scheme, kwargs):
    first = w64(40, 30, scheme, seed=123, **kwargs)
    np.testing.assert_array_equal(first, w64(40, 30, scheme, seed=np.uint64(123), **kwargs))
    assert not np.array_equal(first, w64(40, 30, scheme, seed=124, **kwargs))
    assert not np.array_equal(first, w64(40, 30, scheme, seed=123 + 2**32, **kwargs))
    assert not np.array_equal(w64(40, 30, scheme, **kwargs), w64(40, 30, scheme, **kwargs))


def test_extreme_seeds():
    for seed in (0, 2**32 - 1, 2**32, 2**64 - 1):
        np.testing.assert_array_equal(w64(3, 4, "uniform", limit=1.0, seed=seed),
                                      reference.init_uniform(seed, 3, 4, 1.0))


def test_purposes_use_different_streams():
    normal = w64(20, 20, "normal", std=1.0, seed=3).ravel()
    np.testing.assert_allclose(
        normal, reference.standard_normals(3, reference.STREAM_NORMAL, 400), rtol=1e-14
    )
    behind_orthogonal = reference.standard_normals(3, reference.STREAM_ORTHOGONAL, 400)
    assert not np.allclose(normal, behind_orthogonal)
    uniform = w64(20, 20, "uniform", limit=1.0, seed=3).ravel()
    behind_normal = reference.open_uniforms(3, reference.STREAM_NORMAL, 400)
    assert not np.allclose(uniform, 2 * behind_normal - 1)


@pytest.mark.parametrize(
    "shape, scheme, kwargs",
    [(BIG, "he_normal", {}), (BIG, "uniform", {"limit": 1.0}), ((300, 200), "orthogonal", {}),
     ((200, 300), "orthogonal", {})],
)
def test_one_and_two_threads_give_the_same_bits(shape, scheme, kwargs):
    before = gradwatch.get_num_threads()
    try:
        gradwatch.set_num_threads(1)
        one = w64(*shape, scheme, seed=77, **kwargs)
        gradwatch.set_num_threads(2)
        two = w64(*shape, scheme, seed=77, **kwargs)
    finally:
        gradwatch.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


# --- errors ---------------------------------------------------------------------------------


def test_xavier_is_refused_with_both_meanings():
    with pytest.raises(ValueError, match="ambiguous") as error:
        init.weights(3, 4, "xavier")
    assert "lecun_normal" in str(error.value) and "xavier_normal" in str(error.value)
    assert "1/fan_in" in str(error.value) and "2/(fan_in + fan_out)" in str(error.value)


def test_unknown_scheme_lists_every_valid_name():
    with pytest.raises(ValueError, match="unknown scheme 'kaiming'") as error:
        init.weights(3, 4, "kaiming")
    for name in init.SCHEMES:
        assert repr(name) in str(error.value)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: init.weights(0, 4, "he"), ValueError, "fan_in must be >= 1, got 0"),
        (lambda: init.weights(3, -1, "he"), ValueError, "fan_out must be >= 1, got -1"),
        (lambda: init.weights(3.0, 4, "he"), TypeError, "fan_in must be an integer"),
        (lambda: init.weights(3, "4", "he"), TypeError, "fan_out must be an integer"),
        (lambda: init.weights(3, True, "he"), TypeError, "fan_out must be an integer"),
        (lambda: init.weights(3, 4, None), TypeError, "scheme must be a scheme name"),
        (lambda: init.weights(3, 4, True), TypeError, "scheme must be a scheme name"),
        (lambda: init.weights(3, 4, -0.01), ValueError, "must be >= 0, got -0.01"),
        (lambda: init.weights(3, 4, float("nan")), ValueError, "scheme must be finite"),
        (lambda: init.weights(3, 4, float("inf")), ValueError, "scheme must be finite"),
        (lambda: init.weights(3, 4, "normal"), ValueError, "'normal' needs the keyword std"),
        (lambda: init.weights(3, 4, "uniform"), ValueError, "'uniform' needs the keyword limit"),
        (lambda: init.weights(3, 4, "normal", std=-1.0), ValueError, "std must be >= 0"),
        (lambda: init.weights(3, 4, "normal", std=math.inf), ValueError, "std must be finite"),
        (lambda: init.weights(3, 4, "normal", std="1"), TypeError, "std must be a real number"),
        (lambda: init.weights(3, 4, "uniform", limit=-1.0), ValueError, "limit must be >= 0"),
        (lambda: init.weights(3, 4, "uniform", limit=math.nan), ValueError, "limit must be finite"),
        (lambda: init.weights(3, 4, "he", std=0.1), ValueError,
         "std applies only to scheme 'normal'"),
        (lambda: init.weights(3, 4, 0.1, std=0.1), ValueError,
         "std applies only to scheme 'normal'"),
        (lambda: init.weights(3, 4, "normal", std=1.0, limit=0.1), ValueError,
         "limit applies only to scheme 'uniform'"),
        (lambda: init.weights(3, 4, "he", gain=0.0), ValueError, "gain must be > 0"),
        (lambda: init.weights(3, 4, "he", gain=-1.0), ValueError, "gain must be > 0"),
        (lambda: init.weights(3, 4, "he", gain=math.inf), ValueError, "gain must be finite"),
        (lambda: init.weights(3, 4, "he", gain=None), TypeError, "gain must be a real number"),
        (lambda: init.weights(3, 4, "he", negative_slope=math.nan), ValueError,
         "negative_slope must be finite"),
        (lambda: init.weights(3, 4, "he", nonlinearity="tanh"), ValueError,
         "unknown nonlinearity 'tanh'; valid values are 'relu', 'leaky_relu'"),
        (lambda: init.weights(3, 4, "xavier_normal", nonlinearity="leaky_relu"), ValueError,
         "applies only to the He schemes"),
        (lambda: init.weights(3, 4, "he", seed=-1), ValueError, r"seed must be in \[0, 2\*\*64\)"),
        (lambda: init.weights(3, 4, "he", seed=2**64), ValueError,
         r"seed must be in \[0, 2\*\*64\)"),
        (lambda: init.weights(3, 4, "he", seed=1.0), TypeError, "seed must be None or an integer"),
        (lambda: init.weights(3, 4, "he", seed=True), TypeError, "seed must be None or an integer"),
        (lambda: init.weights(3, 4, "he", dtype="float16"), TypeError,
         "dtype must be float32 or float64.*got float16"),
        (lambda: init.weights(3, 4, "he", dtype=np.int32), TypeError, "got int32"),
        (lambda: init.weights(3, 4, "he", dtype="banana"), TypeError, "got 'banana'"),
        (lambda: init.weights(3, 4, "he", dtype=None), TypeError, "got None"),
        (lambda: init.std_for("xavier", 3, 4), ValueError, "ambiguous"),
        (lambda: init.std_for("he", 0, 4), ValueError, "fan_in must be >= 1"),
    ],
)
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_core_rechecks_its_arguments():
    with pytest.raises(ValueError, match="fan_in must be >= 1"):
        _core.init_normal_f64(0, 3, 1.0, 0)
    with pytest.raises(ValueError, match="too large"):
        _core.init_uniform_f32(2**40, 2**40, 1.0, 0)
    with pytest.raises(ValueError, match="std must be finite and >= 0"):
        _core.init_normal_f32(2, 3, math.nan, 0)


# --- PyTorch's formulas ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (("xavier_normal", {"gain": 1.7}), ("xavier_normal_", {"gain": 1.7})),
        (("xavier_uniform", {}), ("xavier_uniform_", {})),
        (("he_normal", {}), ("kaiming_normal_", {"nonlinearity": "relu"})),
        (("he_uniform", {"nonlinearity": "leaky_relu", "negative_slope": 0.2}),
         ("kaiming_uniform_", {"a": 0.2, "nonlinearity": "leaky_relu"})),
    ],
)
def test_std_agrees_with_torch_nn_init(ours, theirs):
    torch = pytest.importorskip("torch")
    fan_in, fan_out = 600, 300
    generator = torch.Generator().manual_seed(0)
    weight = torch.empty(fan_out, fan_in, dtype=torch.float64)  # PyTorch's (out, in) layout
    getattr(torch.nn.init, theirs[0])(weight, generator=generator, **theirs[1])
    std = init.std_for(ours[0], fan_in, fan_out, **ours[1])
    # 180000 samples: the sample std is within 1% of the truth.
    assert float(weight.std()) == pytest.approx(std, rel=0.01)


def test_orthogonal_agrees_with_torch_on_which_side_is_orthonormal():
    torch = pytest.importorskip("torch")
    for fan_in, fan_out in [(40, 10), (10, 40)]:
        weight = torch.empty(fan_out, fan_in, dtype=torch.float64)
        torch.nn.init.orthogonal_(weight, generator=torch.Generator().manual_seed(0))
        theirs = weight.numpy().T  # as (fan_in, fan_out)
        ours = w64(fan_in, fan_out, "orthogonal", seed=0)
        for w in (theirs, ours):
            gram = w.T @ w if fan_in >= fan_out else w @ w.T
            np.testing.assert_allclose(gram, np.eye(min(fan_in, fan_out)), atol=1e-12)
