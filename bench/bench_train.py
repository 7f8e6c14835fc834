"""Full training steps: gradwatch against PyTorch eager and a hand-written NumPy MLP.

    python bench/bench_train.py [--threads 2] [--quick] [--config a b c d]

Configurations (issue 4): (a) 784-100-100-100-100-10 sigmoid, batch 100, SGD; (b) 784-256x5-10
relu + batch norm, batch 128, SGD momentum; (c) 784-1024-1024-10 relu, batch 256, Adam;
(d) 64-(64x20)-10 tanh, batch 32, SGD; plus batch-1 inference latency of (a) and (b).

Every implementation runs in this process with the same thread count; PyTorch rows are skipped
when torch is not importable. Each implementation's step is timed in 3 turns (gradwatch, PyTorch,
NumPy, the bare GEMMs, again and again), so that all meet the same drift of a noisy machine.
Printed per configuration: median step time of each, the ratios
(> 1: gradwatch faster), GFLOP/s as a fraction of the sgemm peak measured here, and the split of a
gradwatch step into GEMM, gradwatch's own passes and overhead, from the core's opt-in step timers
(cpp/src/step_profile.hpp), with the target "time outside GEMM <= 15% of a step" on (a)-(c).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

import gradwatch
from gradwatch._core_loader import _core

try:
    import threadpoolctl
except ImportError:  # NumPy's BLAS then keeps its own thread count (said in the header)
    threadpoolctl = None

SETTLE_SECONDS = 0.15  # idle OpenBLAS threads spin ~0.1 s after a call: let them stop first
TURNS = 3  # turns of gradwatch, PyTorch, NumPy and the bare GEMMs, in that order, per config


@dataclass(frozen=True)
class Config:
    key: str
    sizes: tuple
    activation: str
    batchnorm: bool
    batch: int
    optimizer: str  # "sgd", "momentum" or "adam"
    lr: float
    target_vs_torch: float


CONFIGS = [
    Config("a", (784, 100, 100, 100, 100, 10), "sigmoid", False, 100, "sgd", 0.1, 1.7),
    Config("b", (784, 256, 256, 256, 256, 256, 10), "relu", True, 128, "momentum", 0.05, 1.5),
    Config("c", (784, 1024, 1024, 10), "relu", False, 256, "adam", 1e-3, 1.05),
    Config("d", (64,) + (64,) * 20 + (10,), "tanh", False, 32, "sgd", 0.05, 4.0),
]
INFERENCE_TARGETS = {"a": 5.0, "b": None}
OUTSIDE_GEMM_TARGET = 0.15  # of a step, on (a)-(c)
OUTSIDE_GEMM_KEYS = ("a", "b", "c")


def take_samples(step, seconds: float, min_samples: int) -> list:
    """Seconds per call of `step`, one per batch of calls lasting >= 1 ms, after a warm-up and a
    pause (the idle threads of whatever ran before stop spinning)."""
    for _ in range(3):
        step()
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < 1e-3:
        step()
        calls += 1
    time.sleep(SETTLE_SECONDS)
    samples = []
    deadline = time.perf_counter() + seconds
    while len(samples) < min_samples or time.perf_counter() < deadline:
        begin = time.perf_counter()
        for _ in range(calls):
            step()
        samples.append((time.perf_counter() - begin) / calls)
    return samples


def measure(step, seconds: float, min_samples: int = 5) -> float:
    """Median seconds of `step` over batches of calls lasting >= 1 ms."""
    return statistics.median(take_samples(step, seconds, min_samples))


def measure_in_turns(steps, seconds: float, turns: int = TURNS, min_samples: int = 5) -> list:
    """Median seconds per call of each step, the steps taking `turns` turns of seconds / turns
    each, samples of all turns pooled: every step meets the same drift of a noisy machine. (Each
    runs threads of its own, so they cannot alternate call by call.)"""
    samples = [[] for _ in steps]
    for _ in range(turns):
        for step, out in zip(steps, samples):
            if step is not None:
                out.extend(take_samples(step, seconds / turns, -(-min_samples // turns)))
    return [statistics.median(out) if out else None for out in samples]


@dataclass(frozen=True)
class Split:
    step: float  # seconds per step with the timers on
    untimed: float  # and off
    gemm: float  # fractions of step
    own: float  # own passes and the step's tail
    tail: float  # of own: checks, optimiser update, running statistics
    core_overhead: float
    python_overhead: float

    @property
    def outside_gemm(self) -> float:
        return 1.0 - self.gemm


def profile_split(net, step, seconds: float, min_samples: int = 5) -> Split:
    """The GEMM / own / overhead split of a step from the core's step timers: batches of calls
    lasting >= 1 ms, each timed from Python and by the core, alternating with batches with the
    timers off; the fastest batch of each (least disturbed by other processes) is reported."""
    core = net._core
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < 1e-3:
        step()
        calls += 1
    time.sleep(SETTLE_SECONDS)
    best = None
    untimed = float("inf")
    samples = 0
    deadline = time.perf_counter() + seconds
    try:
        while samples < min_samples or time.perf_counter() < deadline:
            begin = time.perf_counter()
            for _ in range(calls):
                step()
            untimed = min(untimed, time.perf_counter() - begin)
            core._set_profiling(True)  # also resets the timers
            begin = time.perf_counter()
            for _ in range(calls):
                step()
            wall = time.perf_counter() - begin
            profile = core._profile()
            samples += 1
            core._set_profiling(False)
            if best is None or wall < best[0]:
                best = (wall, profile)
    finally:
        core._set_profiling(False)
    wall, profile = best
    total = profile["total_ns"] * 1e-9
    gemm, tail = profile["gemm_ns"] * 1e-9, profile["tail_ns"] * 1e-9
    own = profile["own_ns"] * 1e-9 + tail
    return Split(wall / calls, untimed / calls, gemm / wall, own / wall, tail / wall,
                 (total - gemm - own) / wall, (wall - total) / wall)


def step_gemm_shapes(config: Config):
    """(M, N, K, transpose_a, transpose_b) of every GEMM in one training step."""
    shapes = []
    n = config.batch
    layers = list(zip(config.sizes[:-1], config.sizes[1:]))
    for fan_in, fan_out in layers:  # forward: y = x @ W
        shapes.append((n, fan_out, fan_in, False, False))
    for index, (fan_in, fan_out) in enumerate(layers):
        shapes.append((fan_in, fan_out, n, True, False))  # dW = x^T @ dy
        if index > 0:  # the first layer needs no input gradient
            shapes.append((n, fan_in, fan_out, False, True))  # dx = dy @ W^T
    return shapes


def step_flops(config: Config) -> float:
    return sum(2.0 * m * n * k for m, n, k, _, _ in step_gemm_shapes(config))


def make_data(config: Config, rng, batch=None):
    n = batch or config.batch
    x = rng.standard_normal((n, config.sizes[0])).astype(np.float32)
    y = rng.integers(0, config.sizes[-1], n)
    return x, y


# ---- gradwatch ---------------------------------------------------------------------------------

def gradwatch_optimizer(config: Config):
    if config.optimizer == "adam":
        return gradwatch.optim.Adam(lr=config.lr)
    momentum = 0.9 if config.optimizer == "momentum" else 0.0
    return gradwatch.optim.SGD(lr=config.lr, momentum=momentum)


def gradwatch_net(config: Config):
    init = "he_normal" if config.activation == "relu" else "xavier_normal"
    return gradwatch.MLP(list(config.sizes), activation=config.activation, init=init,
                         batchnorm=config.batchnorm, seed=0)


# ---- PyTorch eager ------------------------------------------------------------------------------

def torch_model(torch, config: Config):
    layers = []
    act = {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[config.activation]
    for fan_in, fan_out in zip(config.sizes[:-2], config.sizes[1:-1]):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if config.batchnorm:
            layers.append(torch.nn.BatchNorm1d(fan_out))
        layers.append(act())
    layers.append(torch.nn.Linear(config.sizes[-2], config.sizes[-1]))
    model = torch.nn.Sequential(*layers)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    else:
        momentum = 0.9 if config.optimizer == "momentum" else 0.0
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=momentum)
    return model, optimizer


# ---- hand-written NumPy MLP ----------------------------------------------------------------------

class NumpyMLP:
    """The textbook MLP in float32 NumPy: what a user would write without a framework."""

    def __init__(self, config: Config, rng):
        self.config = config
        self.weights = [(rng.standard_normal((i, o)) * np.sqrt(2.0 / i)).astype(np.float32)
                        for i, o in zip(config.sizes[:-1], config.sizes[1:])]
        self.biases = [np.zeros(o, np.float32) for o in config.sizes[1:]]
        hidden = config.sizes[1:-1]
        self.gammas = [np.ones(o, np.float32) for o in hidden]
        self.betas = [np.zeros(o, np.float32) for o in hidden]
        params = self.weights + self.biases + (self.gammas + self.betas if config.batchnorm else [])
        self.params = params
        self.velocity = [np.zeros_like(p) for p in params]
        self.second = [np.zeros_like(p) for p in params]
        self.t = 0

    def activation(self, z):
        kind = self.config.activation
        if kind == "relu":
            return np.maximum(z, 0)
        if kind == "tanh":
            return np.tanh(z)
        return 1 / (1 + np.exp(-z))

    def activation_grad(self, grad, z, a):
        kind = self.config.activation
        if kind == "relu":
            return grad * (z > 0)
        if kind == "tanh":
            return grad * (1 - a * a)
        return grad * a * (1 - a)

    def forward(self, x):
        h = x
        caches = []
        for i in range(len(self.weights) - 1):
            z = h @ self.weights[i] + self.biases[i]
            bn = None
            if self.config.batchnorm:
                mean = z.mean(0)
                inv_std = 1 / np.sqrt(z.var(0) + np.float32(1e-5))
                xhat = (z - mean) * inv_std
                bn = (xhat, inv_std)
                z = self.gammas[i] * xhat + self.betas[i]
            a = self.activation(z)
            caches.append((h, z, a, bn))
            h = a
        return h @ self.weights[-1] + self.biases[-1], caches, h

    def step(self, x, labels):
        logits, caches, h = self.forward(x)
        shifted = logits - logits.max(1, keepdims=True)
        exp = np.exp(shifted)
        probs = exp / exp.sum(1, keepdims=True)
        n = x.shape[0]
        grad = probs
        grad[np.arange(n), labels] -= 1
        grad /= n
        grads_w = [None] * len(self.weights)
        grads_b = [None] * len(self.weights)
        grads_gamma = [None] * len(self.gammas)
        grads_beta = [None] * len(self.betas)
        grads_w[-1] = h.T @ grad
        grads_b[-1] = grad.sum(0)
        grad = grad @ self.weights[-1].T
        for i in reversed(range(len(self.weights) - 1)):
            h_in, z, a, bn = caches[i]
            grad = self.activation_grad(grad, z, a)
            if bn is not None:
                xhat, inv_std = bn
                grads_gamma[i] = (grad * xhat).sum(0)
                grads_beta[i] = grad.sum(0)
                dxhat = grad * self.gammas[i]
                grad = inv_std * (dxhat - dxhat.mean(0) - xhat * (dxhat * xhat).mean(0))
            grads_w[i] = h_in.T @ grad
            grads_b[i] = grad.sum(0)
            if i > 0:
                grad = grad @ self.weights[i].T
        grads = grads_w + grads_b + (grads_gamma + grads_beta if self.config.batchnorm else [])
        self.update(grads)

    def update(self, grads):
        lr = np.float32(self.config.lr)
        if self.config.optimizer == "adam":
            self.t += 1
            b1, b2 = np.float32(0.9), np.float32(0.999)
            c1, c2 = 1 - 0.9 ** self.t, 1 - 0.999 ** self.t
            for p, g, m, v in zip(self.params, grads, self.velocity, self.second):
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                p -= np.float32(lr / c1) * m / (np.sqrt(v / np.float32(c2)) + np.float32(1e-8))
        elif self.config.optimizer == "momentum":
            for p, g, v in zip(self.params, grads, self.velocity):
                v *= np.float32(0.9)
                v += g
                p -= lr * v
        else:
            for p, g in zip(self.params, grads):
                p -= lr * g

    def predict(self, x):
        return self.forward(x)[0]


def sgemm_peak_gflops(seconds: float) -> float:
    shapes = [(1024, 1024, 1024, False, False)]
    per_pass = measure(lambda: _core.time_gemm_sequence_f32(shapes, 1), seconds)
    return 2.0 * 1024 ** 3 / per_pass / 1e9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="shorter measurements")
    parser.add_argument("--config", nargs="*", default=[c.key for c in CONFIGS],
                        choices=[c.key for c in CONFIGS])
    args = parser.parse_args(argv)
    seconds = 0.3 if args.quick else 1.5

    try:
        import torch
    except ImportError:
        torch = None
    gradwatch.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    limiter = (threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas")
               if threadpoolctl is not None else None)

    print(f"# gradwatch training-step benchmark: python bench/bench_train.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    info = gradwatch.build_info()
    print("# build: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"# threads: {args.threads} for gradwatch, PyTorch "
          f"{'(' + torch.__version__ + ')' if torch is not None else '(not installed: skipped)'}"
          f" and NumPy's BLAS ({'threadpoolctl' if limiter else 'default threads'})")
    peak = sgemm_peak_gflops(seconds)
    print(f"# sgemm peak (1024^3 through OpenBLAS, this run): {peak:.1f} GFLOP/s")
    print("# times: median per step; ratios > 1 mean gradwatch is faster\n")

    header = (f"{'cfg':<4}{'gradwatch':>11}{'torch':>11}{'numpy':>11}{'torch/gw':>10}{'np/gw':>8}"
              f"{'target':>8}{'GEMM':>10}{'GEMM %':>8}{'GFLOP/s':>9}{'of peak':>9}")
    print(header)
    print("-" * len(header))
    failures = 0
    rng = np.random.default_rng(0)
    inference_nets = {}
    splits = {}
    for config in CONFIGS:
        if config.key not in args.config:
            continue
        x, y = make_data(config, rng)
        net = gradwatch_net(config)
        optimizer = gradwatch_optimizer(config)
        inference_nets[config.key] = net
        splits[config.key] = profile_split(net, lambda: net.train_step(x, y, optimizer), seconds)

        torch_step = None
        if torch is not None:
            model, torch_opt = torch_model(torch, config)
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            loss_fn = torch.nn.CrossEntropyLoss()

            def torch_step():
                torch_opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(tx), ty)
                loss.backward()
                torch_opt.step()

            inference_nets[config.key + "_torch"] = model

        numpy_net = NumpyMLP(config, np.random.default_rng(1))
        inference_nets[config.key + "_numpy"] = numpy_net

        shapes = step_gemm_shapes(config)
        gw_time, torch_time, numpy_time, gemm_time = measure_in_turns(
            [lambda: net.train_step(x, y, optimizer), torch_step,
             lambda: numpy_net.step(x, y), lambda: _core.time_gemm_sequence_f32(shapes, 1)],
            seconds)
        gflops = step_flops(config) / gw_time / 1e9
        vs_torch = torch_time / gw_time if torch_time else float("nan")
        vs_numpy = numpy_time / gw_time
        ok = (torch_time is None or vs_torch >= config.target_vs_torch) and vs_numpy >= 1.0
        failures += not ok
        print(f"{config.key:<4}{gw_time * 1e3:>9.3f}ms"
              f"{(torch_time * 1e3 if torch_time else float('nan')):>9.3f}ms"
              f"{numpy_time * 1e3:>9.3f}ms{vs_torch:>10.2f}{vs_numpy:>8.2f}"
              f"{config.target_vs_torch:>7.2f}x{gemm_time * 1e3:>8.3f}ms"
              f"{gemm_time / gw_time:>8.0%}{gflops:>9.1f}{gflops / peak:>9.0%}"
              f"  {'PASS' if ok else 'FAIL'}")

    print(f"\nsplit of a gradwatch step (the core's step timers, fastest batch of steps with the "
          f"timers on and off; target: outside GEMM <= {OUTSIDE_GEMM_TARGET:.0%} on "
          f"{', '.join(OUTSIDE_GEMM_KEYS)})")
    header = (f"{'cfg':<4}{'timers on':>11}{'timers off':>12}{'GEMM %':>8}{'own %':>8}{'(tail)':>8}"
              f"{'core ovh %':>11}{'py ovh %':>9}{'outside GEMM':>14}")
    print(header)
    print("-" * len(header))
    for key, split in splits.items():
        line = (f"{key:<4}{split.step * 1e3:>9.3f}ms{split.untimed * 1e3:>10.3f}ms"
                f"{split.gemm:>8.1%}{split.own:>8.1%}{split.tail:>8.1%}"
                f"{split.core_overhead:>11.1%}{split.python_overhead:>9.1%}"
                f"{split.outside_gemm:>14.1%}")
        if key in OUTSIDE_GEMM_KEYS:
            ok = split.outside_gemm <= OUTSIDE_GEMM_TARGET
            failures += not ok
            line += f"  {'PASS' if ok else 'FAIL'}"
        print(line)

    print("\nbatch-1 inference latency (forward of one sample, logits)")
    for key, target in INFERENCE_TARGETS.items():
        if key not in inference_nets:
            continue
        config = next(c for c in CONFIGS if c.key == key)
        x1, _ = make_data(config, rng, batch=1)
        gw = measure(lambda: inference_nets[key].forward(x1), seconds)
        line = f"  ({key}) gradwatch {gw * 1e6:8.1f} us"
        if key + "_torch" in inference_nets:
            model = inference_nets[key + "_torch"]
            model.eval()
            tx1 = torch.from_numpy(x1)

            def torch_infer():
                with torch.no_grad():
                    model(tx1)

            tt = measure(torch_infer, seconds)
            ok = target is None or tt / gw >= target
            failures += not ok
            line += f"  torch {tt * 1e6:8.1f} us  torch/gw {tt / gw:6.2f}"
            if target is not None:
                line += f"  target {target:.1f}x {'PASS' if ok else 'FAIL'}"
        nt = measure(lambda: inference_nets[key + "_numpy"].predict(x1), seconds)
        line += f"  numpy {nt * 1e6:8.1f} us  np/gw {nt / gw:6.2f}"
        print(line)
    if limiter is not None:
        limiter.restore_original_limits()
    print(f"\n# {failures} target(s) missed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
