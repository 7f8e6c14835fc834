"""Optimisers: worked examples, the reference rules, PyTorch, state dicts, threads, errors."""

import copy
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradwatch
import reference
from conftest import assert_close
from gradwatch import optim
from gradwatch._core_loader import _core

# A network-like layout: every role, sizes with vector-loop tails.
LAYOUT = {
    "dense0.weight": (13, 7),
    "dense0.bias": (7,),
    "bn0.gamma": (7,),
    "bn0.beta": (7,),
    "dense1.weight": (7, 3),
    "dense1.bias": (3,),
}

# (optimiser class, constructor arguments): every option of every optimiser.
CASES = [
    (optim.SGD, dict(lr=0.1)),
    (optim.SGD, dict(lr=0.1, momentum=0.9)),
    (optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.02)),
    (optim.AdaGrad, dict()),
    (optim.AdaGrad, dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.2)),
    (optim.RMSProp, dict()),
    (optim.RMSProp, dict(lr=0.01, alpha=0.9, momentum=0.5)),
    (optim.RMSProp, dict(lr=0.01, alpha=0.95, centered=True, weight_decay=0.01)),
    (optim.RMSProp, dict(lr=0.005, alpha=0.3, momentum=0.7, centered=True, eps=1e-6)),
    (optim.Adam, dict()),
    (optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.05)),
    (optim.Adam, dict(lr=0.01, betas=(0.3, 0.9), eps=1e-6)),
    (optim.AdamW, dict()),
    (optim.AdamW, dict(lr=0.01, betas=(0.85, 0.995), weight_decay=0.1)),
    (optim.AdamW, dict(lr=0.01, weight_decay=0.0)),
    (optim.LARS, dict(lr=0.5)),
    (optim.LARS, dict(lr=0.5, weight_decay=0.01, trust_coefficient=0.02)),
    (optim.LARS, dict(lr=0.5, momentum=0.0, mode="clip", trust_coefficient=0.02)),
    (optim.LARS, dict(lr=0.01, weight_decay=0.005, mode="clip", exclude_bias_and_bn=False)),
    (optim.LARS, dict(lr=0.3, momentum=0.8, trust_coefficient=0.05, exclude_bias_and_bn=False)),
]


def case_id(case):
    cls, kwargs = case
    return cls.__name__ + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


@pytest.fixture
def thread_budget():
    before = gradwatch.get_num_threads()
    yield gradwatch.set_num_threads
    gradwatch.set_num_threads(before)


def random_tensors(rng, dtype, layout=LAYOUT, scale=1.0):
    return {name: (scale * rng.standard_normal(shape)).astype(dtype) for name, shape in
            layout.items()}


def reference_update(optimizer):
    """The reference rule for this optimiser's options: f(p, g, state, t, role) -> new p."""
    options = optimizer.options
    if isinstance(optimizer, optim.LARS):
        exclude = options.pop("exclude_bias_and_bn")
        return lambda p, g, state, t, role: reference.lars_update(
            p, g, state, t, adapt=role == "weight" or not exclude, **options)
    rule = {
        optim.SGD: reference.sgd_update,
        optim.AdaGrad: reference.adagrad_update,
        optim.RMSProp: reference.rmsprop_update,
        optim.Adam: reference.adam_update,
        optim.AdamW: lambda *args, **kw: reference.adam_update(*args, decoupled=True, **kw),
    }[type(optimizer)]
    return lambda p, g, state, t, role: rule(p, g, state, t, **options)


# Clipping per step: (grad_scale, clip value); the network applies both before the update.
CLIPPING = [(1.0, None), (0.5, None), (1.0, 0.7), (0.8, 0.4), (1.0, None)]


def run_both(cls, kwargs, dtype, seed=0, clipping=CLIPPING):
    """Steps of gradwatch's optimiser and of the reference from the same start; both results."""
    rng = np.random.default_rng(seed)
    params = random_tensors(rng, dtype)
    expected = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    optimizer = cls(**kwargs)
    update = reference_update(optimizer)
    states = {name: {} for name in params}
    for t, (grad_scale, clip_value) in enumerate(clipping, start=1):
        grads = random_tensors(rng, dtype)
        optimizer.step(params, grads, grad_scale=grad_scale, clip_grad_value=clip_value)
        for name, value in expected.items():
            g = reference.clip_gradient(grads[name], grad_scale, clip_value)
            expected[name] = update(value, g, states[name], t, optim.parameter_role(name))
    return optimizer, params, expected, states


# --- worked examples (by hand) ----------------------------------------------------------------


def test_sgd_momentum_worked_example(dtype):
    # Step 1: buf = g = 0.5, p = 1 - 0.1 * 0.5 = 0.95.
    # Step 2: buf = 0.9 * 0.5 + 0.5 = 0.95, p = 0.95 - 0.095 = 0.855.
    params = {"w": np.array([1.0], dtype)}
    grads = {"w": np.array([0.5], dtype)}
    sgd = optim.SGD(lr=0.1, momentum=0.9)
    sgd.step(params, grads)
    assert_close(params["w"], [0.95], dtype)
    sgd.step(params, grads)
    assert_close(params["w"], [0.855], dtype)
    assert_close(sgd.state_dict()["state"][0]["momentum_buffer"], [0.95], dtype)
    assert sgd.step_count == 2


