// Losses and softmax, forward and gradient fused in one pass.
// Dims: N = batch (rows), C = classes (row length), E = elements (any shape, flattened).
//
// Every loss returns the mean over the batch (or over all elements) accumulated in double, in an
// order that does not depend on the thread count: rows (or fixed chunks of 8192 elements) are
// summed into partials that are added in index order, so 1 and 2 threads give the same bits.
// NaN in the logits (or pred) gives NaN out; NaN in probabilities or targets throws
// std::invalid_argument after the kernel ran (the gradient is then unspecified), as do sizes < 1.
#pragma once

#include <cstdint>

namespace gradwatch {

// Softmax over each row: y[n, c] = exp(x[n, c] - max_n) / sum_k exp(x[n, k] - max_n).
// y, x: (N, C)
template <typename T>
void softmax(T* y, const T* x, int64_t N, int64_t C);

// log_softmax over each row: y[n, c] = x[n, c] - max_n - log(sum_k exp(x[n, k] - max_n)).
// y, x: (N, C)
template <typename T>
void log_softmax(T* y, const T* x, int64_t N, int64_t C);

// Cross-entropy of softmax(logits) against class indices; returns the mean loss
// (1/N) sum_n -log softmax(logits)[n, labels[n]] and writes its gradient
// dlogits = (softmax(logits) - onehot(labels)) / N.
// Throws std::invalid_argument before touching dlogits if a label is outside [0, C).
// dlogits, logits: (N, C)  labels: (N)
template <typename T>
double softmax_cross_entropy(T* dlogits, const T* logits, const int64_t* labels, int64_t N,
                             int64_t C);

// Cross-entropy of softmax(logits) against target probabilities; returns the mean loss
// (1/N) sum_n -sum_c probs[n, c] log softmax(logits)[n, c] and writes its gradient
// dlogits = (softmax(logits) * sum_c probs[n, c] - probs) / N (= (softmax - probs) / N when the
// rows of probs sum to 1). Throws std::invalid_argument("labels contain NaN") if probs holds a
// NaN (dlogits is then unspecified).
// dlogits, logits, probs: (N, C)
template <typename T>
double softmax_cross_entropy(T* dlogits, const T* logits, const T* probs, int64_t N, int64_t C);

// Binary cross-entropy on logits; returns mean_e(max(x, 0) - x t + log1p(exp(-|x|))) and writes
// dx = (sigmoid(x) - t) / E. Targets outside [0, 1] are allowed (as PyTorch); NaN ones throw.
// dx, x, targets: (E)
template <typename T>
double binary_cross_entropy_with_logits(T* dx, const T* x, const T* targets, int64_t E);

// Mean squared error; returns mean_e((pred - target)^2) and writes dpred = 2 (pred - target) / E.
// A NaN in target throws.
// dpred, pred, target: (E)
template <typename T>
double mse(T* dpred, const T* pred, const T* target, int64_t E);

}  // namespace gradwatch
