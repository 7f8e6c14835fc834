// Activation kernels, compiled once per ISA (see gradwatch/cpu_dispatch.hpp).
//
// Each activation's math exists once, as scalar inline functions that every loop calls (GCC
// inlines and vectorises them):
//   <name>_forward(x)                 f(x)
//   <name>_backward(dy, x)            dy * f'(x); the derivative is <name>_backward(1, x)
//   <name>_backward_from_output(dy, y)  dy * f'(x) from y = f(x), where that is cheaper
// Comparisons are written so that NaN falls through to the arithmetic (or is passed on
// explicitly with nan_or). Where an infinite x would meet a zero factor (gelu(-inf) =
// -inf * 0), the zero is selected explicitly, from the factor rather than from a clamp of x: a
// select on x would let GCC's jump threading duplicate the whole computation once per outcome.
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including activations_kernels.hpp"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "gradwatch/activations.hpp"
#include "gradwatch/threads.hpp"
#include "vecmath.hpp"

namespace gradwatch {
namespace GW_ISA {

// x itself when x is NaN, else value: how derivatives that are piecewise constant pass NaN on.
template <typename T>
GW_ALWAYS_INLINE T nan_or(T x, T value) {
  return x != x ? x : value;
}

// x times a factor that is 0 for x = -inf (gelu, gelu_tanh, silu), with the limit -0 there
// instead of -inf * 0 = NaN. In float -inf becomes the most negative finite number, whose bit
// pattern is one below it: an integer compare and add (any of Zen 3's four vector pipes) where
// the select on the factor is a compare and a blend, and the blend competes with the
// multiply-adds for the same two pipes. Every other x, NaN included, is kept. In double the
// factor is tested as before.
template <typename T>
GW_ALWAYS_INLINE T times_vanishing_factor(T x, T factor) {
  if constexpr (std::is_same_v<T, float>) {
    const uint32_t minus_infinity = ubits_of(-std::numeric_limits<float>::infinity());
    const uint32_t bits = ubits_of(x);
    return from_ubits<float>(bits - static_cast<uint32_t>(bits == minus_infinity)) * factor;
  } else {
    return (factor == static_cast<T>(0) ? static_cast<T>(-0.0) : x) * factor;
  }
}

// PyTorch's SELU constants (Klambauer et al. 2017): scale, and scale * alpha with
// alpha = 1.6732632423543772848170429916717, as one constant like PyTorch's negcoef.
template <typename T>
constexpr T kSeluScale = static_cast<T>(1.0507009873554804934193349852946);
template <typename T>
constexpr T kSeluScaleAlpha =
    static_cast<T>(1.0507009873554804934193349852946 * 1.6732632423543772848170429916717);

template <typename T>
constexpr T kInvSqrt2Pi = static_cast<T>(0.39894228040143267793994605993438);
template <typename T>
constexpr T kSqrt2OverPi = static_cast<T>(0.79788456080286535587989211986876);
template <typename T>
constexpr T kGeluTanhCubic = static_cast<T>(0.044715);

// ---- identity --------------------------------------------------------------------------------
template <typename T>
GW_ALWAYS_INLINE T identity_forward(T x) {
  return x;
}
template <typename T>
GW_ALWAYS_INLINE T identity_backward(T dy, T x) {
  return dy * nan_or(x, static_cast<T>(1));
}
template <typename T>
GW_ALWAYS_INLINE T identity_backward_from_output(T dy, T y) {
  return dy * nan_or(y, static_cast<T>(1));
}

// ---- sigmoid ---------------------------------------------------------------------------------
// sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) otherwise, e = exp(-|x|) <= 1: nothing
// overflows, and sigmoid(-1000) is its true (underflowing) value, not 1 / inf. With
// e = t / den (exp_quotient_nonpositive) that is den / (den + t) or t / (den + t): one division.
// sigmoid_exp and sigmoid_from_exp are the two halves, for the kinds built on sigmoid whose
// loops run them apart (see "two-loop blocks").
template <typename T>
GW_ALWAYS_INLINE ExpQuotient<T> sigmoid_exp(T x) {
  return exp_quotient_nonpositive(-std::fabs(x));
}
// The side is chosen by the sign bit of x (-0 gives t / (den + t) = 1/2 as well; NaN's e is
// NaN either way): a blend on x itself, no comparison.
template <typename T>
GW_ALWAYS_INLINE T sigmoid_from_exp(T x, ExpQuotient<T> e) {
  return (bits_of(x) < 0 ? e.t : e.den) / (e.den + e.t);
}
template <typename T>
GW_ALWAYS_INLINE T sigmoid_forward(T x) {
  return sigmoid_from_exp(x, sigmoid_exp(x));
}
// sigmoid'(x) = e / (1 + e)^2 = t den / (den + t)^2, symmetric in x: no 1 - sigmoid
// cancellation for x >> 0.
template <typename T>
GW_ALWAYS_INLINE T sigmoid_backward(T dy, T x) {
  const ExpQuotient<T> e = sigmoid_exp(x);
  const T d = e.den + e.t;
  return dy * (e.t * e.den) / (d * d);
}
template <typename T>
GW_ALWAYS_INLINE T sigmoid_backward_from_output(T dy, T y) {
  return dy * y * (static_cast<T>(1) - y);
}

// ---- tanh ------------------------------------------------------------------------------------
template <typename T>
GW_ALWAYS_INLINE T tanh_forward(T x) {
  return vtanh(x);
}
// tanh'(x) = 1 - tanh(x)^2 = 4e / (1 + e)^2 with e = exp(-2|x|) = t / den: keeps its tiny
// values where tanh rounds to +-1.
template <typename T>
GW_ALWAYS_INLINE ExpQuotient<T> tanh_exp(T x) {
  return exp_quotient_nonpositive(static_cast<T>(-2) * std::fabs(x));
}
template <typename T>
GW_ALWAYS_INLINE T tanh_backward_from_exp(T dy, ExpQuotient<T> e) {
  const T d = e.den + e.t;
  return dy * (static_cast<T>(4) * e.t * e.den) / (d * d);
}
template <typename T>
GW_ALWAYS_INLINE T tanh_backward(T dy, T x) {
  return tanh_backward_from_exp(dy, tanh_exp(x));
}
// (1 - y)(1 + y) rather than 1 - y^2: 1 - y is exact near y = 1.
template <typename T>
GW_ALWAYS_INLINE T tanh_backward_from_output(T dy, T y) {
  return dy * ((static_cast<T>(1) - y) * (static_cast<T>(1) + y));
}

// ---- relu ------------------------------------------------------------------------------------
// NaN < 0 is false, so NaN falls through; relu(-0) = -0 as in PyTorch.
template <typename T>
GW_ALWAYS_INLINE T relu_forward(T x) {
  return x < static_cast<T>(0) ? static_cast<T>(0) : x;
}
// relu'(0) = 0 (PyTorch's choice).
template <typename T>
GW_ALWAYS_INLINE T relu_backward(T dy, T x) {
  return dy * nan_or(x, x > static_cast<T>(0) ? static_cast<T>(1) : static_cast<T>(0));
}
template <typename T>
GW_ALWAYS_INLINE T relu_backward_from_output(T dy, T y) {
  return relu_backward(dy, y);  // y > 0 exactly where x > 0
}

// ---- leaky_relu ------------------------------------------------------------------------------
template <typename T>
GW_ALWAYS_INLINE T leaky_relu_forward(T x, T alpha) {
  return x < static_cast<T>(0) ? alpha * x : x;
}
// leaky_relu'(0) = alpha (PyTorch's choice).
template <typename T>
GW_ALWAYS_INLINE T leaky_relu_backward(T dy, T x, T alpha) {
  return dy * nan_or(x, x > static_cast<T>(0) ? static_cast<T>(1) : alpha);
}
// For alpha > 0 only: then y > 0 exactly where x > 0.
template <typename T>
GW_ALWAYS_INLINE T leaky_relu_backward_from_output(T dy, T y, T alpha) {
  return leaky_relu_backward(dy, y, alpha);
}

// ---- elu -------------------------------------------------------------------------------------
// elu(x) = x for x > 0, alpha expm1(x) otherwise (expm1: accurate near 0). The exponential
// sees -min(|x|, 40) (expm1 is -1 below -40), clamped on the bit pattern: with selects on x
// before the exponential GCC's jump threading would compute it once per outcome. The final
// select returns x itself at +-0 (keeping its sign) and for NaN.
template <typename T>
GW_ALWAYS_INLINE T expm1_of_negative_magnitude(T x) {
  return expm1_nonpositive_in_range(-min_of_magnitude(x, -kExpm1MinusOneBelow<T>));
}
template <typename T>
GW_ALWAYS_INLINE T elu_forward(T x, T alpha) {
  return x < static_cast<T>(0) ? alpha * expm1_of_negative_magnitude(x) : x;
}
// elu'(x) = 1 for x > 0, alpha exp(x) otherwise: elu'(0) = alpha, PyTorch's x <= 0 branch.
// exp(-|x|) is exp(x) where it is used, and passes NaN on.
template <typename T>
GW_ALWAYS_INLINE T elu_backward(T dy, T x, T alpha) {
  const T negative_slope = alpha * vexp_nonpositive(-std::fabs(x));
  return dy * (x > static_cast<T>(0) ? static_cast<T>(1) : negative_slope);
}
// For alpha > 0 only: alpha exp(x) = y + alpha where y <= 0.
template <typename T>
GW_ALWAYS_INLINE T elu_backward_from_output(T dy, T y, T alpha) {
  return dy * (y > static_cast<T>(0) ? static_cast<T>(1) : y + alpha);
}

// ---- selu ------------------------------------------------------------------------------------
// selu(x) = scale x for x > 0, scale alpha expm1(x) otherwise, scale alpha as one constant
// (at +-0 scale x, which keeps the sign); the exponentials as in elu.
template <typename T>
GW_ALWAYS_INLINE T selu_forward(T x) {
  return x < static_cast<T>(0) ? kSeluScaleAlpha<T> * expm1_of_negative_magnitude(x)
                               : kSeluScale<T> * x;
}
// selu'(0) = scale alpha (PyTorch's choice).
template <typename T>
GW_ALWAYS_INLINE T selu_backward(T dy, T x) {
  const T negative_slope = kSeluScaleAlpha<T> * vexp_nonpositive(-std::fabs(x));
  return dy * (x > static_cast<T>(0) ? kSeluScale<T> : negative_slope);
}
template <typename T>
GW_ALWAYS_INLINE T selu_backward_from_output(T dy, T y) {
  return dy * (y > static_cast<T>(0) ? kSeluScale<T> : y + kSeluScaleAlpha<T>);
}

// ---- gelu (erf form) -------------------------------------------------------------------------
// gelu(x) = x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2: the erfc form keeps the relative accuracy
// for x << 0, where 1 + erf(x / sqrt 2) would cancel. erfc(|x| / sqrt 2) / 2 is
// normal_tail_scaled(|x|) exp(-x^2 / 2), the exponential split so that x^2 / 2 is exact;
// gauss returns that exponential for gelu', whose Phi'(x) = exp(-x^2 / 2) / sqrt(2 pi).
template <typename T>
struct NormalCdf {
  T cdf;    // Phi(x)
  T gauss;  // exp(-x^2 / 2)
};
template <typename T>
GW_ALWAYS_INLINE NormalCdf<T> normal_cdf(T x) {
  NormalCdf<T> out;
  // NaN becomes kSquareZeroBeyond, so half_tail is 0 and NaN falls through to 1 - half_tail:
  // Phi(NaN) = 1, and gelu(NaN) = NaN * 1. gelu' passes NaN on explicitly.
  const T a = min_of_magnitude(x, kSquareZeroBeyond<T>);
  out.gauss = exp_minus_scaled_square_clamped(a, static_cast<T>(0.5));
  const T half_tail = normal_tail_scaled(a) * out.gauss;
  out.cdf = x <= static_cast<T>(0) ? half_tail : static_cast<T>(1) - half_tail;
  return out;
}
// No clamp of x here: a select on x would let GCC's jump threading duplicate the whole
// computation (3x slower). Where Phi(x) or exp(-x^2 / 2) is 0, the product
// with x is taken as -0 or 0 directly, which is the limit also for x = -inf and +inf.
template <typename T>
GW_ALWAYS_INLINE T gelu_forward(T x) {
  const T cdf = normal_cdf(x).cdf;
  return times_vanishing_factor(x, cdf);
}
// gelu'(x) = Phi(x) + x Phi'(x).
template <typename T>
GW_ALWAYS_INLINE T gelu_backward(T dy, T x) {
  const NormalCdf<T> normal = normal_cdf(x);
  const T density_term =
      normal.gauss == static_cast<T>(0) ? static_cast<T>(0) : x * (normal.gauss * kInvSqrt2Pi<T>);
  return nan_or(x, dy * (normal.cdf + density_term));
}

// ---- gelu_tanh -------------------------------------------------------------------------------
// gelu_tanh(x) = x (1 + tanh(u)) / 2 = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the
// sigmoid form has no 1 + tanh cancellation for x << 0.
// In float as x (2 sqrt(2/pi) + (2 sqrt(2/pi) 0.044715) x^2): a multiply, a multiply-add and a
// multiply, one instruction fewer (the forward pass is ~20% faster).
template <typename T>
GW_ALWAYS_INLINE T gelu_tanh_two_u(T x) {
  constexpr T kLinear = static_cast<T>(2) * kSqrt2OverPi<T>;
  if constexpr (std::is_same_v<T, float>) {
    constexpr float kCubic = kLinear * kGeluTanhCubic<float>;
    return x * (kLinear + kCubic * (x * x));
  } else {
    return kLinear * x * (static_cast<T>(1) + kGeluTanhCubic<T> * x * x);
  }
}
// Like gelu: no clamp of x; where sigmoid or its derivative is 0, the product with x (or x^3)
// is taken as 0 directly, also for infinite x. In float x times sigmoid's numerator, then the
// division: the product is taken while the denominator is summed.
template <typename T>
GW_ALWAYS_INLINE T gelu_tanh_forward(T x) {
  if constexpr (std::is_same_v<T, float>) {
    const float v = gelu_tanh_two_u(x);
    const ExpQuotient<float> e = sigmoid_exp(v);
    const float num = bits_of(v) < 0 ? e.t : e.den;
    return times_vanishing_factor(x, num) / (e.den + e.t);
  } else {
    const T sig = sigmoid_forward(gelu_tanh_two_u(x));
    return times_vanishing_factor(x, sig);
  }
}
// gelu_tanh'(x) = sigmoid(2u) + x sigmoid'(2u) 2u'(x),
// 2u'(x) = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2). Split into the exponential (gelu_tanh_exp) and
// the rest, which backward_loop runs as two loops (see "two-loop blocks").
template <typename T>
GW_ALWAYS_INLINE ExpQuotient<T> gelu_tanh_exp(T x) {
  return exp_quotient_nonpositive(-std::fabs(gelu_tanh_two_u(x)));
}
template <typename T>
GW_ALWAYS_INLINE T gelu_tanh_backward_from_exp(T dy, T x, ExpQuotient<T> e) {
  const T v = gelu_tanh_two_u(x);
  const T inverse = static_cast<T>(1) / (e.den + e.t);
  const T sig = (v >= static_cast<T>(0) ? e.den : e.t) * inverse;
  const T dsig = (e.t * e.den) * inverse * inverse;
  const T dv = (static_cast<T>(2) * kSqrt2OverPi<T>) *
               (static_cast<T>(1) + static_cast<T>(3) * kGeluTanhCubic<T> * (x * x));
  const T slope_term = dsig == static_cast<T>(0) ? static_cast<T>(0) : x * dsig * dv;
  return dy * (sig + slope_term);
}
template <typename T>
GW_ALWAYS_INLINE T gelu_tanh_backward(T dy, T x) {
  return gelu_tanh_backward_from_exp(dy, x, gelu_tanh_exp(x));
}

// ---- silu ------------------------------------------------------------------------------------
// In float x times sigmoid's numerator, then the division (as in gelu_tanh): the product is
// taken while the denominator is summed, a shorter chain (~3% faster).
template <typename T>
GW_ALWAYS_INLINE T silu_forward(T x) {
  if constexpr (std::is_same_v<T, float>) {
    const ExpQuotient<float> e = sigmoid_exp(x);
    const float num = bits_of(x) < 0 ? e.t : e.den;
    return times_vanishing_factor(x, num) / (e.den + e.t);
  } else {
    const T sig = sigmoid_forward(x);
    return times_vanishing_factor(x, sig);  // silu(-inf) = -0
  }
}
// silu'(x) = sigmoid(x) + x sigmoid'(x), split like gelu_tanh' (the exponential is sigmoid's).
template <typename T>
GW_ALWAYS_INLINE T silu_backward_from_exp(T dy, T x, ExpQuotient<T> e) {
  const T inverse = static_cast<T>(1) / (e.den + e.t);
  const T sig = (x >= static_cast<T>(0) ? e.den : e.t) * inverse;
  const T dsig = (e.t * e.den) * inverse * inverse;
  return dy * (sig + (dsig == static_cast<T>(0) ? static_cast<T>(0) : x * dsig));
}
template <typename T>
GW_ALWAYS_INLINE T silu_backward(T dy, T x) {
  return silu_backward_from_exp(dy, x, sigmoid_exp(x));
}

// ---- softplus --------------------------------------------------------------------------------
// softplus(x) = max(x, 0) + log1p(exp(-|x|)): softplus(1000) = 1000, softplus(-1000) = its
// true tiny value (0 after underflow). A NaN x reaches the log1p term. exp(-|x|) is in [0, 1],
// where vlog1p_unit is enough. Split like gelu_tanh', for forward_loop.
template <typename T>
GW_ALWAYS_INLINE T softplus_exp(T x) {
  return vexp_nonpositive(-std::fabs(x));
}
// In float log1p(e) = 2 atanh(s) = 2s + s z R(z), s = e / (2 + e) in [0, 1/3], z = s^2 <= 1/9,
// R the series 2/3 + 2z/5 + ... + 2z^5/13 (truncated below 1.5e-8 relative): a division and
// eight multiplies and multiply-adds where vlog1p_unit takes a dozen and two blends (~15%
// faster). Largest error of softplus 3.6 ulp against long double on [-20, 20], 2.7 with
// vlog1p_unit: the rounding of 2 + e passes into s.
template <typename T>
GW_ALWAYS_INLINE T softplus_forward_from_exp(T x, T e) {
  const T positive_part = x > static_cast<T>(0) ? x : static_cast<T>(0);
  if constexpr (std::is_same_v<T, float>) {
    static constexpr float kSeries[] = {
        2.0f / 3.0f, 2.0f / 5.0f, 2.0f / 7.0f, 2.0f / 9.0f, 2.0f / 11.0f, 2.0f / 13.0f,
    };
    const float s = e / (2.0f + e);
    const float z = s * s;
    return positive_part + (s * (z * horner_scaled(z, kSeries, 1.0f)) + (s + s));
  } else {
    return positive_part + vlog1p_unit(e);
  }
}
template <typename T>
GW_ALWAYS_INLINE T softplus_forward(T x) {
  return softplus_forward_from_exp(x, softplus_exp(x));
}
template <typename T>
GW_ALWAYS_INLINE T softplus_backward_from_exp(T dy, T x, ExpQuotient<T> e) {
  return dy * sigmoid_from_exp(x, e);
}
template <typename T>
GW_ALWAYS_INLINE T softplus_backward(T dy, T x) {
  return softplus_backward_from_exp(dy, x, sigmoid_exp(x));
}

// ---- one element, by kind -------------------------------------------------------------------
template <Activation kKind, typename T>
GW_ALWAYS_INLINE T forward_element(T x, T alpha) {
  if constexpr (kKind == Activation::identity) return identity_forward(x);
  if constexpr (kKind == Activation::sigmoid) return sigmoid_forward(x);
  if constexpr (kKind == Activation::tanh) return tanh_forward(x);
  if constexpr (kKind == Activation::relu) return relu_forward(x);
  if constexpr (kKind == Activation::leaky_relu) return leaky_relu_forward(x, alpha);
  if constexpr (kKind == Activation::elu) return elu_forward(x, alpha);
  if constexpr (kKind == Activation::selu) return selu_forward(x);
  if constexpr (kKind == Activation::gelu) return gelu_forward(x);
  if constexpr (kKind == Activation::gelu_tanh) return gelu_tanh_forward(x);
  if constexpr (kKind == Activation::silu) return silu_forward(x);
  if constexpr (kKind == Activation::softplus) return softplus_forward(x);
}

template <Activation kKind, typename T>
GW_ALWAYS_INLINE T backward_element(T dy, T x, T alpha) {
  if constexpr (kKind == Activation::identity) return identity_backward(dy, x);
  if constexpr (kKind == Activation::sigmoid) return sigmoid_backward(dy, x);
  if constexpr (kKind == Activation::tanh) return tanh_backward(dy, x);
  if constexpr (kKind == Activation::relu) return relu_backward(dy, x);
  if constexpr (kKind == Activation::leaky_relu) return leaky_relu_backward(dy, x, alpha);
  if constexpr (kKind == Activation::elu) return elu_backward(dy, x, alpha);
  if constexpr (kKind == Activation::selu) return selu_backward(dy, x);
  if constexpr (kKind == Activation::gelu) return gelu_backward(dy, x);
  if constexpr (kKind == Activation::gelu_tanh) return gelu_tanh_backward(dy, x);
  if constexpr (kKind == Activation::silu) return silu_backward(dy, x);
  if constexpr (kKind == Activation::softplus) return softplus_backward(dy, x);
}

constexpr bool has_backward_from_output(Activation kind) {
  return kind == Activation::identity || kind == Activation::sigmoid ||
         kind == Activation::tanh || kind == Activation::relu ||
         kind == Activation::leaky_relu || kind == Activation::elu || kind == Activation::selu;
}

template <Activation kKind, typename T>
GW_ALWAYS_INLINE T backward_from_output_element(T dy, T y, T alpha) {
  static_assert(has_backward_from_output(kKind), "f' of this kind is not a function of y");
  if constexpr (kKind == Activation::identity) return identity_backward_from_output(dy, y);
  if constexpr (kKind == Activation::sigmoid) return sigmoid_backward_from_output(dy, y);
  if constexpr (kKind == Activation::tanh) return tanh_backward_from_output(dy, y);
  if constexpr (kKind == Activation::relu) return relu_backward_from_output(dy, y);
  if constexpr (kKind == Activation::leaky_relu) {
    return leaky_relu_backward_from_output(dy, y, alpha);
  }
  if constexpr (kKind == Activation::elu) return elu_backward_from_output(dy, y, alpha);
  if constexpr (kKind == Activation::selu) return selu_backward_from_output(dy, y);
}

// Calls f(std::integral_constant<Activation, kind>{}): turns the run-time kind into a template
// argument, so that each loop is compiled (and vectorised) for one activation.
template <typename F>
void visit_kind(Activation kind, const F& f) {
  using A = Activation;
  switch (kind) {
    case A::identity: f(std::integral_constant<A, A::identity>{}); break;
    case A::sigmoid: f(std::integral_constant<A, A::sigmoid>{}); break;
    case A::tanh: f(std::integral_constant<A, A::tanh>{}); break;
    case A::relu: f(std::integral_constant<A, A::relu>{}); break;
    case A::leaky_relu: f(std::integral_constant<A, A::leaky_relu>{}); break;
    case A::elu: f(std::integral_constant<A, A::elu>{}); break;
    case A::selu: f(std::integral_constant<A, A::selu>{}); break;
    case A::gelu: f(std::integral_constant<A, A::gelu>{}); break;
    case A::gelu_tanh: f(std::integral_constant<A, A::gelu_tanh>{}); break;
    case A::silu: f(std::integral_constant<A, A::silu>{}); break;
    case A::softplus: f(std::integral_constant<A, A::softplus>{}); break;
  }
}

// ---- blocks ----------------------------------------------------------------------------------
// Elements per block. Blocks are the unit of parallel work, so which elements go through the
// vector body or the scalar remainder of a loop never depends on the thread count.
constexpr int64_t kActivationBlock = 4096;

// One compiled copy of a block's loop, called by the serial and the parallel path alike: inlined
// into both, GCC may compile the two differently (e.g. where a NaN's sign bit comes from), and
// the bits would then depend on the thread count.
template <typename Body>
GW_NOINLINE void run_block(const Body& body, int64_t block, int64_t n) {
  body(block * kActivationBlock, std::min(n, (block + 1) * kActivationBlock));
}

template <typename Body>
void for_each_block(int64_t n, const Body& body) {
  const int64_t blocks = (n + kActivationBlock - 1) / kActivationBlock;
  const int threads = threads_for(n);
  if (threads <= 1) {
    for (int64_t b = 0; b < blocks; ++b) run_block(body, b, n);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) run_block(body, b, n);
}

// ---- two-loop blocks -------------------------------------------------------------------------
// Where a long computation depends on an exponential (softplus' log1p; the derivatives of
// tanh, silu, gelu_tanh and softplus, a division and more after it), one loop over both makes
// each element a long chain of dependent operations, and the out-of-order core overlaps too
// few elements to keep its units busy. These kinds run a block as chunks of kStageChunk
// elements, each in two loops: the exponentials into a buffer that stays in L1, then the rest
// (measured 7-40% faster on Zen 3; no gain for sigmoid, the forward passes of silu and
// gelu_tanh, or gelu, whose erfc polynomial is the long part). The chunks lie at fixed offsets
// of the fixed blocks: the bits do not depend on the thread count. x (and dy) are still read
// once from memory, y written once.
constexpr int64_t kStageChunk = 512;
static_assert(kActivationBlock % kStageChunk == 0, "chunks must not straddle blocks");

constexpr bool has_staged_forward(Activation kind) { return kind == Activation::softplus; }
constexpr bool has_staged_backward(Activation kind) {
  return kind == Activation::tanh || kind == Activation::silu ||
         kind == Activation::gelu_tanh || kind == Activation::softplus;
}

template <Activation kKind, typename T>
GW_ALWAYS_INLINE T forward_stage(T x) {
  static_assert(has_staged_forward(kKind), "no two-loop forward for this kind");
  return softplus_exp(x);
}
template <Activation kKind, typename T>
GW_ALWAYS_INLINE T forward_from_stage(T x, T e) {
  return softplus_forward_from_exp(x, e);
}
template <Activation kKind, typename T>
GW_ALWAYS_INLINE ExpQuotient<T> backward_stage(T x) {
  static_assert(has_staged_backward(kKind), "no two-loop backward for this kind");
  if constexpr (kKind == Activation::tanh) return tanh_exp(x);
  if constexpr (kKind == Activation::silu || kKind == Activation::softplus) return sigmoid_exp(x);
  if constexpr (kKind == Activation::gelu_tanh) return gelu_tanh_exp(x);
}
template <Activation kKind, typename T>
GW_ALWAYS_INLINE T backward_from_stage(T dy, T x, ExpQuotient<T> e) {
  if constexpr (kKind == Activation::tanh) return tanh_backward_from_exp(dy, e);
  if constexpr (kKind == Activation::silu) return silu_backward_from_exp(dy, x, e);
  if constexpr (kKind == Activation::gelu_tanh) return gelu_tanh_backward_from_exp(dy, x, e);
  if constexpr (kKind == Activation::softplus) return softplus_backward_from_exp(dy, x, e);
}

// One chunk's stage values: plain exponentials, or quotients t / den stored as two arrays (den
// only in double: in float it is 1).
template <typename V>
struct StageBuffer {
  alignas(64) V values[kStageChunk];
  GW_ALWAYS_INLINE void store(int64_t i, V value) { values[i] = value; }
  GW_ALWAYS_INLINE V load(int64_t i) const { return values[i]; }
};
template <typename T>
struct StageBuffer<ExpQuotient<T>> {
  static constexpr bool kHasDen = !std::is_same_v<T, float>;
  alignas(64) T t[kStageChunk];
  alignas(64) T den[kHasDen ? kStageChunk : 1];
  GW_ALWAYS_INLINE void store(int64_t i, ExpQuotient<T> value) {
    t[i] = value.t;
    if constexpr (kHasDen) den[i] = value.den;
  }
  GW_ALWAYS_INLINE ExpQuotient<T> load(int64_t i) const {
    if constexpr (kHasDen) {
      return {t[i], den[i]};
    } else {
      return {t[i], static_cast<T>(1)};
    }
  }
};

// ---- loops -----------------------------------------------------------------------------------
// y = f(x).  y, x: (n)
template <Activation kKind, typename T>
void forward_loop(T* y, const T* x, int64_t n, T alpha) {
  for_each_block(n, [=](int64_t begin, int64_t end) {
    if constexpr (has_staged_forward(kKind)) {
      StageBuffer<T> stage;
      for (int64_t chunk = begin; chunk < end; chunk += kStageChunk) {
        const int64_t count = std::min(kStageChunk, end - chunk);
        const T* xc = x + chunk;
        T* yc = y + chunk;
#pragma omp simd
        for (int64_t i = 0; i < count; ++i) stage.store(i, forward_stage<kKind>(xc[i]));
#pragma omp simd
        for (int64_t i = 0; i < count; ++i) yc[i] = forward_from_stage<kKind>(xc[i], stage.load(i));
      }
    } else {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) y[i] = forward_element<kKind>(x[i], alpha);
    }
  });
}

// dx = dy * f'(x) for dx, x in [begin, end), dy_at(i) giving dy[i] (or 1: the derivative).
template <Activation kKind, typename T, typename DyAt>
GW_ALWAYS_INLINE void backward_range(T* dx, const DyAt& dy_at, const T* x, int64_t begin,
                                     int64_t end, T alpha) {
  if constexpr (has_staged_backward(kKind)) {
    StageBuffer<ExpQuotient<T>> stage;
    for (int64_t chunk = begin; chunk < end; chunk += kStageChunk) {
      const int64_t count = std::min(kStageChunk, end - chunk);
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) stage.store(i, backward_stage<kKind>(x[chunk + i]));
#pragma omp simd
      for (int64_t i = 0; i < count; ++i) {
        dx[chunk + i] = backward_from_stage<kKind>(dy_at(chunk + i), x[chunk + i], stage.load(i));
      }
    }
  } else {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) dx[i] = backward_element<kKind>(dy_at(i), x[i], alpha);
  }
}