def test_adagrad_adam_adamw_first_step_worked_example(dtype):
    # AdaGrad: sum = 9, p = 1 - 0.1 * 3 / 3 = 0.9.
    params = {"w": np.array([1.0], dtype)}
    optim.AdaGrad(lr=0.1).step(params, {"w": np.array([3.0], dtype)})
    assert_close(params["w"], [0.9], dtype)
    # Adam: m_hat = g, v_hat = g^2, p = 1 - 0.1 * 2 / (2 + 1e-8).
    params = {"w": np.array([1.0], dtype)}
    optim.Adam(lr=0.1).step(params, {"w": np.array([2.0], dtype)})
    assert_close(params["w"], [1 - 0.1 * 2 / (2 + 1e-8)], dtype)
    # AdamW: p = 1 * (1 - 0.1 * 0.5) = 0.95, then the same Adam step.
    params = {"w": np.array([1.0], dtype)}
    optim.AdamW(lr=0.1, weight_decay=0.5).step(params, {"w": np.array([2.0], dtype)})
    assert_close(params["w"], [0.95 - 0.1 * 2 / (2 + 1e-8)], dtype)


def test_rmsprop_worked_example(dtype):
    # square_avg = 0.5 * 4 = 2 (alpha 0.5), p = 1 - 0.1 * 2 / sqrt(2).
    params = {"w": np.array([1.0], dtype)}
    optim.RMSProp(lr=0.1, alpha=0.5, eps=1e-12).step(params, {"w": np.array([2.0], dtype)})
    assert_close(params["w"], [1 - 0.1 * math.sqrt(2)], dtype)


def test_lars_worked_example(dtype):
    # ||w|| = 5, ||g|| = 1: local_lr = 0.001 * 5 / 1 = 0.005.
    weight, grad = np.array([3.0, 4.0], dtype), np.array([0.6, 0.8], dtype)
    # scale: rate = lr * 0.005 = 0.005, v = 0.005 g, w = w - v.
    params = {"dense0.weight": weight.copy(), "dense0.bias": np.array([1.0], dtype)}
    grads = {"dense0.weight": grad, "dense0.bias": np.array([2.0], dtype)}
    optim.LARS(lr=1.0).step(params, grads)
    assert_close(params["dense0.weight"], [2.997, 3.996], dtype)
    assert_close(params["dense0.bias"], [1.0 - 2.0], dtype)  # excluded: rate lr = 1
    # clip: rate = min(lr, 0.005) = 0.001 for lr = 0.001 (LARC never raises the rate) ...
    params = {"dense0.weight": weight.copy()}
    optim.LARS(lr=0.001, mode="clip").step(params, {"dense0.weight": grad})
    assert_close(params["dense0.weight"], [3.0 - 0.0006, 4.0 - 0.0008], dtype)
    # ... and 0.005 for lr = 1.
    params = {"dense0.weight": weight.copy()}
    optim.LARS(lr=1.0, mode="clip").step(params, {"dense0.weight": grad})
    assert_close(params["dense0.weight"], [2.997, 3.996], dtype)
    # weight decay 0.2: local_lr = 0.005 / (1 + 0.2 * 5) = 0.0025, d = g + 0.2 w.
    params = {"dense0.weight": weight.copy()}
    optim.LARS(lr=1.0, weight_decay=0.2).step(params, {"dense0.weight": grad})
    assert_close(params["dense0.weight"], weight - 0.0025 * (grad + 0.2 * weight), dtype)


def test_lars_zero_norm_uses_the_global_rate(dtype):
    # ||w|| = 0 (a zero-initialised layer) and ||g|| = 0: the rate is lr, not 0 or NaN.
    params = {"dense0.weight": np.zeros(3, dtype), "dense1.weight": np.ones(3, dtype)}
    grads = {"dense0.weight": np.ones(3, dtype), "dense1.weight": np.zeros(3, dtype)}
    optim.LARS(lr=0.5, momentum=0.0, weight_decay=0.1).step(params, grads)
    assert_close(params["dense0.weight"], [-0.5] * 3, dtype)
    assert_close(params["dense1.weight"], [1 - 0.5 * 0.1] * 3, dtype)


def test_clipping_by_scale_and_value_worked_example(dtype):
    # g = clamp(grad * 0.5, -1, 1) = [1, -1, 0.25]; SGD with lr 1 subtracts it.
    params = {"w": np.zeros(3, dtype)}
    optim.SGD(lr=1.0).step(params, {"w": np.array([4.0, -3.0, 0.5], dtype)}, grad_scale=0.5,
                           clip_grad_value=1.0)
    assert_close(params["w"], [-1.0, 1.0, -0.25], dtype)


def test_infinite_gradients_are_clamped_by_value(dtype):
    # clamp(inf) = clip value, as torch.nn.utils.clip_grad_value_: the update stays finite.
    params = {"w": np.zeros(3, dtype)}
    optim.SGD(lr=0.5).step(params, {"w": np.array([np.inf, -np.inf, 1e30], dtype)},
                           clip_grad_value=2.0)
    assert_close(params["w"], [-1.0, 1.0, -1.0], dtype)


def test_sgd_first_step_initialises_the_buffer_to_the_gradient(dtype):
    # PyTorch's convention: the first buffer is d = g + wd p, with no (1 - dampening).
    params = {"w": np.array([2.0], dtype)}
    sgd = optim.SGD(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1)
    sgd.step(params, {"w": np.array([1.0], dtype)})
    assert_close(sgd.state_dict()["state"][0]["momentum_buffer"], [1.2], dtype)
    assert_close(params["w"], [2.0 - 0.12], dtype)


