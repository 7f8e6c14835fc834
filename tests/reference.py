"""The oracle: plain NumPy float64 forward and backward of every kernel in gradwatch.

Readable first, fast never. Every function takes and returns float64 arrays; tests compare the
compiled kernels (in float32 and float64) against these.
Dims: N = batch, I = fan_in, O = fan_out, F = features, C = classes.
"""

import math

import numpy as np


def as64(a):
    return np.asarray(a, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# activations
# ---------------------------------------------------------------------------------------------

# Elementwise, any shape: x, y, grad_y, grad_x all have the shape of x. alpha: leaky_relu's negative
# slope (default 0.01) or elu's alpha (default 1.0); ignored by the other kinds.

ACTIVATION_KINDS = (
    "identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh",
    "silu", "softplus",
)
ACTIVATION_DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}
# Kinds whose derivative is a function of the output (activation_backward_from_output).
ACTIVATION_FROM_OUTPUT_KINDS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu")

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_TANH_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_TANH_CUBIC = 0.044715

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _sigmoid(x):
    # Two branches so that neither exp overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _normal_cdf(x):
    return 0.5 * _erfc(-x / math.sqrt(2.0))


def _normal_pdf(x):
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _gelu_tanh_inner(x):
    return GELU_TANH_SQRT_2_OVER_PI * (x + GELU_TANH_CUBIC * x**3)


def activation_alpha(kind, alpha=None):
    """The alpha a kind uses: the given one or its default (None for kinds without alpha)."""
    return ACTIVATION_DEFAULT_ALPHA.get(kind) if alpha is None else alpha


def activation_forward(x, kind, alpha=None):
    """y = f(x).  x: any shape -> y: same shape."""
    x = as64(x)
    a = activation_alpha(kind, alpha)
    if kind == "identity":
        return x.copy()
    if kind == "sigmoid":
        return _sigmoid(x)
    if kind == "tanh":
        return np.tanh(x)
    if kind == "relu":
        return np.where(x < 0, 0.0, x)
    if kind == "leaky_relu":
        return np.where(x < 0, a * x, x)
    if kind == "elu":
        return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0)))
    if kind == "selu":
        return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))
    if kind == "gelu":
        return x * _normal_cdf(x)
    if kind == "gelu_tanh":
        return 0.5 * x * (1.0 + np.tanh(_gelu_tanh_inner(x)))
    if kind == "silu":
        return x * _sigmoid(x)
    if kind == "softplus":
        return np.logaddexp(0.0, x)
    raise ValueError(f"unknown kind {kind!r}")


def activation_derivative(x, kind, alpha=None):
    """f'(x), PyTorch's choice at kinks (relu'(0) = 0, leaky_relu'(0) = elu'(0) = alpha).
    x: any shape -> same shape."""
    x = as64(x)
    a = activation_alpha(kind, alpha)
    if kind == "identity":
        return np.ones_like(x)
    if kind == "sigmoid":
        s = _sigmoid(x)
        return s * (1.0 - s)
    if kind == "tanh":
        return 1.0 - np.tanh(x) ** 2
    if kind == "relu":
        return np.where(x > 0, 1.0, 0.0)
    if kind == "leaky_relu":
        return np.where(x > 0, 1.0, a)
    if kind == "elu":
        return np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0.0)))
    if kind == "selu":
        return SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))
    if kind == "gelu":
        return _normal_cdf(x) + x * _normal_pdf(x)
    if kind == "gelu_tanh":
        t = np.tanh(_gelu_tanh_inner(x))
        inner_slope = GELU_TANH_SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_CUBIC * x * x)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * inner_slope
    if kind == "silu":
        s = _sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    if kind == "softplus":
        return _sigmoid(x)
    raise ValueError(f"unknown kind {kind!r}")


def activation_backward(grad_y, x, kind, alpha=None):
    """grad_x = grad_y * f'(x).  grad_y, x: same shape -> grad_x: same shape."""
    return as64(grad_y) * activation_derivative(x, kind, alpha)