// dx = dy * f'(x).  dx, dy, x: (n)
template <Activation kKind, typename T>
void backward_loop(T* dx, const T* dy, const T* x, int64_t n, T alpha) {
  for_each_block(n, [=](int64_t begin, int64_t end) {
    backward_range<kKind>(dx, [dy](int64_t i) { return dy[i]; }, x, begin, end, alpha);
  });
}

// dydx = f'(x), as backward with dy = 1 (an exact factor).  dydx, x: (n)
template <Activation kKind, typename T>
void derivative_loop(T* dydx, const T* x, int64_t n, T alpha) {
  for_each_block(n, [=](int64_t begin, int64_t end) {
    backward_range<kKind>(dydx, [](int64_t) { return static_cast<T>(1); }, x, begin, end, alpha);
  });
}

// dx = dy * f'(x) from y = f(x).  dx, dy, y: (n)
template <Activation kKind, typename T>
void backward_from_output_loop(T* dx, const T* dy, const T* y, int64_t n, T alpha) {
  for_each_block(n, [=](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      dx[i] = backward_from_output_element<kKind>(dy[i], y[i], alpha);
    }
  });
}

// ---- entry points (instantiated per ISA, called through GRADWATCH_DISPATCH) ------------------
// y, x: (n)
template <typename T>
void activation_forward_kernel(T* y, const T* x, int64_t n, Activation kind, T alpha) {
  visit_kind(kind, [&](auto k) { forward_loop<decltype(k)::value>(y, x, n, alpha); });
}

