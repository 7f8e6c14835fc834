// Branch-free exp and log for float and double, written so that GCC vectorises a loop calling
// them (under `#pragma omp simd`) for whatever ISA the including file is compiled for.
// Include this only from a kernel file, after GW_ISA names that file's namespace: see
// gradwatch/cpu_dispatch.hpp for why each ISA needs its own copy.
//
// Accuracy: within 2 ulp of the correctly rounded result over the whole range, subnormal
// results and inputs included. Special values: exp(-inf) = 0, exp(+inf) = +inf,
// log(0) = -inf, log(x < 0) = NaN, log(+inf) = +inf; NaN in gives NaN out.
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including vecmath.hpp"
#endif

#include <cstdint>
#include <cstring>
#include <limits>

namespace gradwatch {
namespace GW_ISA {

template <typename T> struct FloatTraits;
template <> struct FloatTraits<float> {
  using Int = int32_t;
  static constexpr int kMantissaBits = 23;
  static constexpr Int kExponentBias = 127;
  // Beyond these exp overflows to inf / underflows to 0 (past the smallest subnormal).
  static constexpr float kExpOverflow = 88.72283935546875f;
  static constexpr float kExpUnderflow = -103.97208404541015625f;
  static constexpr float kSmallestNormal = 1.17549435e-38f;
};
template <> struct FloatTraits<double> {
  using Int = int64_t;
  static constexpr int kMantissaBits = 52;
  static constexpr Int kExponentBias = 1023;
  static constexpr double kExpOverflow = 709.782712893383973096;
  static constexpr double kExpUnderflow = -745.1332191019411;
  static constexpr double kSmallestNormal = 2.2250738585072014e-308;
};

template <typename T>
inline typename FloatTraits<T>::Int bits_of(T x) {
  typename FloatTraits<T>::Int i;
  std::memcpy(&i, &x, sizeof(T));
  return i;
}

template <typename T>
inline T from_bits(typename FloatTraits<T>::Int i) {
  T x;
  std::memcpy(&x, &i, sizeof(T));
  return x;
}

// 2^n for an integer n within the normal exponent range.
template <typename T>
inline T exp2_int(typename FloatTraits<T>::Int n) {
  using Tr = FloatTraits<T>;
  return from_bits<T>((n + Tr::kExponentBias) << Tr::kMantissaBits);
}

// Polynomial for exp(r) - 1 - r on |r| <= ln(2)/2.
inline float expm1_minus_r_poly(float r) {
  // Cephes expf minimax coefficients.
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  return p * r * r;
}
inline double expm1_minus_r_poly(double r) {
  // Taylor series to r^13/13!: the next term is below 2e-17 relative on |r| <= ln(2)/2.
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  return p * r * r;
}

template <typename T> struct Ln2Split;
template <> struct Ln2Split<float> {
  static constexpr float hi = 0.693359375f, lo = -2.12194440e-4f;
};
template <> struct Ln2Split<double> {
  static constexpr double hi = 6.93147180369123816490e-01, lo = 1.90821492927058770002e-10;
};

// exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite).
template <typename T>
inline T vexp(T x) {
  using Tr = FloatTraits<T>;
  using Int = typename Tr::Int;
  constexpr T log2e = static_cast<T>(1.44269504088896340736);
  // Adding 1.5 * 2^mantissa rounds to the nearest integer and leaves it in the low bits.
  constexpr T round_magic = static_cast<T>(1.5) * static_cast<T>(Int(1) << Tr::kMantissaBits);
  // Clamp so that the arithmetic stays finite; NaN fails both comparisons and passes through.
  T xc = x < Tr::kExpUnderflow ? Tr::kExpUnderflow : x;
  xc = xc > Tr::kExpOverflow ? Tr::kExpOverflow : xc;
  const T shifted = xc * log2e + round_magic;
  const T n_real = shifted - round_magic;
  const Int n = bits_of<T>(shifted) - bits_of<T>(round_magic);
  T r = xc - n_real * Ln2Split<T>::hi;
  r = r - n_real * Ln2Split<T>::lo;
  const T exp_r = static_cast<T>(1) + r + expm1_minus_r_poly(r);
  // Scale in two halves so that subnormal results and 2^128 (float) need no special case.
  const Int half = n >> 1;
  T result = exp_r * exp2_int<T>(half) * exp2_int<T>(n - half);
  result = x > Tr::kExpOverflow ? std::numeric_limits<T>::infinity() : result;
  result = x < Tr::kExpUnderflow ? static_cast<T>(0) : result;
  return result;
}

// log(m) for m in [sqrt(1/2), sqrt(2)] as 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716.
inline float log_reduced(float m) {
  const float s = (m - 1.0f) / (m + 1.0f);
  const float s2 = s * s;
  float p = 2.0f / 9.0f;
  p = p * s2 + 2.0f / 7.0f;
  p = p * s2 + 2.0f / 5.0f;
  p = p * s2 + 2.0f / 3.0f;
  // 2s is exact; the correction term carries the rest.
  return 2.0f * s + s * s2 * p;
}
inline double log_reduced(double m) {
  const double s = (m - 1.0) / (m + 1.0);
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

// log(x) = e ln 2 + log(m), x = m 2^e with m in [sqrt(1/2), sqrt(2)).
template <typename T>
inline T vlog(T x) {
  using Tr = FloatTraits<T>;
  using Int = typename Tr::Int;
  // Subnormals: scale into the normal range first and take the exponent back afterwards.
  constexpr int kSubnormalShift = Tr::kMantissaBits + 2;
  const bool subnormal = x < Tr::kSmallestNormal;
  const T scaled = subnormal ? x * exp2_int<T>(kSubnormalShift) : x;
  const Int bits = bits_of<T>(scaled);
  // Offset the exponent so that the mantissa lands in [sqrt(1/2), sqrt(2)).
  const Int sqrt_half_bits = bits_of<T>(static_cast<T>(0.70710678118654752440));
  const Int offset_bits = bits - sqrt_half_bits;
  const Int exponent = (offset_bits >> Tr::kMantissaBits);
  const Int mantissa_bits = bits - (exponent << Tr::kMantissaBits);
  const T m = from_bits<T>(mantissa_bits);
  const T e = static_cast<T>(exponent - (subnormal ? kSubnormalShift : 0));
  T result = e * Ln2Split<T>::hi + (log_reduced(m) + e * Ln2Split<T>::lo);
  result = x == std::numeric_limits<T>::infinity() ? x : result;
  result = x == static_cast<T>(0) ? -std::numeric_limits<T>::infinity() : result;
  result = x < static_cast<T>(0) ? std::numeric_limits<T>::quiet_NaN() : result;
  result = x != x ? x : result;
  return result;
}

// log(1 + x) for x >= -1, accurate for tiny x: with w = 1 + x rounded, log(w) * x / (w - 1)
// cancels the rounding of w (Goldberg 1991, Theorem 4).
template <typename T>
inline T vlog1p(T x) {
  const T w = static_cast<T>(1) + x;
  const T denominator = w - static_cast<T>(1);
  const T corrected = vlog(w) * (x / (denominator == static_cast<T>(0) ? static_cast<T>(1) : denominator));
  T result = denominator == static_cast<T>(0) ? x : corrected;
  result = x == std::numeric_limits<T>::infinity() ? x : result;
  return result;
}

}  // namespace GW_ISA
}  // namespace gradwatch