def activation_backward_from_output(grad_y, y, kind, alpha=None):
    """grad_x = grad_y * f'(x) written in terms of y = f(x) (alpha > 0 for leaky_relu and elu).
    grad_y, y: same shape -> grad_x: same shape."""
    y = as64(y)
    a = activation_alpha(kind, alpha)
    if kind == "identity":
        slope = np.ones_like(y)
    elif kind == "sigmoid":
        slope = y * (1.0 - y)
    elif kind == "tanh":
        slope = 1.0 - y * y
    elif kind == "relu":
        slope = np.where(y > 0, 1.0, 0.0)
    elif kind == "leaky_relu":
        slope = np.where(y > 0, 1.0, a)
    elif kind == "elu":
        slope = np.where(y > 0, 1.0, y + a)
    elif kind == "selu":
        slope = np.where(y > 0, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA)
    else:
        raise ValueError(f"{kind!r} has no derivative in terms of its output")
    return as64(grad_y) * slope


# (end of activations)


# ---------------------------------------------------------------------------------------------
# dense
# ---------------------------------------------------------------------------------------------


def dense_forward(x, w, b=None):
    """y = x @ w + b.  x: (N, I)  w: (I, O)  b: (O,) or None  ->  y: (N, O)"""
    y = as64(x) @ as64(w)
    return y if b is None else y + as64(b)


def dense_backward(grad_y, x, w):
    """Gradients of y = x @ w + b.  grad_y: (N, O)  x: (N, I)  w: (I, O)
    ->  grad_x: (N, I), grad_w: (I, O), grad_b: (O,)"""
    grad_y, x, w = as64(grad_y), as64(x), as64(w)
    return grad_y @ w.T, x.T @ grad_y, grad_y.sum(axis=0)


# (end of dense)


# ---------------------------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------------------------

# Dims: N = batch, F = features; statistics per feature, over the batch (axis 0).


