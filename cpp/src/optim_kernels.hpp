// Kernel bodies of gradwatch/optim.hpp, compiled once per ISA (see gradwatch/cpu_dispatch.hpp).
// Dims: E = elements of one tensor, K = chunks of kOptimChunk elements.
//
// Each kernel updates chunks [chunk_begin, chunk_end) of one tensor in one pass, on the calling
// thread: it reads the gradient, scales and clamps it (the clipping of the training step), and
// writes the parameter and the state buffers it owns. Elements are independent, so any split of
// the chunks over threads (Optimizer::step's) gives the same bits. Options that decide
// which buffers exist are branches outside the loop (a null buffer is never touched); the others
// are branch-free selects inside it, so that a skipped term (weight decay 0) is really skipped,
// as in PyTorch (0 * inf would be NaN), without stopping vectorisation.
// NaN in the gradient or the state gives NaN out: no comparison drops it.
// Each kernel's last argument, norms (null: off), asks for the chunk sums of ||p||^2 before and
// of ||p_after - p_before||^2 (see for_each_update).
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including optim_kernels.hpp"
#endif

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "reductions.hpp"  // double_sum_of_squares
#include "vecmath.hpp"       // GW_NOINLINE

namespace gradwatch {
namespace GW_ISA {

// Elements per chunk of an update and of the LARS norms: the unit of their split over threads
// and of the norms' fixed-order reduction.
constexpr int64_t kOptimChunk = 8192;
// Elements per block of the float lane norms (update_chunk_with_norms), summed in block order.
constexpr int64_t kNormBlock = 1024;

// The float sums of squares of a block are trusted inside [kNormSquaresLow, kNormSquaresHigh]:
// there no term overflows and the terms lost to float underflow are negligible.
constexpr double kNormSquaresLow = 1e-30;
constexpr double kNormSquaresHigh = 1e30;

inline bool norm_squares_trusted(double squares) {
  return squares >= kNormSquaresLow && squares <= kNormSquaresHigh;
}

// body(i) for i in [begin, end), one vectorised loop on a local copy of the closure: the captured
// scalars are then locals that no store through a parameter pointer can alias, so GCC keeps them
// in registers and vectorises the selects in the bodies. Not inlined: the serial and the parallel
// path run this one compiled loop on the same fixed chunks, so each element meets the same
// instructions (and GCC's contraction of multiply-adds the same choices) on any thread count.
template <typename Body>
GW_NOINLINE void run_elements(const Body& body, int64_t begin, int64_t end) {
  const Body local = body;
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) local(i);
}

// body(k), not inlined, for a chunk's loop that the serial and the parallel path must run as one
// compiled copy (see run_elements).
template <typename Body>
GW_NOINLINE void run_compiled_once(const Body& body, int64_t k) {
  body(k);
}

// Runs body(i) for the elements of chunks [chunk_begin, chunk_end) of kOptimChunk elements of a
// tensor of E, on the calling thread (the caller shares chunks out: Optimizer::step).
template <typename Body>
inline void for_each_element(int64_t E, int64_t chunk_begin, int64_t chunk_end, const Body& body) {
  for (int64_t k = chunk_begin; k < chunk_end; ++k) {
    const int64_t end = (k + 1) * kOptimChunk;
    run_elements(body, k * kOptimChunk, end < E ? end : E);
  }
}

// Chunk k of for_each_update with norms (see there); one compiled copy, as run_elements.
// A float tensor of one chunk is summed in float lanes, a larger one in double lanes. Measured on
// AVX-512 (bench_telemetry's (a) and (d)): the lane sums with their buffer of old values cost 4x
// the plain update on tensors of several chunks (784 x 100 and 100 x 100 weights), the double
// sums (a conversion per value) 2x on any tensor. Chosen by size, never by thread count: the bits
// stay the same on any.
// param: (E)  norms: (2 K)
template <typename T, typename Body>
GW_NOINLINE void update_chunk_with_norms(const Body& body, T* param, double* norms, int64_t E,
                                         int64_t k) {
  const Body local = body;  // a local copy: see run_elements
  const int64_t begin = k * kOptimChunk;
  const int64_t end = begin + kOptimChunk < E ? begin + kOptimChunk : E;
  double before_squares = 0.0, change_squares = 0.0;
  if (!std::is_same_v<T, float> || E <= kOptimChunk) {
    T old_values[kNormBlock];
    for (int64_t first = begin; first < end; first += kNormBlock) {
      const int64_t n = end - first < kNormBlock ? end - first : kNormBlock;
      T* p = param + first;
      // In T's lanes; for float, trusted inside [kNormSquaresLow, kNormSquaresHigh], and a block
      // outside it (zero, tiny, huge, NaN) is summed again in double from the old values (kept
      // in old_values, in L1) and the new. change is after - before rounded to T: its relative
      // error (2^-24 in float) is as small as that of the sums.
      T before = 0, change = 0;
#pragma omp simd reduction(+ : before, change)
      for (int64_t j = 0; j < n; ++j) {
        const T old = p[j];
        const T updated = local(first + j);
        old_values[j] = old;
        p[j] = updated;
        const T difference = updated - old;
        before += old * old;
        change += difference * difference;
      }
      double block_before = static_cast<double>(before);
      double block_change = static_cast<double>(change);
      if (std::is_same_v<T, float> &&
          !(norm_squares_trusted(block_before) && norm_squares_trusted(block_change))) {
        block_before = double_sum_of_squares(old_values, n);
        block_change = 0.0;
#pragma omp simd reduction(+ : block_change)
        for (int64_t j = 0; j < n; ++j) {
          const double difference =
              static_cast<double>(p[j]) - static_cast<double>(old_values[j]);
          block_change += difference * difference;
        }
      }
      before_squares += block_before;
      change_squares += block_change;
    }
  } else {
    // In double lanes, where a float's square neither overflows nor underflows: no range needs
    // summing again. The chunk's two halves side by side, with sums of their own: four chains
    // of additions, whose latency (not the arithmetic) limits a single pair.
    const int64_t half = (end - begin) / 2, middle = begin + half;
    double before0 = 0.0, change0 = 0.0, before1 = 0.0, change1 = 0.0;
    const auto update = [&](int64_t i, double& before_sum, double& change_sum) {
      const T old = param[i];
      const T updated = local(i);
      param[i] = updated;
      const double before = static_cast<double>(old);
      const double change = static_cast<double>(updated) - before;
      before_sum += before * before;
      change_sum += change * change;
    };
#pragma omp simd reduction(+ : before0, change0, before1, change1)
    for (int64_t j = 0; j < half; ++j) {
      update(begin + j, before0, change0);
      update(middle + j, before1, change1);
    }
    if (middle + half < end) update(end - 1, before0, change0);  // the last of an odd count
    before_squares = before0 + before1;
    change_squares = change0 + change1;
  }
  norms[2 * k] = before_squares;
  norms[2 * k + 1] = change_squares;
}

// param[i] = body(i) for the elements of chunks [chunk_begin, chunk_end) (the body returns the
// new value and writes the state it owns), as for_each_element. With norms (2 K) non-null, also norms[2k] =
// the sum of param^2 before the update and norms[2k + 1] = the sum of (after - before)^2 over
// chunk k of kOptimChunk elements (telemetry's ||W|| and ||W_after - W_before||);
// the caller adds the chunks in index order, so the sums have the same bits on any number of
// threads. The bodies must branch on their options at compile time (with_flags): GCC vectorises
// the update and the sums as one loop only then (it does not unswitch a runtime option inside a
// loop with reductions).
// param: (E)  norms: (2 K)
template <typename T, typename Body>
inline void for_each_update(int64_t E, int64_t chunk_begin, int64_t chunk_end, const Body& body,
                            T* param, double* norms) {
  if (norms == nullptr) {
    for_each_element(E, chunk_begin, chunk_end, [=](int64_t i) { param[i] = body(i); });
    return;
  }
  for (int64_t k = chunk_begin; k < chunk_end; ++k) {
    update_chunk_with_norms(body, param, norms, E, k);
  }
}

// f(std::bool_constant<flags>...): the kernels' options become compile-time constants of their
// loop bodies (if constexpr), one instantiation per combination.
template <typename F>
inline void with_flags(const F& f) {
  f();
}
template <typename F, typename... Flags>
inline void with_flags(const F& f, bool flag, Flags... rest) {
  if (flag) {
    with_flags([&](auto... constants) { f(std::true_type{}, constants...); }, rest...);
  } else {
    with_flags([&](auto... constants) { f(std::false_type{}, constants...); }, rest...);
  }
}

// The clipped gradient: grad * scale clamped to [-limit, limit]; NaN passes through.
template <typename T>
inline T clipped_gradient(T grad, T scale, T limit) {
  const T g = grad * scale;
  const T above = g > limit ? limit : g;
  return above < -limit ? -limit : above;
}
// The same, with Clip false when the step does not clip (scale 1, no limit): then grad itself,
// which is what the arithmetic above gives for it, without the arithmetic.
template <typename Clip, typename T>
inline T gradient_of_step(T grad, T scale, T limit) {
  if constexpr (Clip::value) {
    return clipped_gradient(grad, scale, limit);
  } else {
    return grad;
  }
}
// Whether a step clips: clip_limit(clip_value) finite, or a scale other than 1.
template <typename T>
inline bool step_clips(T grad_scale, T clip_value) {
  return grad_scale != static_cast<T>(1) || clip_value > 0;
}

// gradient_of_step + weight_decay p (coupled weight decay), the term skipped, not multiplied by
// 0, when Decays is false (as in PyTorch: 0 * inf would be NaN).
template <typename Clip, typename Decays, typename T>
inline T decayed_gradient(T grad, T p, T scale, T limit, T weight_decay) {
  const T g = gradient_of_step<Clip>(grad, scale, limit);
  if constexpr (Decays::value) {
    return g + weight_decay * p;
  } else {
    return g;
  }
}

// clip_value <= 0 means no clamp: an infinite limit.
template <typename T>
inline T clip_limit(T clip_value) {
  return clip_value > 0 ? clip_value : std::numeric_limits<T>::infinity();
}

// PyTorch's lerp (aten/src/ATen/native/Lerp.h): a + w (b - a) for w < 1/2, b - (b - a)(1 - w)
// otherwise. `low_weight` is w < 1/2, decided once per tensor.
template <typename T>
inline T lerp(T a, T b, T w, bool low_weight) {
  const T diff = b - a;
  return low_weight ? a + w * diff : b - diff * (static_cast<T>(1) - w);
}

// p = p - rate (clip(grad) + weight_decay p): SGD and LARS without momentum.
// param, grad: (E)
template <typename T>
void plain_update(T* param, const T* grad, T rate, T weight_decay, T grad_scale, T clip_value,
                  int64_t E, int64_t chunk_begin, int64_t chunk_end, double* norms) {
  const T limit = clip_limit(clip_value);
  with_flags([&](auto clip, auto decays) {
    for_each_update(E, chunk_begin, chunk_end, [=](int64_t i) {
      const T p = param[i];
      const T d = decayed_gradient<decltype(clip), decltype(decays)>(grad[i], p, grad_scale,
                                                                     limit, weight_decay);
      return p - rate * d;
    }, param, norms);
  }, step_clips(grad_scale, clip_value), weight_decay != 0);
}

// SGD (torch.optim.SGD): g = clip(grad) + weight_decay p;
// with momentum: buf = g on the first step, else momentum buf + (1 - dampening) g;
// g = g + momentum buf (nesterov) or buf; p = p - lr g.
// Complements such as 1 - dampening come from the caller, rounded from double as PyTorch does.
// param, momentum_buffer (null when momentum = 0), grad: (E)
template <typename T>
void sgd(T* param, T* momentum_buffer, const T* grad, T lr, T momentum, T one_minus_dampening,
         T weight_decay, bool nesterov, bool first_step, T grad_scale, T clip_value, int64_t E,
         int64_t chunk_begin, int64_t chunk_end, double* norms) {
  if (momentum_buffer == nullptr) {
    plain_update(param, grad, lr, weight_decay, grad_scale, clip_value, E, chunk_begin, chunk_end, norms);
    return;
  }
  const T limit = clip_limit(clip_value);
  with_flags([&](auto clip, auto decays, auto first, auto nesterov_form) {
    for_each_update(E, chunk_begin, chunk_end, [=](int64_t i) {
      const T p = param[i];
      const T d = decayed_gradient<decltype(clip), decltype(decays)>(grad[i], p, grad_scale,
                                                                     limit, weight_decay);
      T buf = d;
      if constexpr (!decltype(first)::value) {
        buf = momentum * momentum_buffer[i] + one_minus_dampening * d;
      }
      momentum_buffer[i] = buf;
      T direction = buf;
      if constexpr (decltype(nesterov_form)::value) direction = d + momentum * buf;
      return p - lr * direction;
    }, param, norms);
  }, step_clips(grad_scale, clip_value), weight_decay != 0, first_step, nesterov);
}

// Adagrad (torch.optim.Adagrad): g = clip(grad) + weight_decay p; sum = sum + g^2;
// p = p - clr g / (sqrt(sum) + eps), clr = lr / (1 + (step - 1) lr_decay) from the caller.
// param, sum, grad: (E)
template <typename T>
void adagrad(T* param, T* sum, const T* grad, T clr, T weight_decay, T eps, T grad_scale,
             T clip_value, int64_t E, int64_t chunk_begin, int64_t chunk_end, double* norms) {
  const T limit = clip_limit(clip_value);
  with_flags([&](auto clip, auto decays) {
    for_each_update(E, chunk_begin, chunk_end, [=](int64_t i) {
      const T p = param[i];
      const T d = decayed_gradient<decltype(clip), decltype(decays)>(grad[i], p, grad_scale,
                                                                     limit, weight_decay);
      const T s = sum[i] + d * d;
      sum[i] = s;
      return p - clr * (d / (std::sqrt(s) + eps));
    }, param, norms);
  }, step_clips(grad_scale, clip_value), weight_decay != 0);
}

// RMSprop (torch.optim.RMSprop): g = clip(grad) + weight_decay p;
// square_avg = alpha square_avg + (1 - alpha) g^2;
// centered: grad_avg = lerp(grad_avg, g, 1 - alpha), avg = sqrt(square_avg - grad_avg^2) + eps;
// else avg = sqrt(square_avg) + eps;
// momentum: buf = momentum buf + g / avg, p = p - lr buf; else p = p - lr g / avg.
template <typename T, bool kMomentum, bool kCentered>
void rmsprop_loop(T* param, T* square_avg, T* momentum_buffer, T* grad_avg, const T* grad, T lr,
                  T alpha, T one_minus_alpha, T eps, T weight_decay, T momentum, T grad_scale,
                  T clip_value, int64_t E, int64_t chunk_begin, int64_t chunk_end, double* norms) {
  const T limit = clip_limit(clip_value);
  const T rest = one_minus_alpha;
  // lerp's weight test matters only when centered: one instantiation less otherwise.
  const bool low_weight = kCentered && rest < static_cast<T>(0.5);
  with_flags([&](auto clip, auto decays, auto low) {
    for_each_update(E, chunk_begin, chunk_end, [=](int64_t i) {
      const T p = param[i];
      const T d = decayed_gradient<decltype(clip), decltype(decays)>(grad[i], p, grad_scale,
                                                                     limit, weight_decay);
      const T sq = alpha * square_avg[i] + rest * (d * d);
      square_avg[i] = sq;
      T variance = sq;
      if constexpr (kCentered) {
        const T mean = lerp(grad_avg[i], d, rest, decltype(low)::value);
        grad_avg[i] = mean;
        variance = sq - mean * mean;
      }
      const T avg = std::sqrt(variance) + eps;
      if constexpr (kMomentum) {
        const T buf = momentum * momentum_buffer[i] + d / avg;
        momentum_buffer[i] = buf;
        return p - lr * buf;
      } else {
        return p - lr * (d / avg);
      }
    }, param, norms);
  }, step_clips(grad_scale, clip_value), weight_decay != 0, low_weight);
}

// param, square_avg, grad: (E)  momentum_buffer (null when momentum = 0), grad_avg (null unless
// centered): (E)
template <typename T>
void rmsprop(T* param, T* square_avg, T* momentum_buffer, T* grad_avg, const T* grad, T lr, T alpha,
             T one_minus_alpha, T eps, T weight_decay, T momentum, T grad_scale, T clip_value,
             int64_t E, int64_t chunk_begin, int64_t chunk_end, double* norms) {
  const bool with_momentum = momentum_buffer != nullptr, centered = grad_avg != nullptr;
  auto loop = with_momentum
                  ? (centered ? &rmsprop_loop<T, true, true> : &rmsprop_loop<T, true, false>)
                  : (centered ? &rmsprop_loop<T, false, true> : &rmsprop_loop<T, false, false>);
  loop(param, square_avg, momentum_buffer, grad_avg, grad, lr, alpha, one_minus_alpha, eps,
       weight_decay, momentum, grad_scale, clip_value, E, chunk_begin, chunk_end, norms);
}

// Adam / AdamW (torch.optim.Adam, AdamW): p = p * param_factor (AdamW: 1 - lr weight_decay;
// skipped when decoupled is false); g = clip(grad) + weight_decay p (Adam's coupled decay: the
// caller passes 0 for AdamW); exp_avg = lerp(exp_avg, g, 1 - beta1);
// exp_avg_sq = beta2 exp_avg_sq + (1 - beta2) g^2;
// p = p - step_size exp_avg / (sqrt(exp_avg_sq) / bias_correction2_sqrt + eps), with
// step_size = lr / (1 - beta1^t) and bias_correction2_sqrt = sqrt(1 - beta2^t) from the caller.
// param, exp_avg, exp_avg_sq, grad: (E)
template <typename T>
void adam(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, T step_size, T one_minus_beta1,
          T beta2, T one_minus_beta2, T bias_correction2_sqrt, T eps, T weight_decay,
          T param_factor, bool decoupled, T grad_scale, T clip_value, int64_t E, int64_t chunk_begin, int64_t chunk_end, double* norms) {
  const T limit = clip_limit(clip_value);
  const T weight1 = one_minus_beta1;
  const T rest2 = one_minus_beta2;
  with_flags([&](auto clip, auto decays, auto decoupled_decay, auto low) {
    for_each_update(E, chunk_begin, chunk_end, [=](int64_t i) {
      T p = param[i];
      if constexpr (decltype(decoupled_decay)::value) p = p * param_factor;
      const T d = decayed_gradient<decltype(clip), decltype(decays)>(grad[i], p, grad_scale,
                                                                     limit, weight_decay);
      const T m = lerp(exp_avg[i], d, weight1, decltype(low)::value);
      const T v = beta2 * exp_avg_sq[i] + rest2 * (d * d);
      exp_avg[i] = m;
      exp_avg_sq[i] = v;
      const T denom = std::sqrt(v) / bias_correction2_sqrt + eps;
      return p - step_size * (m / denom);
    }, param, norms);
  }, step_clips(grad_scale, clip_value), weight_decay != 0, decoupled,
     weight1 < static_cast<T>(0.5));
}

// LARS, first pass: partials[2k] = sum of p^2 and partials[2k + 1] = sum of clip(grad)^2 over
// chunk k in [chunk_begin, chunk_end), in double; the caller adds the chunks in index order.
// param, grad: (E)  partials: (2 K) = 2 ceil(E / kOptimChunk)
template <typename T>
void lars_partial_norms(double* partials, const T* param, const T* grad, T grad_scale, T clip_value,
                        int64_t E, int64_t chunk_begin, int64_t chunk_end) {
  const T limit = clip_limit(clip_value);
  const auto chunk_sums = [=](int64_t k) {
    const int64_t begin = k * kOptimChunk;
    const int64_t end = begin + kOptimChunk < E ? begin + kOptimChunk : E;
    double param_squares = 0.0, grad_squares = 0.0;
#pragma omp simd reduction(+ : param_squares, grad_squares)
    for (int64_t i = begin; i < end; ++i) {
      const double p = static_cast<double>(param[i]);
      const double g = static_cast<double>(clipped_gradient(grad[i], grad_scale, limit));
      param_squares += p * p;
      grad_squares += g * g;
    }
    partials[2 * k] = param_squares;
    partials[2 * k + 1] = grad_squares;
  };
  for (int64_t k = chunk_begin; k < chunk_end; ++k) run_compiled_once(chunk_sums, k);
}

// LARS, second pass, with the layer's rate from the caller (lr * local_lr, or min(lr, local_lr)
// in clip mode, or lr for an excluded tensor, whose weight_decay is then 0):
// d = clip(grad) + weight_decay p; with momentum: v = momentum v + rate d, p = p - v;
// without: p = p - rate d.
// param, momentum_buffer (null when momentum = 0), grad: (E)
template <typename T>
void lars(T* param, T* momentum_buffer, const T* grad, T rate, T momentum, T weight_decay,
          T grad_scale, T clip_value, int64_t E, int64_t chunk_begin, int64_t chunk_end, double* norms) {
  if (momentum_buffer == nullptr) {
    plain_update(param, grad, rate, weight_decay, grad_scale, clip_value, E, chunk_begin, chunk_end, norms);
    return;
  }
  const T limit = clip_limit(clip_value);
  with_flags([&](auto clip, auto decays) {
    for_each_update(E, chunk_begin, chunk_end, [=](int64_t i) {
      const T p = param[i];
      const T d = decayed_gradient<decltype(clip), decltype(decays)>(grad[i], p, grad_scale,
                                                                     limit, weight_decay);
      const T v = momentum * momentum_buffer[i] + rate * d;
      momentum_buffer[i] = v;
      return p - v;
    }, param, norms);
  }, step_clips(grad_scale, clip_value), weight_decay != 0);
}

}  // namespace GW_ISA
}  // namespace gradwatch

// Explicit instantiations of every kernel for one T, inside the including file's GW_ISA namespace.
#define GW_OPTIM_RANGE int64_t, int64_t, int64_t  // E, chunk_begin, chunk_end
#define GRADWATCH_INSTANTIATE_OPTIM_KERNELS(T)                                                    \
  template void sgd<T>(T*, T*, const T*, T, T, T, T, bool, bool, T, T, GW_OPTIM_RANGE, double*);  \
  template void adagrad<T>(T*, T*, const T*, T, T, T, T, T, GW_OPTIM_RANGE, double*);             \
  template void rmsprop<T>(T*, T*, T*, T*, const T*, T, T, T, T, T, T, T, T, GW_OPTIM_RANGE,      \
                           double*);                                                              \
  template void adam<T>(T*, T*, T*, const T*, T, T, T, T, T, T, T, T, bool, T, T, GW_OPTIM_RANGE, \
                        double*);                                                                 \
  template void lars_partial_norms<T>(double*, const T*, const T*, T, T, GW_OPTIM_RANGE);         \
  template void lars<T>(T*, T*, const T*, T, T, T, T, T, GW_OPTIM_RANGE, double*);