// dx = dy * f'(x), or f'(x) when dy is null.  dx, dy, x: (n)
template <typename T>
void activation_backward_kernel(T* dx, const T* dy, const T* x, int64_t n, Activation kind,
                                T alpha) {
  visit_kind(kind, [&](auto k) {
    if (dy == nullptr) {
      derivative_loop<decltype(k)::value>(dx, x, n, alpha);
    } else {
      backward_loop<decltype(k)::value>(dx, dy, x, n, alpha);
    }
  });
}

// The caller has checked has_backward_from_output(kind).  dx, dy, y: (n)
template <typename T>
void activation_backward_from_output_kernel(T* dx, const T* dy, const T* y, int64_t n,
                                            Activation kind, T alpha) {
  visit_kind(kind, [&](auto k) {
    if constexpr (has_backward_from_output(decltype(k)::value)) {
      backward_from_output_loop<decltype(k)::value>(dx, dy, y, n, alpha);
    }
  });
}

template <VecmathFunction kFunction, typename T>
GW_ALWAYS_INLINE T vecmath_element(T x) {
  if constexpr (kFunction == VecmathFunction::exp) return vexp(x);
  if constexpr (kFunction == VecmathFunction::expm1) return vexpm1(x);
  if constexpr (kFunction == VecmathFunction::log) return vlog(x);
  if constexpr (kFunction == VecmathFunction::log1p) return vlog1p(x);
  if constexpr (kFunction == VecmathFunction::log1p_unit) return vlog1p_unit(x);
  if constexpr (kFunction == VecmathFunction::tanh) return vtanh(x);
  if constexpr (kFunction == VecmathFunction::erf) return verf(x);
  if constexpr (kFunction == VecmathFunction::erfc) return verfc(x);
}

template <VecmathFunction kFunction, typename T>
void vecmath_loop(T* y, const T* x, int64_t n) {
  for_each_block(n, [=](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = vecmath_element<kFunction>(x[i]);
  });
}

// y, x: (n)
template <typename T>
void vecmath_kernel(T* y, const T* x, int64_t n, VecmathFunction function) {
  using V = VecmathFunction;
  switch (function) {
    case V::exp: vecmath_loop<V::exp>(y, x, n); break;
    case V::expm1: vecmath_loop<V::expm1>(y, x, n); break;
    case V::log: vecmath_loop<V::log>(y, x, n); break;
    case V::log1p: vecmath_loop<V::log1p>(y, x, n); break;
    case V::log1p_unit: vecmath_loop<V::log1p_unit>(y, x, n); break;
    case V::tanh: vecmath_loop<V::tanh>(y, x, n); break;
    case V::erf: vecmath_loop<V::erf>(y, x, n); break;
    case V::erfc: vecmath_loop<V::erfc>(y, x, n); break;
  }
}

}  // namespace GW_ISA
}  // namespace gradwatch
