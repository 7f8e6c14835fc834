// Kernel bodies of gradwatch/loss.hpp, compiled once per ISA (see gradwatch/cpu_dispatch.hpp).
// Dims: N = batch (rows), C = classes (row length), E = elements, K = chunks of kChunk elements.
//
// Each row of a softmax kernel is read at most twice (max, then exp) and the output row written
// once and rescaled while it is still in L1. The losses are accumulated in double: the per-row
// (or per-chunk) partials go to a caller-owned buffer that loss.cpp adds up in index order, so
// the result does not depend on the thread count or on which thread ran which row.
// Scratch buffers come from the caller: a std::vector instantiated here would be a template shared
// between the ISA variants (see cpu_dispatch.hpp).
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including loss_kernels.hpp"
#endif

#include <cmath>
#include <cstdint>
#include <limits>

#include <omp.h>

#include "gradwatch/threads.hpp"
#include "vecmath.hpp"

namespace gradwatch {
namespace GW_ISA {

// Elements per chunk of the elementwise losses: the unit of the fixed-order reduction.
constexpr int64_t kChunk = 8192;

// body(i) for i in [begin, end) on a local copy of the closure, whose captured scalars then
// stay in registers (see optim_kernels.hpp). Not inlined: the serial and the parallel path run
// this one compiled loop, so each index meets the same instructions (and GCC's contraction of
// multiply-adds the same choices) on any thread count; two inlined copies gave the AVX-512 build
// losses that differed in the last bits between 1 and 2 threads.
template <typename Body>
GW_NOINLINE void run_indices(const Body& body, int64_t begin, int64_t end) {
  const Body local = body;
  for (int64_t i = begin; i < end; ++i) local(i);
}

// Runs body(i) for i in [0, count) on threads_for(work) threads, each taking one contiguous
// range. One thread, or a call from inside a parallel region (gradwatch::Network's step), opens
// no region: libgomp allocates a team for every region, even of one thread, and a training step
// allocates nothing.
template <typename Body>
inline void for_each_index(int64_t count, int64_t work, const Body& body) {
  const int threads = threads_for(work);
  if (threads <= 1 || omp_in_parallel()) {
    run_indices(body, 0, count);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t teams = omp_get_num_threads(), id = omp_get_thread_num();
    run_indices(body, count * id / teams, count * (id + 1) / teams);
  }
}

// The largest entry of a row, -inf for a row of -inf. NaN entries are skipped here; they reach
// the output through exp(NaN - max) = NaN in the sum.
template <typename T>
inline T row_max(const T* x, int64_t C) {
  T largest = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : largest)
  for (int64_t c = 0; c < C; ++c) largest = x[c] > largest ? x[c] : largest;
  return largest;
}

// e = exp(x - shift) for one row; returns sum(e) in double.
// A +inf in x gives inf - inf = NaN (as PyTorch); a row of -inf gives -inf - -inf = NaN.
template <typename T>
inline double exp_shifted(T* e, const T* x, T shift, int64_t C) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < C; ++c) {
    const T value = vexp(x[c] - shift);
    e[c] = value;
    sum += static_cast<double>(value);
  }
  return sum;
}

// sum(exp(x - shift)) for one row, in double, without storing the exponentials.
template <typename T>
inline double exp_shifted_sum(const T* x, T shift, int64_t C) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t c = 0; c < C; ++c) sum += static_cast<double>(vexp(x[c] - shift));
  return sum;
}

template <typename T>
inline void scale_row(T* y, T factor, int64_t C) {
#pragma omp simd
  for (int64_t c = 0; c < C; ++c) y[c] *= factor;
}

// y, x: (N, C)
template <typename T>
void softmax(T* y, const T* x, int64_t N, int64_t C) {
  for_each_index(N, N * C, [=](int64_t n) {
    const T* row = x + n * C;
    T* out = y + n * C;
    const T shift = row_max(row, C);
    const double sum = exp_shifted(out, row, shift, C);
    scale_row(out, static_cast<T>(1.0 / sum), C);
  });
}

// y, x: (N, C)
template <typename T>
void log_softmax(T* y, const T* x, int64_t N, int64_t C) {
  for_each_index(N, N * C, [=](int64_t n) {
    const T* row = x + n * C;
    T* out = y + n * C;
    const T shift = row_max(row, C);
    const T log_sum = static_cast<T>(std::log(exp_shifted_sum(row, shift, C)));
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) out[c] = (row[c] - shift) - log_sum;
  });
}

// Rows shorter than this (10 classes, say) leave a row's vectorised exp loop no full vector: its
// scalar remainder then computed every exp (18 us of a 100 x 10 loss on AVX-512). Such rows go
// in groups of kShortRowGroup, whose exponentials are one contiguous vectorised loop.
constexpr int64_t kShortRow = 32;
constexpr int64_t kShortRowGroup = 16;