def test_lr_setter_changes_the_next_step(dtype):
    params = {"w": np.array([1.0], dtype)}
    sgd = optim.SGD(lr=0.1)
    sgd.step(params, {"w": np.array([1.0], dtype)})
    sgd.lr = 0.5
    assert sgd.lr == 0.5 and sgd.options["lr"] == 0.5
    assert sgd._core_optimizer(dtype).lr == 0.5
    sgd.step(params, {"w": np.array([1.0], dtype)})
    assert_close(params["w"], [0.4], dtype)
    assert sgd.state_dict()["options"]["lr"] == 0.5


def test_parameter_roles_from_names():
    assert optim.parameter_role("dense0.weight") == "weight"
    assert optim.parameter_role("dense12.bias") == "bias"
    assert optim.parameter_role("bn3.gamma") == "bn_gamma"
    assert optim.parameter_role("bn3.beta") == "bn_beta"
    assert optim.parameter_role("head.bias") == "weight"
    assert optim.parameter_role("dense0.bias.extra") == "weight"


def test_repr_and_defaults():
    assert repr(optim.SGD(lr=0.1)) == (
        "SGD(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)"
    )
    assert optim.AdamW().options == {
        "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2,
    }
    assert optim.AdaGrad().options["eps"] == 1e-10
    assert optim.RMSProp().options == {
        "lr": 0.01, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0,
        "centered": False,
    }
    assert repr(optim.LARS(lr=1.0)) == (
        "LARS(lr=1.0, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001, mode='scale', "
        "exclude_bias_and_bn=True)"
    )
    fresh = optim.Adam()
    assert fresh.step_count == 0 and fresh.dtype is None


# --- against the reference --------------------------------------------------------------------


@pytest.mark.simd
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference_over_several_steps_with_clipping(case, dtype):
    cls, kwargs = case
    optimizer, params, expected, states = run_both(cls, kwargs, dtype)
    # float32 state evolves with float32 rounding for 5 steps: a few ulp of drift per step.
    scale = 5.0 if dtype == np.float32 else 1.0
    for name, value in params.items():
        assert value.dtype == dtype
        assert_close(value, expected[name], dtype, scale=scale)
    state = optimizer.state_dict()["state"]
    for p, name in enumerate(LAYOUT):
        assert set(state[p]) == set(states[name])
        for buffer_name, values in state[p].items():
            assert values.dtype == dtype
            assert_close(values, states[name][buffer_name].reshape(-1), dtype, scale=scale)


@pytest.mark.simd
@given(
    case=st.sampled_from(CASES),
    dtype=st.sampled_from([np.float32, np.float64]),
    size=st.integers(1, 70),
    magnitude=st.sampled_from([1e-3, 1.0, 30.0]),
    clip=st.sampled_from([(1.0, None), (0.3, None), (1.0, 0.5), (0.7, 10.0)]),
    seed=st.integers(0, 2**16),
)
def test_random_sizes_and_magnitudes_match_reference(case, dtype, size, magnitude, clip, seed):
    # Sizes 1..70 cover every vector-loop tail; one weight and one bias tensor.
    cls, kwargs = case
    rng = np.random.default_rng(seed)
    layout = {"dense0.weight": (size,), "dense0.bias": (size,)}
    params = random_tensors(rng, dtype, layout, magnitude)
    expected = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    optimizer = cls(**kwargs)
    update = reference_update(optimizer)
    states = {name: {} for name in layout}
    for t in (1, 2, 3):
        grads = random_tensors(rng, dtype, layout, magnitude)
        optimizer.step(params, grads, grad_scale=clip[0], clip_grad_value=clip[1])
        for name in layout:
            g = reference.clip_gradient(grads[name], *clip)
            expected[name] = update(expected[name], g, states[name], t,
                                    optim.parameter_role(name))
    for name in layout:
        assert_close(params[name], expected[name], dtype, scale=5.0)


@pytest.mark.simd
@pytest.mark.parametrize("cls", [optim.SGD, optim.AdaGrad, optim.RMSProp, optim.Adam, optim.AdamW,
                                 optim.LARS])
def test_large_tensors_match_reference(cls, dtype):
    # Sizes across the parallel threshold and the LARS chunk (8192), odd tails.
    rng = np.random.default_rng(1)
    layout = {"dense0.weight": (211, 173), "dense0.bias": (173,)}
    params = random_tensors(rng, dtype, layout)
    expected = {name: np.array(value, dtype=np.float64) for name, value in params.items()}
    optimizer = cls(lr=0.01)
    update = reference_update(optimizer)
    states = {name: {} for name in layout}
    for t in (1, 2):
        grads = random_tensors(rng, dtype, layout)
        optimizer.step(params, grads, clip_grad_value=1.5)
        for name in layout:
            g = reference.clip_gradient(grads[name], 1.0, 1.5)
            expected[name] = update(expected[name], g, states[name], t,
                                    optim.parameter_role(name))
    for name in layout:
        assert_close(params[name], expected[name], dtype, scale=5.0)


@pytest.mark.parametrize("cls", [optim.SGD, optim.AdaGrad, optim.RMSProp, optim.Adam, optim.AdamW,
                                 optim.LARS])
