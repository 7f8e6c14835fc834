"""Issue 4: "after the first step a training step allocates no memory".

The C++ side is measured in a child interpreter with malloc_counter.c preloaded: it counts every
heap allocation made without the GIL, i.e. inside the core's calls (which release it) or on
OpenMP's worker threads. The Python side is measured with tracemalloc in
test_network.py::test_training_steps_allocate_no_arrays.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gradwatch
from gradwatch import optim

HERE = pathlib.Path(__file__).parent

# Run in the child: after warm-up steps (the first allocates the workspace and optimiser state),
# count allocations over more steps of each case; then grow the batch while counting, which must
# allocate (the counter works).
CHILD = textwrap.dedent("""
    import ctypes, json, sys
    import numpy as np
    import gradwatch
    from gradwatch import optim

    counter = ctypes.CDLL(None)
    counter.gw_stop_counting.restype = ctypes.c_int64

    def batch(net, n, seed):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, net.layer_sizes[0])).astype(net.dtype)
        if net.loss == "softmax_cross_entropy":
            return x, rng.integers(0, net.layer_sizes[-1], n)
        return x, rng.random((n, net.layer_sizes[-1])).astype(net.dtype)

    OPTIMIZERS = {
        "sgd": lambda: optim.SGD(lr=0.01),
        "momentum": lambda: optim.SGD(lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4),
        "adagrad": lambda: optim.AdaGrad(lr=0.01),
        "rmsprop": lambda: optim.RMSProp(lr=0.01, momentum=0.5, centered=True),
        "adam": lambda: optim.Adam(lr=0.01, weight_decay=1e-4),
        "adamw": lambda: optim.AdamW(lr=0.01),
        "lars": lambda: optim.LARS(lr=0.1, momentum=0.9, weight_decay=1e-4),
        "larc": lambda: optim.LARS(lr=0.1, momentum=0.9, mode="clip"),
    }
    results = {}
    for case in json.loads(sys.argv[1]):
        gradwatch.set_num_threads(case["threads"])
        net = gradwatch.MLP(case["sizes"], dtype=case["dtype"], seed=0, **case["options"])
        opt = OPTIMIZERS[case["optimizer"]]()
        x, y = batch(net, case["batch"], 0)
        small_x, small_y = batch(net, case["batch"] // 2, 1)
        clip = dict(clip_grad_norm=case["clip_norm"], clip_grad_value=case["clip_value"])
        for _ in range(2):
            net.train_step(x, y, opt, **clip)
        counter.gw_start_counting()
        for _ in range(10):
            net.train_step(x, y, opt, **clip)
            net.train_step(small_x, small_y, opt, **clip)
        steps = counter.gw_stop_counting()
        big_x, big_y = batch(net, 2 * case["batch"], 2)
        counter.gw_start_counting()
        net.train_step(big_x, big_y, opt, **clip)
        growth = counter.gw_stop_counting()
        results[case["name"]] = [steps, growth]
    print(json.dumps(results))
""")

CASES = [
    dict(name="sgd_plain", sizes=[20, 32, 32, 5], options={}, optimizer="sgd", batch=16),
    dict(name="bn_dropout_residual_momentum", sizes=[48, 160, 160, 10],
         options=dict(batchnorm=True, dropout=0.2, residual=True), optimizer="momentum",
         batch=100, clip_norm=1.0),
    dict(name="adam_clip_value", sizes=[300, 512, 512, 10], options=dict(activation="tanh"),
         optimizer="adam", batch=128, clip_value=0.1),
    dict(name="adagrad_bce", sizes=[10, 24, 4],
         options=dict(loss="binary_cross_entropy_with_logits"), optimizer="adagrad", batch=40),
    dict(name="rmsprop_mse_float64", sizes=[10, 24, 24, 3],
         options=dict(loss="mse", batchnorm=True), optimizer="rmsprop", batch=32,
         dtype="float64"),
    dict(name="adamw_gelu", sizes=[64, 64, 64, 10], options=dict(activation="gelu"),
         optimizer="adamw", batch=64),
    dict(name="lars_bn", sizes=[64, 128, 128, 10], options=dict(batchnorm=True),
         optimizer="lars", batch=64, clip_norm=5.0),
    dict(name="larc_one_thread", sizes=[64, 128, 10], options={}, optimizer="larc", batch=64,
         threads=1),
    # Widths whose last columns OpenBLAS's AVX-512 small-matrix GEMMs copy into a malloc'd buffer
    # (100 mod 16 = 4 in float, 36 mod 8 = 4 in double): the network computes those itself.
    dict(name="sigmoid_width_100", sizes=[50, 100, 100, 10], options=dict(activation="sigmoid"),
         optimizer="sgd", batch=100),
    dict(name="tanh_width_36_float64", sizes=[30, 36, 36, 3], options=dict(activation="tanh"),
         optimizer="momentum", batch=48, dtype="float64"),
]


def run_child(cases, tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not sys.platform.startswith("linux"):
        pytest.skip("needs a C compiler and glibc's LD_PRELOAD to count allocations")
    library = tmp_path / "malloc_counter.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library),
                    str(HERE / "malloc_counter.c")], check=True)
    for case in cases:
        case.setdefault("dtype", "float32")
        case.setdefault("threads", 2)
        case.setdefault("clip_norm", None)
        case.setdefault("clip_value", None)
    env = dict(os.environ, LD_PRELOAD=str(library))
    completed = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases)], env=env,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_training_steps_after_the_first_allocate_nothing_in_the_core(tmp_path):
    results = run_child([dict(case) for case in CASES], tmp_path)
    for name, (steps, growth) in results.items():
        assert steps == 0, f"{name}: {steps} allocations in 20 steps after the first"
        assert growth > 0, f"{name}: a larger batch allocated nothing: the counter is broken"


def test_workspace_is_allocated_once_per_growth():
    net = gradwatch.MLP([8, 16, 16, 3], batchnorm=True, dropout=0.1, seed=0)
    opt = optim.Adam(lr=0.01)
    rng = np.random.default_rng(0)

    def step(n):
        net.train_step(rng.standard_normal((n, 8)).astype(np.float32), rng.integers(0, 3, n), opt)

    assert net._core._workspace_allocations() == 0
    step(16)
    after_first = net._core._workspace_allocations()
    assert after_first >= 1
    for n in (16, 8, 2, 16):
        step(n)
    assert net._core._workspace_allocations() == after_first
    step(17)
    assert net._core._workspace_allocations() > after_first