// row_loss[n] = log(sum_c exp(x[n, c] - max_n)) - (x[n, labels[n]] - max_n); labels checked by
// the caller. dlogits = (softmax - onehot) / N.
// dlogits, logits: (N, C)  row_loss, labels: (N)
template <typename T>
void softmax_cross_entropy_indices(T* dlogits, double* row_loss, const T* logits,
                                   const int64_t* labels, int64_t N, int64_t C) {
  const double inv_batch = 1.0 / static_cast<double>(N);
  if (C < kShortRow) {
    // Groups fixed by N, so every element meets the same loop position on any thread count.
    const int64_t groups = (N + kShortRowGroup - 1) / kShortRowGroup;
    for_each_index(groups, N * C, [=](int64_t g) {
      const int64_t r0 = g * kShortRowGroup;
      const int64_t r1 = r0 + kShortRowGroup < N ? r0 + kShortRowGroup : N;
      T shifts[kShortRowGroup];
      for (int64_t n = r0; n < r1; ++n) {
        const T* row = logits + n * C;
        T* grad = dlogits + n * C;
        const T shift = row_max(row, C);
        shifts[n - r0] = shift;
        for (int64_t c = 0; c < C; ++c) grad[c] = row[c] - shift;
      }
      T* block = dlogits + r0 * C;
      const int64_t count = (r1 - r0) * C;
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) block[i] = vexp(block[i]);
      for (int64_t n = r0; n < r1; ++n) {
        const T* row = logits + n * C;
        T* grad = dlogits + n * C;
        const int64_t label = labels[n];
        const T shift = shifts[n - r0];
        double sum = 0.0;
        for (int64_t c = 0; c < C; ++c) sum += static_cast<double>(grad[c]);
        row_loss[n] = std::log(sum) - (static_cast<double>(row[label]) - static_cast<double>(shift));
        const double inv_sum_batch = inv_batch / sum;
        const T exp_label = grad[label];
        const T factor = static_cast<T>(inv_sum_batch);
        for (int64_t c = 0; c < C; ++c) grad[c] *= factor;
        grad[label] = static_cast<T>(static_cast<double>(exp_label) * inv_sum_batch - inv_batch);
      }
    });
    return;
  }
  for_each_index(N, N * C, [=](int64_t n) {
    const T* row = logits + n * C;
    T* grad = dlogits + n * C;
    const int64_t label = labels[n];
    const T shift = row_max(row, C);
    const double sum = exp_shifted(grad, row, shift, C);
    // The label's logit minus the max in double: no float32 rounding, no overflow for any spread.
    row_loss[n] = std::log(sum) - (static_cast<double>(row[label]) - static_cast<double>(shift));
    const double inv_sum_batch = inv_batch / sum;
    const T exp_label = grad[label];
    scale_row(grad, static_cast<T>(inv_sum_batch), C);
    grad[label] = static_cast<T>(static_cast<double>(exp_label) * inv_sum_batch - inv_batch);
  });
}

// row_loss[n] = sum_c probs[n, c] (log(sum_k exp(x[n, k] - max_n)) - (x[n, c] - max_n)),
// dlogits = (softmax * sum_c probs[n, c] - probs) / N. A NaN in probs makes row_loss[n] NaN.
// dlogits, logits, probs: (N, C)  row_loss: (N)
template <typename T>
void softmax_cross_entropy_probs(T* dlogits, double* row_loss, const T* logits, const T* probs,
                                 int64_t N, int64_t C) {
  const double inv_batch = 1.0 / static_cast<double>(N);
  for_each_index(N, N * C, [=](int64_t n) {
    const T* row = logits + n * C;
    const T* target = probs + n * C;
    T* grad = dlogits + n * C;
    const T shift = row_max(row, C);
    const double shift_wide = static_cast<double>(shift);
    double sum = 0.0, mass = 0.0, weighted_shifted = 0.0;
#pragma omp simd reduction(+ : sum, mass, weighted_shifted)
    for (int64_t c = 0; c < C; ++c) {
      const T value = vexp(row[c] - shift);
      grad[c] = value;
      sum += static_cast<double>(value);
      const double p = static_cast<double>(target[c]);
      mass += p;
      // p (x - max) in double: no overflow of x - max in float32, and 0 * -inf = NaN as PyTorch.
      weighted_shifted += p * (static_cast<double>(row[c]) - shift_wide);
    }
    row_loss[n] = std::log(sum) * mass - weighted_shifted;
    const T exp_factor = static_cast<T>(mass * inv_batch / sum);
    const T prob_factor = static_cast<T>(inv_batch);
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) grad[c] = grad[c] * exp_factor - target[c] * prob_factor;
  });
}

// 2 atanh(s) = log((1 + s) / (1 - s)) for |s| <= 1/5, by its series 2 (s + s^3/3 + s^5/5 + ...):
// the first omitted term is below 1e-8 (float) and 1e-18 (double) relative.
inline float two_atanh(float s) {
  const float s2 = s * s;
  float p = 2.0f / 9.0f;
  p = p * s2 + 2.0f / 7.0f;
  p = p * s2 + 2.0f / 5.0f;
  p = p * s2 + 2.0f / 3.0f;
  return 2.0f * s + s * s2 * p;
}
inline double two_atanh(double s) {
  const double s2 = s * s;
  double p = 2.0 / 23.0;
  p = p * s2 + 2.0 / 21.0;
  p = p * s2 + 2.0 / 19.0;
  p = p * s2 + 2.0 / 17.0;
  p = p * s2 + 2.0 / 15.0;
  p = p * s2 + 2.0 / 13.0;
  p = p * s2 + 2.0 / 11.0;
  p = p * s2 + 2.0 / 9.0;
  p = p * s2 + 2.0 / 7.0;
  p = p * s2 + 2.0 / 5.0;
  p = p * s2 + 2.0 / 3.0;
  return 2.0 * s + s * s2 * p;
}