def batchnorm_statistics(x):
    """Mean and biased variance per feature, by the corrected two-pass algorithm.

    x: (N, F) -> mean, var: (F,). The correction term (Chan, Golub & LeVeque 1983) makes both
    accurate to rounding even when a large common offset dwarfs the spread (x = 1e4 + noise),
    where x.mean(axis=0), a running sum down the rows, is not.
    """
    x = as64(x)
    n = x.shape[0]
    mean = x.mean(axis=0)
    centred = x - mean
    mean = mean + centred.sum(axis=0) / n
    centred = x - mean
    var = ((centred**2).sum(axis=0) - centred.sum(axis=0) ** 2 / n) / n
    return mean, var


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Training mode. x: (N, F)  gamma, beta: (F,) -> y: (N, F), mean, var: (F,)."""
    mean, var = batchnorm_statistics(x)
    y = as64(gamma) * (as64(x) - mean) / np.sqrt(var + eps) + as64(beta)
    return y, mean, var


def batchnorm_backward(grad_y, x, gamma, mean, var, eps=1e-5):
    """Training mode, through the batch statistics (mean, var as the forward returned them).

    grad_y, x: (N, F)  gamma, mean, var: (F,) -> grad_x: (N, F), grad_gamma, grad_beta: (F,).
    """
    grad_y = as64(grad_y)
    n = grad_y.shape[0]
    inv_std = 1.0 / np.sqrt(as64(var) + eps)
    x_hat = (as64(x) - as64(mean)) * inv_std
    grad_beta = grad_y.sum(axis=0)
    grad_gamma = (grad_y * x_hat).sum(axis=0)
    grad_x = as64(gamma) * inv_std * (grad_y - grad_beta / n - x_hat * grad_gamma / n)
    return grad_x, grad_gamma, grad_beta


def batchnorm_inference(x, gamma, beta, running_mean, running_var, eps=1e-5):
    """x: (N, F)  gamma, beta, running_mean, running_var: (F,) -> y: (N, F)."""
    inv_std = 1.0 / np.sqrt(as64(running_var) + eps)
    return as64(gamma) * (as64(x) - as64(running_mean)) * inv_std + as64(beta)


# (end of batch norm)


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------


def softmax(x):
    """x: (N, C) -> (N, C), rows normalised, the row maximum subtracted first."""
    x = as64(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(x):
    """x: (N, C) -> (N, C)."""
    x = as64(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def one_hot(labels, classes):
    """labels: (N,) class indices -> (N, C) float64."""
    labels = np.asarray(labels)
    out = np.zeros((labels.shape[0], classes))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def softmax_cross_entropy(logits, probs):
    """logits, probs: (N, C) -> (loss, grad (N, C)).

    loss = -(1/N) sum_n sum_c p[n, c] log_softmax(x)[n, c];
    grad = (softmax(x) * sum_c p[n, c] - p) / N (= (softmax - p) / N for rows of p summing to 1).
    """
    logits, probs = as64(logits), as64(probs)
    batch = logits.shape[0]
    loss = -(probs * log_softmax(logits)).sum() / batch
    grad = (softmax(logits) * probs.sum(axis=1, keepdims=True) - probs) / batch
    return loss, grad


def binary_cross_entropy_with_logits(x, t):
    """x, t: (*) -> (loss, grad (*)); loss = mean(max(x, 0) - x t + log1p(exp(-|x|)))."""
    x, t = as64(x), as64(t)
    decay = np.exp(-np.abs(x))
    loss = np.mean(np.maximum(x, 0) - x * t + np.log1p(decay))
    sigmoid = np.where(x >= 0, 1 / (1 + decay), decay / (1 + decay))
    return loss, (sigmoid - t) / x.size


def mse(pred, target):
    """pred, target: (*) -> (loss, grad (*)); loss = mean((pred - target)^2)."""
    diff = as64(pred) - as64(target)
    return np.mean(diff * diff), 2 * diff / diff.size


# (end of losses)


# ---------------------------------------------------------------------------------------------
# initialisation
# ---------------------------------------------------------------------------------------------
# The documented layout of gradwatch's random streams (cpp/include/gradwatch/random.hpp) and the
# textbook formulas of each scheme, written independently of the package.

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
STREAM_NORMAL, STREAM_UNIFORM, STREAM_ORTHOGONAL = 1, 2, 3
MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counters, key):
    """Philox4x32-10 (Salmon et al. 2011). counters: (B, 4) uint32  key: (2,)  -> (B, 4) uint32."""
    c = [np.asarray(counters, dtype=np.uint64)[:, w].copy() for w in range(4)]
    k0, k1 = int(key[0]), int(key[1])
    for round_index in range(10):
        if round_index > 0:
            k0, k1 = (k0 + PHILOX_W0) & 0xFFFFFFFF, (k1 + PHILOX_W1) & 0xFFFFFFFF
        p0 = np.uint64(PHILOX_M0) * c[0]  # < 2^64: no wrap-around
        p1 = np.uint64(PHILOX_M1) * c[2]
        c = [
            (p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0),
            p1 & MASK32,
            (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1),
            p0 & MASK32,
        ]
    return np.stack(c, axis=1).astype(np.uint32)


def stream_integers(seed, stream, n):
    """The 52-bit integers k_0 .. k_{n-1} of stream (seed, stream): value e is from block e // 2,
    words (x0, x1) for even e and (x2, x3) for odd e, k = (x_high << 32 | x_low) >> 12.  -> (n,)"""
    blocks = (n + 1) // 2
    index = np.arange(blocks, dtype=np.uint64)
    counters = np.stack(
        [index & MASK32, index >> np.uint64(32),
         np.full(blocks, stream, np.uint64), np.zeros(blocks, np.uint64)],
        axis=1,
    ).astype(np.uint32)
    words = philox4x32_10(counters, [seed & 0xFFFFFFFF, seed >> 32]).astype(np.uint64)
    high, low = words[:, [1, 3]], words[:, [0, 2]]
    k = ((high << np.uint64(32)) | low).reshape(-1)[:n]
    return k >> np.uint64(12)


def open_uniforms(seed, stream, n):
    """u_e = (2 k_e + 1) / 2^53, in the open interval (0, 1).  -> (n,)"""
    return (2 * stream_integers(seed, stream, n) + 1).astype(np.float64) * 2.0**-53


def standard_normals(seed, stream, n):
    """Box-Muller on the pairs (u_{2b}, u_{2b+1}): z_{2b} = r cos(theta), z_{2b+1} = r sin(theta),
    r = sqrt(-2 log u_{2b}), theta = 2 pi u_{2b+1}.  -> (n,)"""
    u = open_uniforms(seed, stream, n + (n % 2)).reshape(-1, 2)
    r = np.sqrt(-2.0 * np.log(u[:, 0]))
    theta = 2.0 * math.pi * u[:, 1]
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).reshape(-1)[:n]


def init_normal(seed, fan_in, fan_out, std):
    """W ~ N(0, std^2), element (i, j) = std * z_{i fan_out + j}.  -> (I, O)"""
    return std * standard_normals(seed, STREAM_NORMAL, fan_in * fan_out).reshape(fan_in, fan_out)


def init_uniform(seed, fan_in, fan_out, limit):
    """W ~ U(-limit, limit), element e = limit * (2 u_e - 1) (2 u - 1 is exact).  -> (I, O)"""
    k = stream_integers(seed, STREAM_UNIFORM, fan_in * fan_out)
    symmetric = (2 * k + 1).astype(np.float64) * 2.0**-52 - 1.0
    return (limit * symmetric).reshape(fan_in, fan_out)


def init_orthogonal(seed, fan_in, fan_out, gain):
    """gain * Q from numpy's QR of the Gaussian G (G^T when fan_in < fan_out), columns of Q
    multiplied by sign(diag R) (Mezzadri 2007).  -> (I, O)"""
    g = standard_normals(seed, STREAM_ORTHOGONAL, fan_in * fan_out).reshape(fan_in, fan_out)
    a = g if fan_in >= fan_out else g.T
    q, r = np.linalg.qr(a)
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return gain * (q if fan_in >= fan_out else q.T)


def init_spread(scheme, fan_in, fan_out, gain=1.0, negative_slope=0.0):
    """(distribution, parameter): ("normal", std) or ("uniform", limit) of a fan-based scheme
    (negative_slope is the a of leaky ReLU, 0 for ReLU)."""
    a = negative_slope
    return {
        # Glorot & Bengio 2010: Var = 2 / (fan_in + fan_out)
        "xavier_normal": ("normal", gain * math.sqrt(2.0 / (fan_in + fan_out))),
        "xavier_uniform": ("uniform", gain * math.sqrt(6.0 / (fan_in + fan_out))),
        # He et al. 2015: Var = 2 / ((1 + a^2) fan_in)
        "he_normal": ("normal", gain * math.sqrt(2.0 / ((1 + a * a) * fan_in))),
        "he_uniform": ("uniform", gain * math.sqrt(6.0 / ((1 + a * a) * fan_in))),
        # LeCun et al. 1998: Var = 1 / fan_in
        "lecun_normal": ("normal", gain * math.sqrt(1.0 / fan_in)),
        "lecun_uniform": ("uniform", gain * math.sqrt(3.0 / fan_in)),
    }[scheme]


# (end of initialisation)


# ---------------------------------------------------------------------------------------------
# optimisers
# ---------------------------------------------------------------------------------------------
# One update of one tensor, written from the published rules (PyTorch's torch.optim docs for
# SGD, Adagrad, RMSprop, Adam, AdamW; You, Gitman & Ginsburg 2017 and NVIDIA's LARC for LARS).
# p, g: (E) float64; `state` is a dict of float64 buffers, filled on the first call (t = 1) and
# updated in place; t counts steps from 1. Each returns the new parameter.


def clip_gradient(grad, grad_scale=1.0, clip_value=None):
    """grad * grad_scale, clamped to [-clip_value, clip_value] when clip_value is given."""
    g = as64(grad) * grad_scale
    return g if clip_value is None else np.clip(g, -clip_value, clip_value)


def sgd_update(p, g, state, t, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    p, g = as64(p), as64(g)
    d = g + weight_decay * p
    if momentum != 0:
        if t == 1:
            state["momentum_buffer"] = d.copy()
        else:
            state["momentum_buffer"] = momentum * state["momentum_buffer"] + (1 - dampening) * d
        buf = state["momentum_buffer"]
        d = d + momentum * buf if nesterov else buf
    return p - lr * d


def adagrad_update(p, g, state, t, lr=0.01, lr_decay=0.0, weight_decay=0.0,
                   initial_accumulator_value=0.0, eps=1e-10):
    p, g = as64(p), as64(g)
    if t == 1:
        state["sum"] = np.full_like(p, initial_accumulator_value)
    d = g + weight_decay * p
    clr = lr / (1 + (t - 1) * lr_decay)
    state["sum"] = state["sum"] + d * d
    return p - clr * d / (np.sqrt(state["sum"]) + eps)


def rmsprop_update(p, g, state, t, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0,
                   momentum=0.0, centered=False):
    p, g = as64(p), as64(g)
    if t == 1:
        state["square_avg"] = np.zeros_like(p)
        if momentum > 0:
            state["momentum_buffer"] = np.zeros_like(p)
        if centered:
            state["grad_avg"] = np.zeros_like(p)
    d = g + weight_decay * p
    state["square_avg"] = alpha * state["square_avg"] + (1 - alpha) * d * d
    variance = state["square_avg"]
    if centered:
        state["grad_avg"] = alpha * state["grad_avg"] + (1 - alpha) * d
        variance = variance - state["grad_avg"] ** 2
    avg = np.sqrt(variance) + eps
    if momentum > 0:
        state["momentum_buffer"] = momentum * state["momentum_buffer"] + d / avg
        return p - lr * state["momentum_buffer"]
    return p - lr * d / avg


def adam_update(p, g, state, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                decoupled=False):
    """Adam (coupled L2 decay) or, with decoupled=True, AdamW (p scaled by 1 - lr wd first)."""
    p, g = as64(p), as64(g)
    beta1, beta2 = betas
    if t == 1:
        state["exp_avg"] = np.zeros_like(p)
        state["exp_avg_sq"] = np.zeros_like(p)
    if decoupled:
        p = p * (1 - lr * weight_decay)
        d = g
    else:
        d = g + weight_decay * p
    state["exp_avg"] = beta1 * state["exp_avg"] + (1 - beta1) * d
    state["exp_avg_sq"] = beta2 * state["exp_avg_sq"] + (1 - beta2) * d * d
    m_hat = state["exp_avg"] / (1 - beta1**t)
    v_hat = state["exp_avg_sq"] / (1 - beta2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def lars_rate(p, g, lr, weight_decay, trust_coefficient, mode):
    """The layer's rate: lr * local_lr ("scale") or min(lr, local_lr) ("clip"), with
    local_lr = trust_coefficient ||p|| / (||g|| + weight_decay ||p||); lr when a norm is 0."""
    p_norm, g_norm = np.linalg.norm(as64(p)), np.linalg.norm(as64(g))
    if p_norm == 0 or g_norm == 0:
        return lr
    local_lr = trust_coefficient * p_norm / (g_norm + weight_decay * p_norm)
    return lr * local_lr if mode == "scale" else min(lr, local_lr)


def lars_update(p, g, state, t, lr, momentum=0.9, weight_decay=0.0, trust_coefficient=0.001,
                mode="scale", adapt=True):
    """adapt=False: an excluded tensor (bias, batch norm): rate lr, no weight decay."""
    p, g = as64(p), as64(g)
    if not adapt:
        weight_decay = 0.0
        rate = lr
    else:
        rate = lars_rate(p, g, lr, weight_decay, trust_coefficient, mode)
    step = rate * (g + weight_decay * p)
    if momentum != 0:
        if t == 1:
            state["momentum_buffer"] = np.zeros_like(p)
        state["momentum_buffer"] = momentum * state["momentum_buffer"] + step
        step = state["momentum_buffer"]
    return p - step


# (end of optimisers)


# ---------------------------------------------------------------------------------------------
# network
# ---------------------------------------------------------------------------------------------
# An MLP of L dense layers, the output layer last. params: dict keyed like MLP.state_dict()
# (dense{i}.weight (I, O), dense{i}.bias (O,), bn{i}.gamma, bn{i}.beta, bn{i}.running_mean,
# bn{i}.running_var (O,)). config: dict with activations (a kind per hidden layer), batchnorm
# (bool), residual (a bool per hidden layer), dropout (a p per hidden layer), loss, bn_eps,
# bn_momentum. masks: {hidden layer: bool (N, O)}, True where the activation is kept.
# Hidden layer i: z = x @ W + b; h = batch norm of z (batch statistics in training, running ones
# otherwise) or z; a = act(h); out = a * mask / (1 - p) in training with p > 0, else a;
# out += x for a residual layer. Output layer: logits = x @ W + b.


def mlp_layer_count(params):
    return sum(1 for name in params if name.endswith(".weight"))


def mlp_forward(params, x, config, training, masks=None):
    """x: (N, D) -> logits (N, C), cache (one dict per layer: x, z, h, a, mask, mean, var)."""
    layers = mlp_layer_count(params)
    out = as64(x)
    cache = []
    for i in range(layers):
        layer = {"x": out}
        z = dense_forward(out, params[f"dense{i}.weight"], params[f"dense{i}.bias"])
        layer["z"] = z
        cache.append(layer)
        if i == layers - 1:
            return z, cache
        h = z
        if config["batchnorm"]:
            gamma, beta = params[f"bn{i}.gamma"], params[f"bn{i}.beta"]
            if training:
                h, layer["mean"], layer["var"] = batchnorm_forward(z, gamma, beta, config["bn_eps"])
            else:
                h = batchnorm_inference(z, gamma, beta, params[f"bn{i}.running_mean"],
                                        params[f"bn{i}.running_var"], config["bn_eps"])
        a = activation_forward(h, config["activations"][i])
        layer["h"], layer["a"] = h, a
        p = config["dropout"][i]
        if training and p > 0:
            layer["mask"] = masks[i]
            a = a * masks[i] / (1.0 - p)
        out = a + out if config["residual"][i] else a


def mlp_loss(logits, y, loss):
    """logits: (N, C); y: class indices (N,) or targets (N, C) -> (loss, grad_logits (N, C))."""
    if loss == "softmax_cross_entropy":
        return softmax_cross_entropy(logits, one_hot(y, logits.shape[1]))
    if loss == "binary_cross_entropy_with_logits":
        return binary_cross_entropy_with_logits(logits, y)
    return mse(logits, y)


def mlp_backward(params, cache, grad_logits, config):
    """Gradients of every parameter (keyed like params, no running statistics)."""
    layers = len(cache)
    grads = {}
    grad = as64(grad_logits)  # of the current layer's output
    for i in reversed(range(layers)):
        layer = cache[i]
        grad_z = grad
        if i < layers - 1:
            grad_h = grad
            if "mask" in layer:
                grad_h = grad_h * layer["mask"] / (1.0 - config["dropout"][i])
            grad_z = activation_backward(grad_h, layer["h"], config["activations"][i])
            if config["batchnorm"]:
                grad_z, grads[f"bn{i}.gamma"], grads[f"bn{i}.beta"] = batchnorm_backward(
                    grad_z, layer["z"], params[f"bn{i}.gamma"], layer["mean"], layer["var"],
                    config["bn_eps"],
                )
        grad_x, grads[f"dense{i}.weight"], grads[f"dense{i}.bias"] = dense_backward(
            grad_z, layer["x"], params[f"dense{i}.weight"]
        )
        if i < layers - 1 and config["residual"][i]:
            grad_x = grad_x + grad
        grad = grad_x
    return grads


def mlp_running_statistics(params, cache, config):
    """{bn{i}.running_mean, bn{i}.running_var} after a training step with this cache:
    (1 - m) running + m batch, with the unbiased batch variance (PyTorch's convention)."""
    m = config["bn_momentum"]
    updated = {}
    for i, layer in enumerate(cache[:-1]):
        n = layer["z"].shape[0]
        updated[f"bn{i}.running_mean"] = (1 - m) * params[f"bn{i}.running_mean"] + m * layer["mean"]
        updated[f"bn{i}.running_var"] = (
            (1 - m) * params[f"bn{i}.running_var"] + m * layer["var"] * n / (n - 1)
        )
    return updated


def dropout_masks(seed, step, layer_widths, batch, probabilities):
    """The documented dropout masks (gradwatch/network.hpp): element e = n O + j of hidden layer
    i is kept when word e mod 4 of Philox block (e // 4, i, step mod 2^32, step // 2^32) under
    key (seed mod 2^32, seed // 2^32) is >= floor(p 2^32). -> {i: bool (batch, O)}"""
    masks = {}
    for i, (width, p) in enumerate(zip(layer_widths, probabilities)):
        if p == 0:
            continue
        count = batch * width
        blocks = np.arange((count + 3) // 4, dtype=np.uint64)
        counters = np.stack([
            blocks & 0xFFFFFFFF,
            np.full_like(blocks, i),
            np.full_like(blocks, step & 0xFFFFFFFF),
            np.full_like(blocks, step >> 32),
        ], axis=1).astype(np.uint32)
        words = philox4x32_10(counters, (seed & 0xFFFFFFFF, seed >> 32)).reshape(-1)[:count]
        threshold = min(math.floor(p * 2.0**32), 2**32 - 1)
        masks[i] = (words >= threshold).reshape(batch, width)
    return masks


# (end of network)


# ---------------------------------------------------------------------------------------------
# telemetry
# ---------------------------------------------------------------------------------------------
# The per-layer statistics of gradwatch/telemetry.py for one training-mode pass of the network
# reference above, written from their definitions (the mean pairwise cosine directly over the
# pairs, not by the O(N F) identity). Layer i of L dense layers; N = batch, O = layer width.

TELEMETRY_METRICS = ("grad_weight_norm", "grad_bias_norm", "weight_norm", "update_ratio",
                     "grad_output_norm", "grad_input_norm", "preact_mean", "preact_std",
                     "act_mean", "act_std", "saturated_fraction", "dead_fraction",
                     "activation_cosine")


def mean_pairwise_cosine(a):
    """a: (N, O) -> the mean cosine over ordered pairs of distinct rows with nonzero norm."""
    a = as64(a)
    norms = np.sqrt((a * a).sum(axis=1))
    u = a[norms != 0] / norms[norms != 0, None]
    n = u.shape[0]
    if n < 2:
        return math.nan
    gram = u @ u.T  # (n, n)
    return (gram.sum() - np.trace(gram)) / (n * (n - 1))


def mlp_output_gradients(params, cache, grad_logits, config):
    """The gradient of each layer's output (out_i: after activation, dropout, residual; the
    logits last) and of the network input: ([(N, O_i)] per layer, (N, D))."""
    layers = len(cache)
    grad_outputs = [None] * layers
    grad = as64(grad_logits)
    for i in reversed(range(layers)):
        layer = cache[i]
        grad_outputs[i] = grad
        grad_z = grad
        if i < layers - 1:
            grad_h = grad
            if "mask" in layer:
                grad_h = grad_h * layer["mask"] / (1.0 - config["dropout"][i])
            grad_z = activation_backward(grad_h, layer["h"], config["activations"][i])
            if config["batchnorm"]:
                grad_z = batchnorm_backward(grad_z, layer["z"], params[f"bn{i}.gamma"],
                                            layer["mean"], layer["var"], config["bn_eps"])[0]
        grad_x = dense_backward(grad_z, layer["x"], params[f"dense{i}.weight"])[0]
        if i < layers - 1 and config["residual"][i]:
            grad_x = grad_x + grad
        grad = grad_x
    return grad_outputs, grad


def layer_statistics(params, x, y, config, masks=None, params_after=None, input_gradient=False):
    """{metric: (L,) float64} and nonfinite counts (L,) for one training-mode pass.

    params_after: the parameters after the step (update_ratio), else update_ratio is NaN.
    input_gradient: layer 0's grad_input_norm is ||dL/dx|| (a probe), else NaN (a step).
    Without masks, dropout is off (a probe)."""
    if masks is None:
        config = dict(config, dropout=[0.0] * len(config["dropout"]))
    logits, cache = mlp_forward(params, x, config, True, masks)
    loss, grad_logits = mlp_loss(logits, y, config["loss"])
    grads = mlp_backward(params, cache, grad_logits, config)
    grad_outputs, grad_x = mlp_output_gradients(params, cache, grad_logits, config)
    layers = len(cache)
    stats = {name: np.full(layers, math.nan) for name in TELEMETRY_METRICS}
    nonfinite = np.zeros(layers, dtype=np.int64)
    norm = lambda v: float(np.sqrt((as64(v) ** 2).sum()))  # noqa: E731
    bad = lambda v: int((~np.isfinite(v)).sum())  # noqa: E731
    for i, layer in enumerate(cache):
        weight = params[f"dense{i}.weight"]
        stats["grad_weight_norm"][i] = norm(grads[f"dense{i}.weight"])
        stats["grad_bias_norm"][i] = norm(grads[f"dense{i}.bias"])
        stats["weight_norm"][i] = norm(weight)
        if params_after is not None:
            stats["update_ratio"][i] = norm(params_after[f"dense{i}.weight"] - weight) / norm(weight)
        stats["grad_output_norm"][i] = norm(grad_outputs[i])
        stats["grad_input_norm"][i] = (norm(grad_outputs[i - 1]) if i > 0
                                       else norm(grad_x) if input_gradient else math.nan)
        gradients = [grads[f"dense{i}.weight"], grads[f"dense{i}.bias"], grad_outputs[i]]
        if i == layers - 1:
            stats["preact_mean"][i], stats["preact_std"][i] = logits.mean(), logits.std()
            stats["activation_cosine"][i] = mean_pairwise_cosine(logits)
            nonfinite[i] = bad(logits) + sum(bad(g) for g in gradients)
            continue
        if config["batchnorm"]:
            gradients += [grads[f"bn{i}.gamma"], grads[f"bn{i}.beta"]]
        h, a, kind = layer["h"], layer["a"], config["activations"][i]
        stats["preact_mean"][i], stats["preact_std"][i] = h.mean(), h.std()
        stats["act_mean"][i], stats["act_std"][i] = a.mean(), a.std()
        if kind == "sigmoid":
            stats["saturated_fraction"][i] = ((a < 0.01) | (a > 0.99)).mean()
        elif kind == "tanh":
            stats["saturated_fraction"][i] = (np.abs(a) > 0.99).mean()
        if kind in ("relu", "leaky_relu"):
            stats["dead_fraction"][i] = (h <= 0).all(axis=0).mean()
        stats["activation_cosine"][i] = mean_pairwise_cosine(a)
        nonfinite[i] = bad(layer["z"]) + bad(a) + sum(bad(g) for g in gradients)
    return stats, nonfinite, loss


# (end of telemetry)


# ---------------------------------------------------------------------------------------------
# finite differences
# ---------------------------------------------------------------------------------------------


def numerical_gradient(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function f at x (float64), same shape as x."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    grad_flat = grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        f_plus = f(x)
        flat[i] = original - eps
        f_minus = f(x)
        flat[i] = original
        grad_flat[i] = (f_plus - f_minus) / (2 * eps)
    return grad
