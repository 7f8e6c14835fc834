"""Every kernel call releases the GIL: another Python thread runs while it computes.

A background thread counts in pure Python. The main thread reads the count just before and just
after one long kernel call; if the call held the GIL throughout, the count could not move.
"""

import sys
import threading
import time

import numpy as np
import pytest

import gradwatch
from gradwatch import init, ops, optim

ROWS, COLS = 4096, 1024


def _arrays():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, COLS))
    grad = rng.standard_normal((ROWS, COLS))
    gamma, beta = np.ones(COLS), np.zeros(COLS)
    labels = rng.integers(0, COLS, ROWS)
    w = rng.standard_normal((COLS, COLS))
    return x, grad, gamma, beta, labels, w


X, GRAD, GAMMA, BETA, LABELS, W = _arrays()
MEAN, VAR = X.mean(0), X.var(0)
PARAMS = {"dense0.weight": X.copy()}
ADAM = optim.Adam(lr=1e-3)
NET = gradwatch.MLP([COLS, COLS, COLS, 10], batchnorm=True, dtype="float64", seed=0)
NET_X, NET_Y = X[:1024], LABELS[:1024] % 10
NET_SGD = optim.SGD(lr=1e-3, momentum=0.9)

CALLS = {
    "activation_forward": lambda: ops.activation_forward(X, "gelu"),
    "activation_derivative": lambda: ops.activation_derivative(X, "gelu"),
    "activation_backward": lambda: ops.activation_backward(GRAD, X, "gelu"),
    "dense_forward": lambda: ops.dense_forward(X, W),
    "dense_backward": lambda: ops.dense_backward(GRAD, X, W),
    "batchnorm_forward": lambda: ops.batchnorm_forward(X, GAMMA, BETA),
    "batchnorm_backward": lambda: ops.batchnorm_backward(GRAD, X, GAMMA, MEAN, VAR),
    "batchnorm_inference": lambda: ops.batchnorm_inference(X, GAMMA, BETA, MEAN, VAR),
    "softmax": lambda: ops.softmax(X),
    "log_softmax": lambda: ops.log_softmax(X),
    "softmax_cross_entropy": lambda: ops.softmax_cross_entropy(X, LABELS),
    "binary_cross_entropy_with_logits": lambda: ops.binary_cross_entropy_with_logits(
        X, np.clip(GRAD, 0, 1)),
    "mse": lambda: ops.mse(X, GRAD),
    "optim.Adam.step": lambda: ADAM.step(PARAMS, {"dense0.weight": GRAD}),
    "init.weights": lambda: init.weights(1024, 1024, "orthogonal", seed=0),
    "MLP.forward": lambda: NET.forward(NET_X),
    "MLP.loss_and_gradients": lambda: NET.loss_and_gradients(NET_X, NET_Y),
    "MLP.train_step": lambda: NET.train_step(NET_X, NET_Y, NET_SGD, clip_grad_norm=1e3),
    "MLP.evaluate": lambda: NET.evaluate(NET_X, NET_Y),
}


def ran_inside_call(call):
    """Whether a busy Python thread ran during the middle half of `call`.

    The thread stamps the time on every loop. Stamps in the first and last quarter of the call
    do not count: the interpreter may hand over the GIL just before or after a call, and on a
    loaded machine the calling thread may wait a while to get it back.
    """
    stamps = []
    running = threading.Event()
    stop = threading.Event()

    def stamp_forever():
        running.set()
        while not stop.is_set():
            stamps.append(time.perf_counter())

    thread = threading.Thread(target=stamp_forever)
    # A short switch interval makes a handover at the call's start or end brief (a few us).
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread.start()
    running.wait()
    try:
        start = time.perf_counter()
        call()
        end = time.perf_counter()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert end - start > 0.004, "the call is too short to tell"
    margin = (end - start) / 4
    return any(start + margin < t < end - margin for t in stamps)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_kernel_call_lets_other_threads_run(name):
    call = CALLS[name]
    call()  # warm-up: first-call allocations and thread start-up
    # A few tries: the other thread may not be scheduled during one call on a busy machine.
    assert any(ran_inside_call(call) for _ in range(5)), f"{name} held the GIL for the whole call"


def test_the_check_detects_a_call_that_holds_the_gil():
    # The builtin sum over a range runs in C and keeps the GIL for its whole loop.
    assert not ran_inside_call(lambda: sum(range(3 * 10**7)))