def test_nan_gradient_gives_nan_parameter(cls, dtype):
    # No comparison (clamp, LARS norms) may drop a NaN: it must reach the parameter.
    params = {"dense0.weight": np.ones((3, 3), dtype)}
    grad = np.ones((3, 3), dtype)
    grad[1, 2] = np.nan
    cls(lr=0.1).step(params, {"dense0.weight": grad}, clip_grad_value=1.0)
    assert np.isnan(params["dense0.weight"][1, 2])


def test_lars_clip_never_exceeds_the_global_rate(dtype):
    rng = np.random.default_rng(2)
    for lr in (1e-4, 1e-2, 1.0, 100.0):
        params = random_tensors(rng, dtype, {"dense0.weight": (9, 4)})
        before = params["dense0.weight"].astype(np.float64)
        grads = random_tensors(rng, dtype, {"dense0.weight": (9, 4)})
        optim.LARS(lr=lr, momentum=0.0, mode="clip", trust_coefficient=0.01).step(params, grads)
        rate = reference.lars_rate(before, grads["dense0.weight"], lr, 0.0, 0.01, "clip")
        assert rate <= lr
        assert_close(params["dense0.weight"], before - rate * grads["dense0.weight"], dtype)


# --- against PyTorch ---------------------------------------------------------------------------


def torch_optimizer(torch, optimizer, tensors):
    options = optimizer.options
    factory = {
        optim.SGD: torch.optim.SGD,
        optim.AdaGrad: torch.optim.Adagrad,
        optim.RMSProp: torch.optim.RMSprop,
        optim.Adam: torch.optim.Adam,
        optim.AdamW: torch.optim.AdamW,
    }[type(optimizer)]
    return factory(tensors, **options)


def torch_lars_step(torch, tensors, roles, buffers, options):
    """The LARS formula in torch tensor operations (float32), written from the paper."""
    lr, momentum = options["lr"], options["momentum"]
    weight_decay, trust = options["weight_decay"], options["trust_coefficient"]
    with torch.no_grad():
        for w, role in zip(tensors, roles):
            g = w.grad
            if role == "weight" or not options["exclude_bias_and_bn"]:
                w_norm, g_norm = torch.linalg.norm(w), torch.linalg.norm(g)
                if w_norm > 0 and g_norm > 0:
                    local = trust * w_norm / (g_norm + weight_decay * w_norm)
                    rate = lr * local if options["mode"] == "scale" else torch.clamp(local, max=lr)
                else:
                    rate = lr
                d = g + weight_decay * w
            else:
                rate, d = lr, g
            if momentum != 0:
                buffers.setdefault(id(w), torch.zeros_like(w))
                buffers[id(w)].mul_(momentum).add_(rate * d)
                w.sub_(buffers[id(w)])
            else:
                w.sub_(rate * d)


@pytest.mark.parametrize("case", CASES + [(optim.SGD, dict(lr=0.1, momentum=0.9, dampening=1.0))],
                         ids=case_id)
@pytest.mark.parametrize("clipped", [False, True], ids=["unclipped", "clipped"])
def test_twenty_steps_match_pytorch(case, clipped):
    torch = pytest.importorskip("torch")
    cls, kwargs = case
    rng = np.random.default_rng(3)
    params = random_tensors(rng, np.float32)
    tensors = [torch.tensor(value.copy(), requires_grad=True) for value in params.values()]
    roles = [optim.parameter_role(name) for name in params]
    optimizer = cls(**kwargs)
    buffers = {}
    torch_opt = None if cls is optim.LARS else torch_optimizer(torch, optimizer, tensors)
    grad_scale, clip_value = (0.6, 0.8) if clipped else (1.0, None)
    for _ in range(20):
        grads = random_tensors(rng, np.float32)
        optimizer.step(params, grads, grad_scale=grad_scale, clip_grad_value=clip_value)
        for tensor, grad in zip(tensors, grads.values()):
            tensor.grad = torch.tensor(grad) * grad_scale
            if clip_value is not None:
                torch.nn.utils.clip_grad_value_([tensor], clip_value)
        if torch_opt is None:
            torch_lars_step(torch, tensors, roles, buffers, optimizer.options)
        else:
            torch_opt.step()
    # Both run in float32 with different rounding orders (e.g. FMA); 20 steps of drift.
    for value, tensor in zip(params.values(), tensors):
        np.testing.assert_allclose(value, tensor.detach().numpy(), rtol=1e-4, atol=2e-5)


# --- state dicts --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_state_dict_round_trip_continues_bitwise(case, dtype):
    cls, kwargs = case
    rng = np.random.default_rng(4)
    params = random_tensors(rng, dtype)
    grads = [random_tensors(rng, dtype) for _ in range(6)]
    uninterrupted = cls(**kwargs)
    for g in grads[:3]:
        uninterrupted.step(params, g)
    saved = uninterrupted.state_dict()
    resumed_params = copy.deepcopy(params)
    for g in grads[3:]:
        uninterrupted.step(params, g)

    resumed = cls(lr=0.123) if cls in (optim.SGD, optim.LARS) else cls()
    resumed.load_state_dict(saved)
    assert resumed.dtype == np.dtype(dtype) and resumed.step_count == 3
    assert resumed.options == uninterrupted.options
    for g in grads[3:]:
        resumed.step(resumed_params, g)
    for name in params:
        np.testing.assert_array_equal(resumed_params[name], params[name])
    final, again = uninterrupted.state_dict(), resumed.state_dict()
    assert final["step"] == again["step"] == 6
    for mine, theirs in zip(final["state"], again["state"]):
        for name in mine:
            np.testing.assert_array_equal(mine[name], theirs[name])


