"""Time every kernel of gradwatch.ops against a fair NumPy version, in the same run.

    python bench/bench_ops.py [--threads 2] [--quick] [--dtype float32|float64|both]
                              [--kernel SUBSTRING ...] [--seconds 0.2]

For each kernel, size and dtype: the gradwatch result is first checked against the NumPy version
(allclose), then both are timed. Printed: the median time of each, the ratio NumPy / gradwatch,
for the memory-bound kernels the bandwidth reached as a fraction of a plain copy (np.copyto)
measured in the same run, and for the dense layer the time of the bare OpenBLAS GEMMs it calls.
A summary then checks the targets of issue 3 on every row of size >= 256 x 1024.

The NumPy versions are fair: same dtype as the input (float32 stays float32), vectorised,
idiomatic; not the float64 test oracle. A kernel that is not (yet) in gradwatch.ops is
reported as missing, and the rest still run.
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

import gradwatch
from gradwatch._core_loader import _core

try:
    from scipy.special import erf as _scipy_erf
except ImportError:
    _scipy_erf = None

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None

# The module each kernel lives in, used when gradwatch.ops itself cannot be imported.
KERNEL_MODULES = {
    "activation_forward": "gradwatch.activations",
    "activation_backward": "gradwatch.activations",
    "batchnorm_forward": "gradwatch.batchnorm",
    "batchnorm_backward": "gradwatch.batchnorm",
    "softmax_cross_entropy": "gradwatch.loss",
    "dense_forward": "gradwatch.dense",
    "dense_backward": "gradwatch.dense",
}

ACTIVATION_KINDS = [
    "identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh",
    "silu", "softplus",
]

SIZES = [(64, 64), (256, 1024), (1024, 1024), (4096, 1024)]
DENSE_SIZES = [(64, 64, 64), (256, 1024, 1024), (1024, 1024, 1024), (4096, 1024, 1024)]
QUICK_SIZES = SIZES[:2]
QUICK_DENSE_SIZES = DENSE_SIZES[:2]
# The targets apply from this many elements of x on (256 x 1024).
TARGET_MIN_ELEMENTS = 256 * 1024
TARGET_THREADS = 2
SETTLE_SECONDS = 0.25

BN_EPS = 1e-5
LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717
SQRT_2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
GELU_TANH_CUBIC = 0.044715


def resolve(name: str) -> Optional[Callable]:
    """gradwatch.ops.<name>, else <its module>.<name>, else None (missing)."""
    for module_name in ("gradwatch.ops", KERNEL_MODULES[name]):
        try:
            module = importlib.import_module(module_name)
            return getattr(module, name)
        except (ImportError, AttributeError):
            continue
    return None


# ---------------------------------------------------------------------------------------------
# fair NumPy versions (Python float constants keep float32 in float32 under NumPy's NEP 50)
# ---------------------------------------------------------------------------------------------


def erf(x):
    if _scipy_erf is not None:
        return _scipy_erf(x)
    return np.vectorize(math.erf, otypes=[x.dtype])(x)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_activation_forward(x, kind):
    if kind == "identity":
        return x.copy()
    if kind == "sigmoid":
        return np_sigmoid(x)
    if kind == "tanh":
        return np.tanh(x)
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "leaky_relu":
        return np.where(x > 0, x, LEAKY_SLOPE * x)
    if kind == "elu":
        return np.where(x > 0, x, ELU_ALPHA * np.expm1(x))
    if kind == "selu":
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x))
    if kind == "gelu":
        return 0.5 * x * (1.0 + erf(x / SQRT_2))
    if kind == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x * x * x)))
    if kind == "silu":
        return x / (1.0 + np.exp(-x))
    if kind == "softplus":
        return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
    raise ValueError(kind)


def np_activation_backward(grad_y, x, kind):
    if kind == "identity":
        # As gradwatch: NaN in x gives NaN (the kernel reads x for that), inf in x does not
        # (0 * x or x - x would turn it into NaN). Fastest of np.where(np.isnan(x), ...) and
        # copyto(where=): a copy, then the usually empty NaN mask.
        grad_x = grad_y.copy()
        grad_x[np.isnan(x)] = np.nan
        return grad_x
    if kind == "sigmoid":
        s = np_sigmoid(x)
        return grad_y * s * (1.0 - s)
    if kind == "tanh":
        t = np.tanh(x)
        return grad_y * (1.0 - t * t)
    if kind == "relu":
        return np.where(x > 0, grad_y, 0.0)
    if kind == "leaky_relu":
        return np.where(x > 0, grad_y, LEAKY_SLOPE * grad_y)
    if kind == "elu":
        return np.where(x > 0, grad_y, grad_y * (ELU_ALPHA * np.exp(x)))
    if kind == "selu":
        return grad_y * (SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(x)))
    if kind == "gelu":
        cdf = 0.5 * (1.0 + erf(x / SQRT_2))
        pdf = INV_SQRT_2PI * np.exp(-0.5 * x * x)
        return grad_y * (cdf + x * pdf)
    if kind == "gelu_tanh":
        x2 = x * x
        t = np.tanh(SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x2 * x))
        du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_CUBIC * x2)
        return grad_y * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
    if kind == "silu":
        s = np_sigmoid(x)
        return grad_y * (s * (1.0 + x * (1.0 - s)))
    if kind == "softplus":
        return grad_y * np_sigmoid(x)
    raise ValueError(kind)


def np_batchnorm_forward(x, gamma, beta):
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    y = (x - mean) / np.sqrt(var + BN_EPS) * gamma + beta
    return y, mean, var


def np_batchnorm_backward(grad_y, x, gamma, mean, var):
    batch = x.shape[0]
    inv_std = 1.0 / np.sqrt(var + BN_EPS)
    x_hat = (x - mean) * inv_std
    grad_gamma = (grad_y * x_hat).sum(axis=0)
    grad_beta = grad_y.sum(axis=0)
    grad_x = (gamma * inv_std / batch) * (batch * grad_y - grad_beta - x_hat * grad_gamma)
    return grad_x, grad_gamma, grad_beta


def np_softmax_cross_entropy(logits, labels):
    batch = logits.shape[0]
    rows = np.arange(batch)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[rows, labels].mean()
    grad = np.exp(log_probs)
    grad[rows, labels] -= 1.0
    grad /= batch
    return loss, grad


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    kernel: str  # e.g. "act_bwd:gelu"
    dtype: np.dtype
    shape: tuple
    run_gw: Callable[[], object]
    run_np: Callable[[], object]
    inputs: tuple  # the arrays read, for the byte count
    memory_bound: bool
    fused: bool
    run_gemm: Optional[Callable[[], object]] = None
    elements: int = 0  # of x, for the size threshold of the targets
    results: dict = field(default_factory=dict)


def _gemm(dtype):
    return _core.gemm_f32 if dtype == np.float32 else _core.gemm_f64


def build_cases(kernel_filter, dtypes, sizes, dense_sizes, missing):
    """Every (kernel, size, dtype) case whose kernel exists and matches the filter."""
    functions = {name: resolve(name) for name in KERNEL_MODULES}
    cases = []

    def skip(kernel, function_name):
        """True when the kernel is filtered out, or missing (then noted in `missing`)."""
        if kernel_filter and not any(k in kernel for k in kernel_filter):
            return True
        if functions[function_name] is None:
            missing.setdefault(function_name, set()).add(kernel)
            return True
        return False

    for dtype in dtypes:
        for rows, cols in sizes:
            rng = np.random.default_rng(rows * 7919 + cols)
            x = (3.0 * rng.standard_normal((rows, cols))).astype(dtype)
            grad_y = rng.standard_normal((rows, cols)).astype(dtype)
            for kind in ACTIVATION_KINDS:
                name = f"act_fwd:{kind}"
                if not skip(name, "activation_forward"):
                    fwd = functions["activation_forward"]
                    cases.append(Case(
                        name, dtype, (rows, cols),
                        lambda fwd=fwd, kind=kind, x=x: fwd(x, kind),
                        lambda kind=kind, x=x: np_activation_forward(x, kind),
                        (x,), memory_bound=True, fused=False,
                    ))
                name = f"act_bwd:{kind}"
                if not skip(name, "activation_backward"):
                    bwd = functions["activation_backward"]
                    cases.append(Case(
                        name, dtype, (rows, cols),
                        lambda bwd=bwd, kind=kind, x=x, g=grad_y: bwd(g, x, kind),
                        lambda kind=kind, x=x, g=grad_y: np_activation_backward(g, x, kind),
                        (grad_y, x), memory_bound=True, fused=True,
                    ))
            gamma = (1.0 + 0.1 * rng.standard_normal(cols)).astype(dtype)
            beta = (0.1 * rng.standard_normal(cols)).astype(dtype)
            if not skip("bn_fwd", "batchnorm_forward"):
                bn_fwd = functions["batchnorm_forward"]
                cases.append(Case(
                    "bn_fwd", dtype, (rows, cols),
                    lambda f=bn_fwd, x=x, g=gamma, b=beta: f(x, g, b, eps=BN_EPS),
                    lambda x=x, g=gamma, b=beta: np_batchnorm_forward(x, g, b),
                    (x, gamma, beta), memory_bound=True, fused=True,
                ))
            if not skip("bn_bwd", "batchnorm_backward"):
                bn_bwd = functions["batchnorm_backward"]
                mean, var = x.mean(axis=0), x.var(axis=0)
                cases.append(Case(
                    "bn_bwd", dtype, (rows, cols),
                    lambda f=bn_bwd, g=grad_y, x=x, gm=gamma, m=mean, v=var: f(
                        g, x, gm, m, v, eps=BN_EPS),
                    lambda g=grad_y, x=x, gm=gamma, m=mean, v=var: np_batchnorm_backward(
                        g, x, gm, m, v),
                    (grad_y, x, gamma, mean, var), memory_bound=True, fused=True,
                ))
            if not skip("softmax_ce", "softmax_cross_entropy"):
                ce = functions["softmax_cross_entropy"]
                labels = rng.integers(0, cols, size=rows, dtype=np.int64)
                cases.append(Case(
                    "softmax_ce", dtype, (rows, cols),
                    lambda f=ce, x=x, lab=labels: f(x, lab),
                    lambda x=x, lab=labels: np_softmax_cross_entropy(x, lab),
                    (x, labels), memory_bound=True, fused=True,
                ))
        for batch, fan_in, fan_out in dense_sizes:
            rng = np.random.default_rng(batch * 31 + fan_in * 7 + fan_out)
            x = rng.standard_normal((batch, fan_in)).astype(dtype)
            w = (rng.standard_normal((fan_in, fan_out)) / math.sqrt(fan_in)).astype(dtype)
            b = rng.standard_normal(fan_out).astype(dtype)
            grad_y = rng.standard_normal((batch, fan_out)).astype(dtype)
            gemm = _gemm(dtype)
            shape = (batch, fan_in, fan_out)
            if not skip("dense_fwd", "dense_forward"):
                fwd = functions["dense_forward"]
                cases.append(Case(
                    "dense_fwd", dtype, shape,
                    lambda f=fwd, x=x, w=w, b=b: f(x, w, b),
                    lambda x=x, w=w, b=b: x @ w + b,
                    (x, w, b), memory_bound=False, fused=False,
                    run_gemm=lambda x=x, w=w, gemm=gemm: gemm(x, w),
                ))
            if not skip("dense_bwd", "dense_backward"):
                bwd = functions["dense_backward"]
                cases.append(Case(
                    "dense_bwd", dtype, shape,
                    lambda f=bwd, g=grad_y, x=x, w=w: f(g, x, w),
                    lambda g=grad_y, x=x, w=w: (g @ w.T, x.T @ g, g.sum(axis=0)),
                    (grad_y, x, w), memory_bound=False, fused=False,
                    run_gemm=lambda g=grad_y, x=x, w=w, gemm=gemm: (gemm(g, w, False, True),
                                                                   gemm(x, g, True, False)),
                ))
    for case in cases:
        case.elements = case.shape[0] * case.shape[1]
    return cases


# ---------------------------------------------------------------------------------------------
# checking and timing
# ---------------------------------------------------------------------------------------------


def as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def compare(got, want, dtype):
    """None if every output matches (allclose, dtype kept), else a short description."""
    got, want = as_tuple(got), as_tuple(want)
    if len(got) != len(want):
        return f"{len(got)} outputs, NumPy has {len(want)}"
    rtol = 1e-3 if dtype == np.float32 else 1e-8
    for index, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            return f"output {index}: shape {g.shape}, NumPy {w.shape}"
        if w.ndim > 0 and w.dtype != dtype:
            return f"output {index}: the NumPy version returned {w.dtype} (unfair benchmark)"
        if g.ndim > 0 and g.dtype != dtype:
            return f"output {index}: dtype {g.dtype}, expected {np.dtype(dtype)}"
        # Absolute tolerance relative to the output's scale: sums cancel to values near zero.
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        if not np.allclose(g, w, rtol=rtol, atol=rtol * max(scale, 1e-30), equal_nan=True):
            error = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64))))
            return f"output {index}: max |diff| {error:.3g} (scale {scale:.3g})"
    return None


def calls_per_sample(function):
    """Calls that make a sample of >= 1 ms, and the seconds of one call (after a warm-up call)."""
    function()
    start = time.perf_counter()
    function()
    single = max(time.perf_counter() - start, 1e-7)
    return max(1, math.ceil(1e-3 / single)), single


def take_samples(functions, numbers, samples, out):
    """`samples` rounds, each timing one sample (numbers[i] calls) of every function in turn,
    appended to out."""
    for _ in range(samples):
        for f, number, times in zip(functions, numbers, out):
            start = time.perf_counter()
            for _ in range(number):
                f()
            times.append((time.perf_counter() - start) / number)


def measure(functions, seconds, min_samples):
    """Median seconds per call of each function, their samples alternating: a ratio of two then
    comes from the same moments of a machine whose speed drifts. Only the first function may run
    threads; the others (NumPy's elementwise ops, np.copyto) run on the calling thread."""
    # Idle threads spin before they sleep: OpenBLAS's for THREAD_TIMEOUT (2^28 cycles, measured
    # 0.10-0.125 s of CPU here, in both OpenBLAS copies: NumPy's and gradwatch's), libgomp's for
    # GOMP_SPINCOUNT (measured 4-8 ms). The pause outlasts both, so no kernel is timed against
    # the spinning threads of the one timed before it. A single-threaded partner shares no core
    # with the function's threads' spinning on 2 cores: it runs on the calling thread's.
    time.sleep(SETTLE_SECONDS)
    calibration = [calls_per_sample(f) for f in functions]
    round_time = sum(number * single for number, single in calibration)
    samples = max(min_samples, round(seconds / round_time))
    times = [[] for _ in functions]
    take_samples(functions, [number for number, _ in calibration], samples, times)
    return tuple(statistics.median(t) for t in times)


def measure_in_turns(functions, seconds, min_samples, turns=3):
    """Median seconds per call of each function, for functions that each run threads of their own
    (gradwatch's team, NumPy's OpenBLAS, the bare GEMM): they cannot alternate sample by sample
    (each would run against the other's spinning threads), so they take `turns` turns of
    seconds / turns each, a pause before each turn, and the samples of all turns are pooled."""
    times = [[] for _ in functions]
    for _ in range(turns):
        for f, out in zip(functions, times):
            time.sleep(SETTLE_SECONDS)
            number, single = calls_per_sample(f)
            samples = max(math.ceil(min_samples / turns), round(seconds / turns / (number * single)))
            take_samples([f], [number], samples, [out])
    return tuple(statistics.median(t) for t in times)


def bytes_moved(case, gw_result):
    """Every input array read once plus every output array written once."""
    arrays = list(case.inputs) + [a for a in as_tuple(gw_result) if isinstance(a, np.ndarray)]
    return sum(a.nbytes for a in arrays)


def copy_function(count, dtype):
    """np.copyto of `count` elements of `dtype` (reads and writes 2 * count * itemsize bytes)."""
    source = np.ones(count, dtype=dtype)
    target = np.empty_like(source)
    return lambda: np.copyto(target, source)


def format_time(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:8.2f} ms"
    return f"{seconds:8.3f} s "


def shape_label(shape):
    return "x".join(str(s) for s in shape)


# ---------------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------------


def targets(case):
    """(name, passed) for each target of issue 3 that applies to this row."""
    results = case.results
    if "error" in results:
        return [("correct", False)]
    if case.elements < TARGET_MIN_ELEMENTS:
        return []
    checks = [("not slower than NumPy", results["ratio"] >= 1.0)]
    is_elementwise_or_bn = case.kernel.startswith(("act_", "bn_"))
    if is_elementwise_or_bn:
        checks.append((">= 60% of copy bandwidth", results["copy_fraction"] >= 0.6))
    if case.fused:
        checks.append((">= 2x NumPy (fused)", results["ratio"] >= 2.0))
    if case.run_gemm is not None:
        checks.append(("within 10% of bare GEMM", results["gemm_ratio"] <= 1.10))
    return checks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=TARGET_THREADS,
                        help="threads for gradwatch and for NumPy's BLAS (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="two sizes, 0.05 s per measurement: a smoke run")
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="both")
    parser.add_argument("--kernel", action="append", default=[],
                        help="only kernels whose name contains this (repeatable), "
                             "e.g. act_bwd, gelu, bn_, softmax_ce, dense")
    parser.add_argument("--seconds", type=float, default=None,
                        help="time per measurement (default 0.2, 0.05 with --quick)")
    args = parser.parse_args(argv)

    seconds = args.seconds if args.seconds is not None else (0.05 if args.quick else 0.2)
    min_samples = 3 if args.quick else 5
    dtypes = {"float32": [np.float32], "float64": [np.float64]}.get(
        args.dtype, [np.float32, np.float64])
    sizes = QUICK_SIZES if args.quick else SIZES
    dense_sizes = QUICK_DENSE_SIZES if args.quick else DENSE_SIZES

    limiter = None
    if threadpoolctl is not None:
        # Limits every BLAS in the process, NumPy's and gradwatch's OpenBLAS alike.
        limiter = threadpoolctl.threadpool_limits(limits=args.threads, user_api="blas")
    gradwatch.set_num_threads(args.threads)

    info = gradwatch.build_info()
    print(f"# gradwatch kernel benchmark: python bench/bench_ops.py {' '.join(sys.argv[1:])}")
    print("# build: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    blas_note = (f"NumPy's BLAS limited to {args.threads} threads with threadpoolctl"
                 if limiter is not None else
                 "threadpoolctl not importable: NumPy's BLAS runs with its default threads")
    print(f"# numpy {np.__version__}: {blas_note}; NumPy's elementwise ops run on one thread")
    print("# erf for the NumPy gelu: " + ("scipy.special.erf" if _scipy_erf is not None else
                                          "np.vectorize(math.erf) (no SciPy: slow, unfair)"))
    print(f"# timing: median of >= {min_samples} samples of >= 1 ms, ~{seconds} s per "
          "measurement, after a warm-up; ratio = NumPy time / gradwatch time (> 1: faster)")
    print("#   the samples of gradwatch, NumPy (one thread) and the copy alternate; dense, whose "
          "NumPy and GEMM run threads, takes 3 turns of each instead, samples pooled")
    print("# bytes: every input array read once + every output array written once (the least "
          "any implementation moves);")
    print("#   of copy = that bandwidth / np.copyto's (same dtype, same element count as x, "
          "read + write, one thread)")
    print(f"# a {SETTLE_SECONDS} s pause before each measurement lets the idle threads of the "
          "library timed before stop spinning")
    print("# dense: GEMM = the bare OpenBLAS GEMM(s) gradwatch calls (_core.gemm_*), output "
          "allocated as in the layer; dense/GEMM <= 1.10 is the target")
    print()

    missing = {}  # function name -> kernels that need it
    cases = build_cases(args.kernel, dtypes, sizes, dense_sizes, missing)
    for function_name, kernels in sorted(missing.items()):
        print(f"missing: gradwatch.ops.{function_name} (not benchmarked: "
              f"{', '.join(sorted(kernels))})")
    if missing:
        print()

    header = (f"{'kernel':<19} {'dtype':<8} {'shape':<15} {'gradwatch':>11} {'numpy':>11} "
              f"{'np/gw':>6} {'GB/s':>6} {'of copy':>7} {'GEMM':>11} {'dense/GEMM':>10}")
    print(header)
    print("-" * len(header))
    for case in cases:
        label = f"{case.kernel:<19} {np.dtype(case.dtype).name:<8} {shape_label(case.shape):<15}"
        try:
            got = case.run_gw()
            problem = compare(got, case.run_np(), case.dtype)
        except Exception as error:  # a kernel with another signature must not stop the run
            problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            case.results["error"] = problem
            print(f"{label} CHECK FAILED: {problem}")
            continue
        if case.run_gemm is not None:  # three threaded libraries: in turns
            gw_time, np_time, gemm_time = measure_in_turns(
                [case.run_gw, case.run_np, case.run_gemm], seconds, min_samples)
        elif case.memory_bound:  # in alternation with NumPy and the copy it is compared with
            gw_time, np_time, copy_time = measure(
                [case.run_gw, case.run_np, copy_function(case.elements, case.dtype)], seconds,
                min_samples)
        else:
            gw_time, np_time = measure([case.run_gw, case.run_np], seconds, min_samples)
        case.results.update(gw=gw_time, numpy=np_time, ratio=np_time / gw_time)
        line = f"{label} {format_time(gw_time)} {format_time(np_time)} {np_time / gw_time:6.2f}"
        if case.memory_bound:
            moved = bytes_moved(case, got)
            copy_bandwidth = 2 * case.elements * np.dtype(case.dtype).itemsize / copy_time
            bandwidth = moved / gw_time
            case.results["copy_fraction"] = bandwidth / copy_bandwidth
            line += f" {bandwidth / 1e9:6.1f} {100 * bandwidth / copy_bandwidth:6.0f}%"
        else:
            line += f" {'':>6} {'':>7}"
        if case.run_gemm is not None:
            case.results["gemm_ratio"] = gw_time / gemm_time
            line += f" {format_time(gemm_time)} {gw_time / gemm_time:10.3f}"
        print(line, flush=True)

    print()
    note = "" if args.threads == TARGET_THREADS else (
        f" (the targets are set for {TARGET_THREADS} threads; this run used {args.threads})")
    print(f"# targets: sizes >= 256x1024{note}; a failed check fails at any size")
    passed = failed = 0
    for case in cases:
        checks = targets(case)
        if not checks:
            continue
        label = f"{case.kernel:<19} {np.dtype(case.dtype).name:<8} {shape_label(case.shape):<15}"
        marks = "  ".join(f"{'PASS' if ok else 'FAIL'} {name}" for name, ok in checks)
        print(f"{label} {marks}")
        passed += sum(ok for _, ok in checks)
        failed += sum(not ok for _, ok in checks)
    missing_kernels = sum(len(kernels) for kernels in missing.values())
    print(f"# {passed} passed, {failed} failed, {missing_kernels} kernels missing")
    if limiter is not None:
        limiter.restore_original_limits()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