// partials[k] = sum over chunk k of max(x, 0) - x t + log1p(exp(-|x|)); dx = (sigmoid(x) - t) / E.
// A NaN target makes its chunk's partial NaN.
// log1p(e) and sigmoid(|x|) = 1 / (1 + e), e = exp(-|x|) in (0, 1], share one division, and
// log1p needs no int-to-float conversion of an exponent (vlog<double> has one, which AVX2 lacks
// for 64-bit integers, so GCC leaves a loop calling it scalar): 1 + e = 2^k (1 + f) with
// k = 0, f = e for e < 1/2 (f exact) and k = 1, f = (e - 1) / 2 otherwise (e - 1 exact), then
// log1p(e) = k ln 2 + 2 atanh(f / (2 + f)), |f / (2 + f)| <= 1/5.
// dx, x, targets: (E)  partials: (K) = ceil(E / kChunk)
template <typename T>
void binary_cross_entropy_with_logits(T* dx, double* partials, const T* x, const T* targets,
                                      int64_t E) {
  const int64_t chunks = (E + kChunk - 1) / kChunk;
  const T inv_count = static_cast<T>(1.0 / static_cast<double>(E));
  const T one = static_cast<T>(1), two = static_cast<T>(2), three = static_cast<T>(3);
  const T half = static_cast<T>(0.5), zero = static_cast<T>(0);
  const T ln2 = static_cast<T>(0.693147180559945309417);
  for_each_index(chunks, E, [=](int64_t k) {
    const int64_t begin = k * kChunk;
    const int64_t end = begin + kChunk < E ? begin + kChunk : E;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = begin; i < end; ++i) {
      const T v = x[i];
      const T t = targets[i];
      const T decay = vexp(v < 0 ? v : -v);
      const bool upper = decay >= half;
      // s = f / (2 + f): e / (2 + e) for k = 0, (e - 1) / (3 + e) for k = 1.
      const T numerator = upper ? decay - one : decay;
      const T denominator = (upper ? three : two) + decay;
      const T one_plus_decay = one + decay;
      const T reciprocal = one / (one_plus_decay * denominator);
      const T s = numerator * one_plus_decay * reciprocal;
      const T log1p_decay = (upper ? ln2 : zero) + two_atanh(s);
      // max(x, 0) - x t as x (1 - t) or -x t: one rounding, no cancellation of x against x t.
      const T linear = v > 0 ? v * (one - t) : -v * t;
      sum += static_cast<double>(linear + log1p_decay);
      const T sigmoid_abs = denominator * reciprocal;  // 1 / (1 + e)
      const T sigmoid = v >= 0 ? sigmoid_abs : decay * sigmoid_abs;
      dx[i] = (sigmoid - t) * inv_count;
    }
    partials[k] = sum;
  });
}

// partials[k] = sum over chunk k of (pred - target)^2; dpred = 2 (pred - target) / E.
// A NaN target makes its chunk's partial NaN.
// dpred, pred, target: (E)  partials: (K) = ceil(E / kChunk)
template <typename T>
void mse(T* dpred, double* partials, const T* pred, const T* target, int64_t E) {
  const int64_t chunks = (E + kChunk - 1) / kChunk;
  const T two_over_count = static_cast<T>(2.0 / static_cast<double>(E));
  for_each_index(chunks, E, [=](int64_t k) {
    const int64_t begin = k * kChunk;
    const int64_t end = begin + kChunk < E ? begin + kChunk : E;
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = begin; i < end; ++i) {
      const T diff = pred[i] - target[i];
      const double wide = static_cast<double>(diff);
      sum += wide * wide;
      dpred[i] = diff * two_over_count;
    }
    partials[k] = sum;
  });
}

}  // namespace GW_ISA
}  // namespace gradwatch

// Explicit instantiations of every kernel for one T, inside the including file's GW_ISA namespace.
#define GRADWATCH_INSTANTIATE_LOSS_KERNELS(T)                                                     \
  template void softmax<T>(T*, const T*, int64_t, int64_t);                                       \
  template void log_softmax<T>(T*, const T*, int64_t, int64_t);                                   \
  template void softmax_cross_entropy_indices<T>(T*, double*, const T*, const int64_t*, int64_t,  \
                                                 int64_t);                                        \
  template void softmax_cross_entropy_probs<T>(T*, double*, const T*, const T*, int64_t, int64_t); \
  template void binary_cross_entropy_with_logits<T>(T*, double*, const T*, const T*, int64_t);    \
  template void mse<T>(T*, double*, const T*, const T*, int64_t);