def test_state_dict_holds_copies(dtype):
    adam = optim.Adam(lr=0.1)
    params = {"w": np.ones(4, dtype)}
    adam.step(params, {"w": np.ones(4, dtype)})
    state = adam.state_dict()
    state["state"][0]["exp_avg"][:] = 123.0
    assert adam.state_dict()["state"][0]["exp_avg"][0] != 123.0
    loaded = optim.Adam()
    loaded.load_state_dict(state)
    state["state"][0]["exp_avg"][:] = 7.0
    assert loaded.state_dict()["state"][0]["exp_avg"][0] == 123.0


def test_state_dict_before_first_step_and_reset():
    sgd = optim.SGD(lr=0.1, momentum=0.9)
    empty = sgd.state_dict()
    assert empty == {
        "type": "SGD", "options": sgd.options, "dtype": None, "step": 0, "param_names": None,
        "sizes": [], "roles": [], "state": [],
    }
    other = optim.SGD(lr=0.2, momentum=0.5)
    other.load_state_dict(empty)
    assert other.options == sgd.options and other.dtype is None
    # Loading a step-0 state into a stepped optimiser resets its state, keeping its dtype.
    params = {"w": np.ones(3)}
    other.step(params, {"w": np.ones(3)})
    other.load_state_dict(empty)
    assert other.step_count == 0 and other.state_dict()["state"] == []
    other.step(params, {"w": np.ones(3)})  # a first step again: the buffer is the gradient
    np.testing.assert_array_equal(other.state_dict()["state"][0]["momentum_buffer"], np.ones(3))


def test_state_dict_keys_and_roles():
    lars = optim.LARS(lr=0.1)
    params = random_tensors(np.random.default_rng(5), np.float32)
    lars.step(params, random_tensors(np.random.default_rng(6), np.float32))
    state = lars.state_dict()
    assert state["param_names"] == list(LAYOUT)
    assert state["roles"] == ["weight", "bias", "bn_gamma", "bn_beta", "weight", "bias"]
    assert state["sizes"] == [int(np.prod(shape)) for shape in LAYOUT.values()]
    assert [set(buffers) for buffers in state["state"]] == [{"momentum_buffer"}] * 6
    assert set(optim.RMSProp(momentum=0.5, centered=True).state_dict()) == set(state)


# --- layout and atomicity -----------------------------------------------------------------------


def snapshot(optimizer, params):
    return copy.deepcopy(optimizer.state_dict()), {k: v.copy() for k, v in params.items()}


def assert_unchanged(optimizer, params, before):
    state, values = before
    now = optimizer.state_dict()
    assert now["step"] == state["step"] and now["options"] == state["options"]
    for mine, theirs in zip(now["state"], state["state"]):
        for name in mine:
            np.testing.assert_array_equal(mine[name], theirs[name])
    for name, value in values.items():
        np.testing.assert_array_equal(params[name], value)


def test_layout_mismatch_raises_and_changes_nothing(dtype):
    rng = np.random.default_rng(7)
    params = random_tensors(rng, dtype)
    adam = optim.Adam(lr=0.1)
    adam.step(params, random_tensors(rng, dtype))
    before = snapshot(adam, params)
    core = adam._core_optimizer(dtype)
    values, grads = list(params.values()), list(random_tensors(rng, dtype).values())
    roles = [optim.parameter_role(name) for name in params]
    with pytest.raises(ValueError, match="expected 6 tensors, got 5"):
        core.step(values[:5], grads[:5], roles[:5])
    # dense0.weight with 12 rows instead of 13: 84 elements instead of 91.
    shorter_values = [values[0][:-1].copy()] + values[1:]
    shorter_grads = [grads[0][:-1].copy()] + grads[1:]
    with pytest.raises(ValueError, match="tensor 0 has 84 elements, expected 91"):
        core.step(shorter_values, shorter_grads, roles)
    with pytest.raises(ValueError, match="tensor 1 has role weight, expected bias"):
        core.step(values, grads, ["weight"] * 6)
    with pytest.raises(ValueError, match="must have the names of the first step"):
        adam.step({"x": values[0]}, {"x": grads[0]})
    assert_unchanged(adam, params, before)


def test_load_state_dict_with_another_layout_changes_nothing(dtype):
    rng = np.random.default_rng(8)
    params = random_tensors(rng, dtype)
    sgd = optim.SGD(lr=0.1, momentum=0.9)
    sgd.step(params, random_tensors(rng, dtype))
    other = optim.SGD(lr=0.1, momentum=0.9)
    small = {"w": np.ones(4, dtype)}
    other.step(small, {"w": np.ones(4, dtype)})
    before = snapshot(sgd, params)
    with pytest.raises(ValueError, match="param_names.*differ"):
        sgd.load_state_dict(other.state_dict())
    nameless = other.state_dict()
    nameless["param_names"] = None
    with pytest.raises(ValueError, match="expected 6 tensors, got 1"):
        sgd.load_state_dict(nameless)
    assert_unchanged(sgd, params, before)


