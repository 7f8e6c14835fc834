"""20 training steps of every optimiser through gradwatch.MLP, with and without batch norm
(float32): against PyTorch's modules and optimisers (optional, from the same initial weights) and,
for LARS, which PyTorch lacks, against the NumPy reference network and update rule.

Dims: N = batch, D = inputs, C = outputs.
"""

import numpy as np
import pytest

import gradwatch
import reference
from gradwatch import optim
from test_network import assert_net_close, batch_for, config_of, state64

SIZES = [10, 24, 24, 4]
BATCH = 32
STEPS = 20

# (gradwatch optimiser, PyTorch optimiser, the same options); the options differ from the
# defaults wherever that exercises more of the rule.
OPTIMIZERS = {
    "sgd": (optim.SGD, "SGD", dict(lr=0.05)),
    "sgd_nesterov_wd": (optim.SGD, "SGD",
                        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "sgd_dampening": (optim.SGD, "SGD", dict(lr=0.05, momentum=0.8, dampening=0.3)),
    "adagrad": (optim.AdaGrad, "Adagrad",
                dict(lr=0.05, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1)),
    "rmsprop": (optim.RMSProp, "RMSprop", dict(lr=0.005, alpha=0.9, weight_decay=0.01)),
    "rmsprop_centered_momentum": (optim.RMSProp, "RMSprop",
                                  dict(lr=0.002, momentum=0.5, centered=True)),
    "adam_wd": (optim.Adam, "Adam", dict(lr=0.005, betas=(0.8, 0.99), weight_decay=0.01)),
    "adamw": (optim.AdamW, "AdamW", dict(lr=0.005, weight_decay=0.05)),
}


HIDDEN = range(len(SIZES) - 2)


def pre_batchnorm_bias(name, batchnorm):
    """A hidden dense bias before batch norm: its gradient is 0 in exact arithmetic (batch norm
    subtracts it again), so an adaptive optimiser without coupled weight decay turns two
    libraries' different rounding noise into steps of either sign. It changes no output, so it is
    not compared; the running mean, which averages it in, is compared up to its differences."""
    return batchnorm and name in {f"dense{i}.bias" for i in HIDDEN}


def torch_model(torch, batchnorm):
    torch.manual_seed(0)
    layers = []
    for fan_in, fan_out in zip(SIZES[:-2], SIZES[1:-1]):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if batchnorm:
            # momentum and eps as gradwatch's defaults; non-trivial gamma, beta and statistics.
            bn = torch.nn.BatchNorm1d(fan_out, momentum=0.1, eps=1e-5)
            with torch.no_grad():
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
            layers.append(bn)
        layers.append(torch.nn.Tanh())
    layers.append(torch.nn.Linear(SIZES[-2], SIZES[-1]))
    return torch.nn.Sequential(*layers)


def torch_state(model, batchnorm):
    """The model's state keyed like MLP.state_dict(), weights as (fan_in, fan_out)."""
    linears = [m for m in model if m.__class__.__name__ == "Linear"]
    norms = [m for m in model if m.__class__.__name__ == "BatchNorm1d"]
    state = {}
    for i, linear in enumerate(linears):
        state[f"dense{i}.weight"] = linear.weight.detach().numpy().T.copy()
        state[f"dense{i}.bias"] = linear.bias.detach().numpy().copy()
    if batchnorm:
        for i, bn in enumerate(norms):
            state[f"bn{i}.gamma"] = bn.weight.detach().numpy().copy()
            state[f"bn{i}.beta"] = bn.bias.detach().numpy().copy()
            state[f"bn{i}.running_mean"] = bn.running_mean.numpy().copy()
            state[f"bn{i}.running_var"] = bn.running_var.numpy().copy()
    return state


@pytest.fixture
def torch():
    """torch on one thread: these nets are tiny, and its idle pool would compete with ours."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_20_steps_match_pytorch(torch, name, batchnorm):
    ours_cls, torch_name, options = OPTIMIZERS[name]
    model = torch_model(torch, batchnorm)
    net = gradwatch.MLP(SIZES, activation="tanh", batchnorm=batchnorm, seed=0)
    net.load_state_dict(torch_state(model, batchnorm))
    torch_options = dict(options)
    if torch_name == "Adagrad":
        torch_options["eps"] = 1e-10
    torch_opt = getattr(torch.optim, torch_name)(model.parameters(), **torch_options)
    opt = ours_cls(**options)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    # Per hidden layer, the largest difference of the pre-batch-norm biases at any step.
    bias_gap = {i: np.zeros(SIZES[i + 1]) for i in HIDDEN}
    for step in range(STEPS):
        if batchnorm:
            ours, theirs = net.state_dict(), torch_state(model, batchnorm)
            for i in HIDDEN:
                key = f"dense{i}.bias"
                bias_gap[i] = np.maximum(bias_gap[i], np.abs(ours[key] - theirs[key]))
        x, y = batch_for(net, BATCH, seed=step)
        torch_opt.zero_grad()
        loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        torch_opt.step()
        got_loss, _ = net.train_step(x, y, opt)
        assert got_loss == pytest.approx(loss.item(), rel=1e-4), f"step {step}"
    expected = torch_state(model, batchnorm)
    ours = net.state_dict()
    assert ours.keys() == expected.keys()
    compared = 0
    for key, value in expected.items():
        if pre_batchnorm_bias(key, batchnorm):
            continue
        if key.endswith(".running_mean"):
            # A convex combination of batch means of z = x W + b: the biases' differences add.
            gap = bias_gap[int(key[2:key.index(".")])]
            assert np.all(np.abs(ours[key] - value) <= gap + 2e-5 + 1e-4 * np.abs(value)), key
        else:
            # float32 through 20 steps of two libraries' GEMMs: parameters are O(1).
            np.testing.assert_allclose(ours[key], value, rtol=1e-4, atol=2e-5, err_msg=key)
        compared += 1
    assert compared == len(expected) - (len(HIDDEN) if batchnorm else 0)
    assert opt.state_dict()["step"] == STEPS


def reference_lars_run(net, options, steps):
    """The reference network trained by the reference LARS rule (float64)."""
    params = state64(net)
    config = config_of(net)
    states = {name: {} for name in net.parameters}
    exclude = options.get("exclude_bias_and_bn", True)
    rule = {k: v for k, v in options.items() if k != "exclude_bias_and_bn"}
    for step in range(steps):
        x, y = batch_for(net, BATCH, seed=step)
        logits, cache = reference.mlp_forward(params, x, config, training=True)
        _, grad_logits = reference.mlp_loss(logits, y, config["loss"])
        grads = reference.mlp_backward(params, cache, grad_logits, config)
        if config["batchnorm"]:
            params.update(reference.mlp_running_statistics(params, cache, config))
        for name, grad in grads.items():
            adapt = optim.parameter_role(name) == "weight" or not exclude
            params[name] = reference.lars_update(params[name], grad, states[name], step + 1,
                                                 adapt=adapt, **rule)
    return params


@pytest.mark.parametrize("batchnorm", [False, True], ids=["plain", "batchnorm"])
@pytest.mark.parametrize("options", [
    dict(lr=0.5, momentum=0.9, weight_decay=0.01, trust_coefficient=0.02),
    dict(lr=0.05, momentum=0.8, mode="clip", trust_coefficient=0.02, exclude_bias_and_bn=False),
], ids=["scale", "clip"])
def test_20_lars_steps_match_the_reference(options, batchnorm):
    net = gradwatch.MLP(SIZES, activation="tanh", batchnorm=batchnorm, seed=3)
    expected = reference_lars_run(net, options, STEPS)
    opt = optim.LARS(**options)
    for step in range(STEPS):
        net.train_step(*batch_for(net, BATCH, seed=step), opt)
    ours = net.state_dict()
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        assert_net_close(ours[key], value, np.float32, 10.0, what=key)