# --- threads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (optim.AdaGrad, dict(lr_decay=0.1, weight_decay=0.01)),
    (optim.RMSProp, dict(momentum=0.5, centered=True, weight_decay=0.01)),
    (optim.Adam, dict(weight_decay=0.01)),
    (optim.AdamW, dict()),
    (optim.LARS, dict(lr=0.1, weight_decay=0.01)),
    (optim.LARS, dict(lr=0.1, mode="clip", exclude_bias_and_bn=False)),
], ids=case_id)
def test_one_and_two_threads_give_the_same_bits(case, thread_budget, dtype):
    # 60001 elements: two threads for the elementwise pass, 8 chunks for the LARS norms.
    cls, kwargs = case
    layout = {"dense0.weight": (227, 263), "dense0.bias": (263,), "dense1.weight": (263, 3)}
    results = []
    for threads in (1, 2):
        thread_budget(threads)
        rng = np.random.default_rng(9)
        params = random_tensors(rng, dtype, layout)
        optimizer = cls(**kwargs)
        for _ in range(3):
            optimizer.step(params, random_tensors(rng, dtype, layout), grad_scale=0.9,
                           clip_grad_value=2.0)
        results.append((params, optimizer.state_dict()["state"]))
    (params1, state1), (params2, state2) = results
    for name in layout:
        np.testing.assert_array_equal(params1[name], params2[name])
    for buffers1, buffers2 in zip(state1, state2):
        for name in buffers1:
            np.testing.assert_array_equal(buffers1[name], buffers2[name])


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory, error, message", [
    (lambda: optim.SGD(lr=-0.1), ValueError, r"lr must be >= 0, got -0.1"),
    (lambda: optim.SGD(lr="0.1"), TypeError, r"lr must be a real number, got str"),
    (lambda: optim.SGD(lr=math.nan), ValueError, r"lr must be finite, got nan"),
    (lambda: optim.SGD(lr=0.1, momentum=1.0), ValueError, r"momentum must be in \[0, 1\), got 1.0"),
    (lambda: optim.SGD(lr=0.1, momentum=-0.1), ValueError, r"momentum must be in \[0, 1\)"),
    (lambda: optim.SGD(lr=0.1, dampening=1.5), ValueError, r"dampening must be in \[0, 1\], got"),
    (lambda: optim.SGD(lr=0.1, weight_decay=-1), ValueError, r"weight_decay must be >= 0"),
    (lambda: optim.SGD(lr=0.1, nesterov=True), ValueError,
     r"nesterov=True needs momentum > 0 and dampening = 0, got momentum=0.0"),
    (lambda: optim.SGD(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError,
     r"nesterov=True needs momentum > 0 and dampening = 0.*dampening=0.1"),
    (lambda: optim.SGD(lr=0.1, momentum=0.9, nesterov=1), TypeError,
     r"nesterov must be True or False, got int"),
    (lambda: optim.AdaGrad(lr_decay=-1), ValueError, r"lr_decay must be >= 0"),
    (lambda: optim.AdaGrad(initial_accumulator_value=-0.1), ValueError,
     r"initial_accumulator_value must be >= 0"),
    (lambda: optim.AdaGrad(eps=0.0), ValueError, r"eps must be > 0, got 0.0"),
    (lambda: optim.RMSProp(alpha=1.0), ValueError, r"alpha must be in \[0, 1\)"),
    (lambda: optim.RMSProp(momentum=1.5), ValueError, r"momentum must be in \[0, 1\)"),
    (lambda: optim.RMSProp(eps=-1e-8), ValueError, r"eps must be > 0"),
    (lambda: optim.RMSProp(centered="yes"), TypeError, r"centered must be True or False"),
    (lambda: optim.Adam(betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be in \[0, 1\)"),
    (lambda: optim.Adam(betas=(0.9, -0.1)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
    (lambda: optim.Adam(betas=0.9), TypeError, r"betas must be a pair \(beta1, beta2\)"),
    (lambda: optim.Adam(eps=math.inf), ValueError, r"eps must be finite"),
    (lambda: optim.AdamW(weight_decay=-0.01), ValueError, r"weight_decay must be >= 0"),
    (lambda: optim.AdamW(lr=-1), ValueError, r"lr must be >= 0"),
    (lambda: optim.LARS(lr=0.1, mode="trust"), ValueError,
     r"unknown mode 'trust'; valid values are 'scale', 'clip'"),
    (lambda: optim.LARS(lr=0.1, trust_coefficient=-1), ValueError,
     r"trust_coefficient must be >= 0"),
    (lambda: optim.LARS(lr=0.1, momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (lambda: optim.LARS(lr=0.1, exclude_bias_and_bn=None), TypeError,
     r"exclude_bias_and_bn must be True or False"),
])
def test_invalid_hyperparameters(factory, error, message):
    with pytest.raises(error, match=message):
        factory()


def test_invalid_lr_assignment_changes_nothing():
    sgd = optim.SGD(lr=0.1)
    sgd.step({"w": np.ones(2)}, {"w": np.ones(2)})
    with pytest.raises(ValueError, match="lr must be >= 0, got -1.0"):
        sgd.lr = -1.0
    with pytest.raises(TypeError, match="lr must be a real number"):
        sgd.lr = None
    assert sgd.lr == 0.1 and sgd._core_optimizer(np.float64).lr == 0.1


def test_step_errors(dtype):
    sgd = optim.SGD(lr=0.1)
    p, g = np.ones((2, 3), dtype), np.ones((2, 3), dtype)
    with pytest.raises(TypeError, match="params must be a dict of name -> numpy.ndarray, got list"):
        sgd.step([p], {"w": g})
    with pytest.raises(ValueError, match="params is empty"):
        sgd.step({}, {})
    with pytest.raises(ValueError, match=r"missing \['w'\], unexpected \['v'\]"):
        sgd.step({"w": p}, {"v": g})
    with pytest.raises(TypeError, match=r"params\['w'\] must be a numpy.ndarray, got list"):
        sgd.step({"w": [1.0]}, {"w": g})
    with pytest.raises(TypeError, match=r"params\['w'\] must be float32 or float64, got dtype int64"):
        sgd.step({"w": np.ones(3, np.int64)}, {"w": g})
    other = np.float64 if dtype == np.float32 else np.float32
    with pytest.raises(TypeError, match=r"grads\['w'\] is .* but other tensors are"):
        sgd.step({"w": p}, {"w": g.astype(other)})
    with pytest.raises(ValueError, match=r"grads\['w'\] must have shape \(2, 3\) like the "
                                         r"parameter, got \(3, 2\)"):
        sgd.step({"w": p}, {"w": g.reshape(3, 2)})
    with pytest.raises(ValueError, match=r"params\['w'\] is empty"):
        sgd.step({"w": np.ones(0, dtype)}, {"w": np.ones(0, dtype)})
    with pytest.raises(ValueError, match=r"params\['w'\] must be C-contiguous"):
        sgd.step({"w": p.T}, {"w": g.T})
    readonly = p.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\['w'\] is read-only"):
        sgd.step({"w": readonly}, {"w": g})
    with pytest.raises(ValueError, match="grad_scale must be >= 0"):
        sgd.step({"w": p}, {"w": g}, grad_scale=-1.0)
    with pytest.raises(ValueError, match="grad_scale must be finite"):
        sgd.step({"w": p}, {"w": g}, grad_scale=math.inf)
    with pytest.raises(ValueError, match="clip_grad_value must be > 0, got 0.0"):
        sgd.step({"w": p}, {"w": g}, clip_grad_value=0.0)
    assert sgd.step_count == 0 and sgd.dtype is None
    np.testing.assert_array_equal(p, np.ones((2, 3)))
    sgd.step({"w": p}, {"w": g})
    with pytest.raises(TypeError, match=f"bound to {np.dtype(dtype).name} parameters"):
        sgd.step({"w": p.astype(other)}, {"w": g.astype(other)})


def test_non_contiguous_gradients_are_accepted(dtype):
    p, g = np.ones((3, 2), dtype), np.arange(6, dtype=dtype).reshape(2, 3).T
    optim.SGD(lr=1.0).step({"w": p}, {"w": g})
    assert_close(p, 1.0 - g.astype(np.float64), dtype)


def test_core_optimizer_errors():
    adam = optim.Adam()
    assert adam._core_optimizer("float32") is adam._core_optimizer(np.float32)
    with pytest.raises(TypeError, match="bound to float32 parameters and cannot update float64"):
        adam._core_optimizer(np.float64)
    with pytest.raises(TypeError, match="dtype must be float32 or float64, got int32"):
        optim.Adam()._core_optimizer(np.int32)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        optim.Adam()._core_optimizer("not a dtype")


def test_compiled_optimizer_checks_its_arguments():
    # The Python layer validates first; the core checks again for C++ callers.
    with pytest.raises(ValueError, match="unknown optimizer kind 'sgdx'"):
        _core.Optimizer_f64({"kind": "sgdx"})
    with pytest.raises(ValueError, match="unknown optimizer option 'learning_rate'"):
        _core.Optimizer_f64({"learning_rate": 0.1})
    with pytest.raises(ValueError, match="unknown lars_mode 'x'"):
        _core.Optimizer_f64({"kind": "lars", "lars_mode": "x"})
    with pytest.raises(ValueError, match="momentum must be in \\[0, 1\\), got 1"):
        _core.Optimizer_f64({"kind": "sgd", "momentum": 1.0})
    with pytest.raises(ValueError, match="lr must be finite and >= 0, got -1"):
        _core.Optimizer_f64({"lr": -1.0})
    with pytest.raises(ValueError, match="nesterov needs momentum > 0 and dampening = 0"):
        _core.Optimizer_f64({"nesterov": True})
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        _core.Optimizer_f32({"kind": "adam", "eps": 0.0})
    with pytest.raises(ValueError, match="beta2 must be in \\[0, 1\\)"):
        _core.Optimizer_f32({"kind": "adamw", "beta2": 1.0})
    core = _core.Optimizer_f64({"kind": "sgd", "lr": 0.1})
    p, g = np.ones(3), np.ones(3)
    with pytest.raises(ValueError, match="lr must be finite and >= 0"):
        core.lr = math.nan
    with pytest.raises(ValueError, match="params, grads and roles must have the same length"):
        core.step([p], [g, g], ["weight"])
    with pytest.raises(ValueError, match="unknown parameter role 'kernel'"):
        core.step([p], [g], ["kernel"])
    with pytest.raises(ValueError, match=r"grads\[0\] has 2 elements, params\[0\] has 3"):
        core.step([p], [g[:2]], ["weight"])
    with pytest.raises(ValueError, match="grad_scale must be finite and >= 0, got nan"):
        core.step([p], [g], ["weight"], math.nan)
    with pytest.raises(ValueError, match="clip_value must not be NaN"):
        core.step([p], [g], ["weight"], 1.0, math.nan)
    with pytest.raises(ValueError, match="count \\(tensors\\) must be >= 1, got 0"):
        core.step([], [], [])
    with pytest.raises(TypeError):  # float32 arrays are never converted for a float64 core
        core.step([p.astype(np.float32)], [g.astype(np.float32)], ["weight"])
    assert core.step_count == 0
    np.testing.assert_array_equal(p, np.ones(3))


def test_load_state_dict_errors_change_nothing(dtype):
    rng = np.random.default_rng(10)
    params = random_tensors(rng, dtype)
    adam = optim.Adam(lr=0.01)
    adam.step(params, random_tensors(rng, dtype))
    good = adam.state_dict()
    other = np.float64 if dtype == np.float32 else np.float32

    def changed(**updates):
        d = copy.deepcopy(good)
        d.update(updates)
        return d

    def with_buffer(p, name, value):
        d = copy.deepcopy(good)
        if value is None:
            del d["state"][p][name]
        else:
            d["state"][p][name] = value
        return d

    size0 = good["sizes"][0]
    bad_values = np.ones(size0, dtype)
    bad_values[3] = np.inf
    negative = np.ones(size0, dtype)
    negative[0] = -1.0
    cases = [
        ([1, 2], TypeError, "state_dict must be a dict, got list"),
        ({k: v for k, v in good.items() if k != "step"}, ValueError, r"missing \['step'\]"),
        (changed(extra=1), ValueError, r"unexpected \['extra'\]"),
        (changed(type="SGD"), ValueError, "state_dict is for 'SGD', this optimizer is 'Adam'"),
        (changed(options=[]), TypeError, r"state_dict\['options'\] must be a dict"),
        (changed(options={"lr": -1.0}), ValueError,
         r"state_dict\['options'\] is invalid: lr must be >= 0"),
        (changed(options={"momentum": 0.9}), TypeError, r"state_dict\['options'\] is invalid"),
        (changed(step=-1), ValueError, r"state_dict\['step'\] must be >= 0, got -1"),
        (changed(step=1.5), TypeError, r"state_dict\['step'\] must be an integer"),
        (changed(dtype="float16"), ValueError, r"state_dict\['dtype'\] must be 'float32'"),
        (changed(dtype=np.dtype(other).name), TypeError, "holds .* state but this optimizer is"),
        (changed(dtype=None), ValueError, r"state_dict\['dtype'\] must be 'float32' or "
                                          r"'float64' when step > 0"),
        (changed(step=0), ValueError, "a state_dict at step 0 has no state"),
        (changed(sizes=good["sizes"][:-1]), ValueError, "must have one entry per tensor"),
        (changed(sizes="91"), TypeError, r"state_dict\['sizes'\] must be a list"),
        (changed(sizes=[91.0] + good["sizes"][1:]), TypeError,
         r"state_dict\['sizes'\]\[0\] must be an integer"),
        (changed(sizes=[0] + good["sizes"][1:]), ValueError,
         r"state_dict\['sizes'\]\[0\] must be >= 1"),
        (changed(roles=["kernel"] + good["roles"][1:]), ValueError,
         r"unknown state_dict\['roles'\]\[0\] 'kernel'"),
        (changed(roles=["bias"] + good["roles"][1:]), ValueError,
         r"param_names'\] do not match state_dict\['roles'\]"),
        (changed(param_names=["a"] * 6), ValueError, "must name each tensor once"),
        (changed(param_names="abc"), TypeError, "must be None or a list of str"),
        (changed(state=[[]] * 6), TypeError, r"state_dict\['state'\]\[0\] must be a dict"),
        (with_buffer(0, "exp_avg", None), ValueError,
         r"state_dict\['state'\]\[0\] must hold the buffers \['exp_avg', 'exp_avg_sq'\], got "
         r"\['exp_avg_sq'\]"),
        (with_buffer(1, "extra", np.ones(7, dtype)), ValueError,
         r"state_dict\['state'\]\[1\] must hold the buffers"),
        (with_buffer(0, "exp_avg", np.ones(size0 - 1, dtype)), ValueError,
         rf"must have shape \({size0},\), got \({size0 - 1},\)"),
        (with_buffer(0, "exp_avg", np.ones(size0, other)), TypeError,
         rf"must be a {np.dtype(dtype).name} numpy.ndarray"),
        (with_buffer(0, "exp_avg", bad_values), ValueError,
         "state buffer exp_avg of tensor 0 contains a non-finite value"),
        (with_buffer(0, "exp_avg_sq", negative), ValueError,
         "state buffer exp_avg_sq of tensor 0 contains a negative value"),
    ]
    before = snapshot(adam, params)
    for state_dict, error, message in cases:
        with pytest.raises(error, match=message):
            adam.load_state_dict(state_dict)
        assert_unchanged(adam, params, before)
    # The same checks protect an optimiser that has no state yet: it stays unbound.
    fresh = optim.Adam(lr=0.5)
    with pytest.raises(ValueError, match="contains a non-finite value"):
        fresh.load_state_dict(with_buffer(0, "exp_avg", bad_values))
    assert fresh.dtype is None and fresh.step_count == 0 and fresh.lr == 0.5


def test_load_state_without_step_into_unbound_optimizer_is_lazy():
    # A never-stepped state only sets options; the optimiser binds on its next use.
    adam = optim.Adam(lr=0.5)
    adam.load_state_dict(optim.Adam(lr=0.25, betas=(0.8, 0.9)).state_dict())
    assert adam.dtype is None and adam.options["betas"] == (0.8, 0.9) and adam.lr == 0.25
