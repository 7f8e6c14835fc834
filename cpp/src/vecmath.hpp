// Branch-free exp, expm1 (and cheaper versions of both for arguments <= 0), log, log1p (and
// log1p_unit, for arguments in [0, 1]), tanh, erf and erfc for float and double, plus the
// helpers they share (exp_minus, log_minus, erfc_scaled, polynomial, ...), written so that GCC
// vectorises a loop calling them (under `#pragma omp simd`) for whatever ISA the including file
// is compiled for. Every function computes all of its cases and selects, so a lane never
// branches; integer work is done in unsigned types so that no shift or overflow is undefined.
// Include this only from a kernel file, after GW_ISA names that file's namespace: see
// gradwatch/cpu_dispatch.hpp for why each ISA needs its own copy.
//
// Accuracy, largest error seen against mpmath (float and double alike; subnormal results and
// inputs included; tests/test_activations.py checks these against Python's math module):
//   vexp 1.2 ulp, vexpm1 1.8, vlog 0.75, vlog1p 0.75, vlog1p_unit 1.0, vtanh 2.5 (2.8 in
//   double with FMA, against long double tanhl), verf 2.5, verfc 3.9.
// In double that is a relative error below 1e-15 everywhere; verfc keeps it deep into the
// tail (erfc(26) ~ 1e-296), since exp(-x^2) is taken without the rounding error of x^2.
// Special values: exp(-inf) = 0, exp(+inf) = +inf, expm1(-inf) = -1, log(0) = -inf,
// log(x < 0) = NaN, log(+inf) = +inf, log1p(-1) = -inf, tanh(+-inf) = +-1, erf(+-inf) = +-1,
// erfc(-inf) = 2, erfc(+inf) = 0; NaN in gives NaN out.
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including vecmath.hpp"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

// Inlining is what lets a loop calling these functions vectorise: the link-time inliner's growth
// limits for the whole module would otherwise leave some of them as scalar calls.
#ifndef GW_ALWAYS_INLINE
#if defined(__GNUC__)
#define GW_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define GW_ALWAYS_INLINE inline
#endif
#endif
// For a loop that the serial and the parallel path of a kernel must run as one compiled copy.
#ifndef GW_NOINLINE
#if defined(__GNUC__)
#define GW_NOINLINE __attribute__((noinline))
#else
#define GW_NOINLINE
#endif
#endif

namespace gradwatch {
namespace GW_ISA {

template <typename T> struct FloatTraits;
template <> struct FloatTraits<float> {
  using Int = int32_t;
  using UInt = uint32_t;
  static constexpr int kMantissaBits = 23;
  static constexpr Int kExponentBias = 127;
  // Beyond these exp overflows to inf / underflows to 0 (past the smallest subnormal).
  static constexpr float kExpOverflow = 88.72283935546875f;
  static constexpr float kExpUnderflow = -103.97208404541015625f;
  // Clamping exp's argument to these makes the arithmetic itself give 0 and inf: no select on
  // the input is left for GCC's jump threading to duplicate the whole computation over.
  static constexpr float kExpClampLow = -104.0f;
  static constexpr float kExpClampHigh = 89.0f;
  static constexpr float kSmallestNormal = 1.17549435e-38f;
  // Clears the low half of the mantissa: the rest squares exactly.
  static constexpr UInt kSplitMask = 0xFFFFF000u;
};
template <> struct FloatTraits<double> {
  using Int = int64_t;
  using UInt = uint64_t;
  static constexpr int kMantissaBits = 52;
  static constexpr Int kExponentBias = 1023;
  static constexpr double kExpOverflow = 709.782712893383973096;
  static constexpr double kExpUnderflow = -745.1332191019411;
  static constexpr double kExpClampLow = -746.0;
  static constexpr double kExpClampHigh = 710.0;
  static constexpr double kSmallestNormal = 2.2250738585072014e-308;
  static constexpr UInt kSplitMask = 0xFFFFFFFFF8000000u;
};

template <typename T>
GW_ALWAYS_INLINE typename FloatTraits<T>::Int bits_of(T x) {
  typename FloatTraits<T>::Int i;
  std::memcpy(&i, &x, sizeof(T));
  return i;
}

template <typename T>
GW_ALWAYS_INLINE T from_bits(typename FloatTraits<T>::Int i) {
  T x;
  std::memcpy(&x, &i, sizeof(T));
  return x;
}

template <typename T>
GW_ALWAYS_INLINE typename FloatTraits<T>::UInt ubits_of(T x) {
  typename FloatTraits<T>::UInt i;
  std::memcpy(&i, &x, sizeof(T));
  return i;
}

template <typename T>
GW_ALWAYS_INLINE T from_ubits(typename FloatTraits<T>::UInt i) {
  T x;
  std::memcpy(&x, &i, sizeof(T));
  return x;
}

// 2^n for an integer n in [1 - bias, bias] (n = bias + 1 gives +inf).
template <typename T>
GW_ALWAYS_INLINE T exp2_int(typename FloatTraits<T>::Int n) {
  using Tr = FloatTraits<T>;
  using UInt = typename Tr::UInt;
  return from_ubits<T>((static_cast<UInt>(n) + static_cast<UInt>(Tr::kExponentBias))
                       << Tr::kMantissaBits);
}

constexpr std::size_t floor_log2(std::size_t n) { return n <= 1 ? 0 : 1 + floor_log2(n / 2); }

// c[0] + c[1] x + ... + c[N-1] x^(N-1) by Estrin's scheme: p = low(x) + x^k high(x) with k the
// largest power of two below N, recursively. The chain of dependent multiply-adds is log2(N)
// deep instead of N (Horner), and that chain, not the number of operations, is what limits a
// vectorised loop over a long polynomial. powers[j] holds x^(2^j).
template <std::size_t kBegin, std::size_t kCount, typename T, std::size_t N>
GW_ALWAYS_INLINE T estrin_range(const T (&c)[N], const T* powers) {
  if constexpr (kCount == 1) {
    return c[kBegin];
  } else {
    constexpr std::size_t kLevel = floor_log2(kCount - 1);
    constexpr std::size_t kLow = std::size_t(1) << kLevel;
    return estrin_range<kBegin, kLow>(c, powers) +
           powers[kLevel] * estrin_range<kBegin + kLow, kCount - kLow>(c, powers);
  }
}

template <typename T, std::size_t N>
GW_ALWAYS_INLINE T polynomial(T x, const T (&c)[N]) {
  static_assert(N >= 2, "a polynomial of degree >= 1");
  constexpr std::size_t kLevels = floor_log2(N - 1) + 1;
  T powers[kLevels];
  powers[0] = x;
  for (std::size_t j = 1; j < kLevels; ++j) powers[j] = powers[j - 1] * powers[j - 1];
  return estrin_range<0, N>(c, powers);
}

// Polynomial for exp(r) - 1 - r on |r| <= ln(2)/2.
GW_ALWAYS_INLINE float expm1_minus_r_poly(float r) {
  // Cephes expf minimax coefficients.
  static constexpr float kCoefficients[] = {
      5.0000001201e-1f,
      1.6666665459e-1f,
      4.1665795894e-2f,
      8.3334519073e-3f,
      1.3981999507e-3f,
      1.9875691500e-4f,
  };
  return polynomial(r, kCoefficients) * r * r;
}
GW_ALWAYS_INLINE double expm1_minus_r_poly(double r) {
  // Taylor series to r^13/13!: the next term is below 2e-17 relative on |r| <= ln(2)/2.
  static constexpr double kCoefficients[] = {
      0.5,
      1.0 / 6.0,
      1.0 / 24.0,
      1.0 / 120.0,
      1.0 / 720.0,
      1.0 / 5040.0,
      1.0 / 40320.0,
      1.0 / 362880.0,
      1.0 / 3628800.0,
      1.0 / 39916800.0,
      1.0 / 479001600.0,
      1.0 / 6227020800.0,
  };
  return polynomial(r, kCoefficients) * r * r;
}

template <typename T> struct Ln2Split;
template <> struct Ln2Split<float> {
  static constexpr float hi = 0.693359375f, lo = -2.12194440e-4f;
};
template <> struct Ln2Split<double> {
  static constexpr double hi = 6.93147180369123816490e-01, lo = 1.90821492927058770002e-10;
};

// x - c = n ln 2 + r, n = round(x / ln 2) (Cody-Waite), for x clamped to the finite range of
// exp and |c| much smaller than ln 2 / 2 (c lets a caller pass the low part of an argument).
template <typename T>
struct ExpReduction {
  T n_real;
  typename FloatTraits<T>::Int n;
  T r;
};

template <typename T>
GW_ALWAYS_INLINE ExpReduction<T> exp_reduce(T x_clamped, T c) {
  using Tr = FloatTraits<T>;
  using Int = typename Tr::Int;
  constexpr T log2e = static_cast<T>(1.44269504088896340736);
  // Adding 1.5 * 2^mantissa rounds to the nearest integer and leaves it in the low bits.
  constexpr T round_magic = static_cast<T>(1.5) * static_cast<T>(Int(1) << Tr::kMantissaBits);
  const T shifted = x_clamped * log2e + round_magic;
  ExpReduction<T> out;
  out.n_real = shifted - round_magic;
  out.n = static_cast<Int>(ubits_of<T>(shifted) - ubits_of<T>(round_magic));
  T r = x_clamped - out.n_real * Ln2Split<T>::hi;
  r = r - out.n_real * Ln2Split<T>::lo;
  out.r = r - c;
  return out;
}

// 2^n as a product of two powers of two, so that results down to the smallest subnormal and up
// to 2^(bias + 1) (which overflows to inf only after multiplying by the mantissa) need no case.
template <typename T>
GW_ALWAYS_INLINE T scale_by_exp2(T value, typename FloatTraits<T>::Int n) {
  using Tr = FloatTraits<T>;
  using Int = typename Tr::Int;
  using UInt = typename Tr::UInt;
  // floor(n / 2) with a logical shift (AVX2 has no 64-bit arithmetic shift): offset n to >= 0.
  constexpr UInt kOffset = 2 * static_cast<UInt>(Tr::kExponentBias + 1);
  const Int half = static_cast<Int>((static_cast<UInt>(n) + kOffset) >> 1) -
                   static_cast<Int>(kOffset / 2);
  return value * exp2_int<T>(half) * exp2_int<T>(n - half);
}

// exp(x - c) for |c| much smaller than ln 2 / 2, e.g. the rounding error of x.
template <typename T>
GW_ALWAYS_INLINE T exp_minus(T x, T c) {
  using Tr = FloatTraits<T>;
  // At the clamp bounds the scaling underflows to 0 and overflows to inf by itself (n = -150 or
  // 128 for float); NaN fails both comparisons and passes through.
  T xc = x < Tr::kExpClampLow ? Tr::kExpClampLow : x;
  xc = xc > Tr::kExpClampHigh ? Tr::kExpClampHigh : xc;
  const ExpReduction<T> red = exp_reduce(xc, c);
  const T exp_r = static_cast<T>(1) + red.r + expm1_minus_r_poly(red.r);
  return scale_by_exp2(exp_r, red.n);
}

// exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite).
template <typename T>
GW_ALWAYS_INLINE T vexp(T x) {
  return exp_minus(x, static_cast<T>(0));
}

// ---- exp and expm1 of a non-positive argument --------------------------------------------
// Most activations need exp only of -|x|, min(x, 0) or -x^2 / 2. Without the overflow side the
// clamp is one-sided, 2^n is one scale factor, and the polynomial can be a minimax one of lower
// degree than vexp's: this is what makes sigmoid, tanh, elu, ... a few dozen instructions.

// c[0] + c[1] x + ... + c[N-1] x^(N-1) by Horner's rule, times `scale` (a power of two, so the
// scaled coefficients are exact and fold into constants). N - 1 multiply-adds: the fewest
// operations, which is what limits the short polynomials below (the loops calling them keep
// enough independent elements in flight to hide the longer chain).
template <typename T, std::size_t N>
GW_ALWAYS_INLINE T horner_scaled(T x, const T (&c)[N], T scale) {
  T p = c[N - 1] * scale;
  for (std::size_t k = N - 1; k-- > 0;) p = p * x + c[k] * scale;
  return p;
}

// Q(r) = (exp(r) - 1) / r on |r| <= ln(2)/2 in float, minimax for the relative error of
// exp(r) = 1 + r Q(r) (Lawson iteration in mpmath): degree 4, 9.2e-8 before rounding, 1.6 ulp
// of exp after it.
struct ExpQFloat {
  static constexpr float kCoefficients[] = {
      0.9999997063f, 0.4999914783f, 0.1666763816f, 0.04189816062f, 0.008290270044f,
  };
};
// P(r) = (exp(r) - 1 - r) / r^2 on |r| <= ln(2)/2 for expm1, whose relative accuracy near 0
// needs the exact leading r (mpmath chebyfit): degree 4 in float (error 8e-9 relative to
// exp(r)), degree 9 in double (1.3e-17).
template <typename T> struct ExpM1P;
template <> struct ExpM1P<float> {
  static constexpr float kCoefficients[] = {
      0.5f, 0.16666577025597988f, 0.041666554662050534f, 0.0083631730745137109f,
      0.0013926176119935579f,
  };
};
template <> struct ExpM1P<double> {
  static constexpr double kCoefficients[] = {
      0.50000000000000010211,     0.16666666666666667452,    0.041666666666624161903,
      0.0083333333333300644495,   0.0013888888917196719077,  0.00019841269863040545271,
      0.000024801521322368693266, 2.7557268480310025526e-6,  2.7620075879983366586e-7,
      2.5100375832561233664e-8,
  };
};

// n ln 2 + r = x - c as in exp_reduce, for x in [kExpClampLow, 0] (below it, -inf included,
// n leaves the range: callers clamp x or mask their result).
// shifted keeps n + bias + kOffset in its low mantissa bits (the rounding constant includes
// bias + kOffset): pow2_from_shifted turns it into 2^(n + kOffset) with a single shift.
template <typename T>
struct NonPositiveReduction {
  T shifted;
  T r;
};
// 1.5 * 2^mantissa rounds to an integer; bias + kOffset added to it lands in the exponent field
// after the shift. Exact: the sum is far below 2^mantissa.
template <typename T, int kOffset>
constexpr T kRoundMagicBiased =
    static_cast<T>(1.5) * static_cast<T>(typename FloatTraits<T>::Int(1)
                                         << FloatTraits<T>::kMantissaBits) +
    static_cast<T>(FloatTraits<T>::kExponentBias + kOffset);
template <int kOffset, typename T>
GW_ALWAYS_INLINE NonPositiveReduction<T> reduce_nonpositive(T x_clamped, T c) {
  constexpr T log2e = static_cast<T>(1.44269504088896340736);
  constexpr T round_magic = kRoundMagicBiased<T, kOffset>;
  NonPositiveReduction<T> out;
  out.shifted = x_clamped * log2e + round_magic;
  const T n_real = out.shifted - round_magic;
  T r = x_clamped - n_real * Ln2Split<T>::hi;
  r = r - n_real * Ln2Split<T>::lo;
  out.r = r - c;
  return out;
}
// reduce_nonpositive(x_clamped, 0), with one fused multiply-add for r in float where the ISA has
// it: ln 2 rounded to float is 1.9e-9 off, which times |n| <= 150 costs up to 3e-7 relative
// (below 1 ulp for |x| < 20), one instruction of ~15 saved. For the sigmoid-like kernels,
// not for erfc, whose tail takes exp of -x^2 down to the underflow.
template <int kOffset, typename T>
GW_ALWAYS_INLINE NonPositiveReduction<T> reduce_nonpositive_short(T x_clamped) {
#if defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    constexpr float log2e = 1.44269504088896340736f;
    constexpr float round_magic = kRoundMagicBiased<float, kOffset>;
    NonPositiveReduction<float> out;
    out.shifted = x_clamped * log2e + round_magic;
    const float n_real = out.shifted - round_magic;
    out.r = x_clamped - n_real * 0.693147180559945309f;
    return out;
  }
#endif
  return reduce_nonpositive<kOffset>(x_clamped, static_cast<T>(0));
}
// 2^(n + kOffset) for a reduction.shifted from reduce_nonpositive<kOffset>, n + kOffset a normal
// exponent: the low bits of shifted, bias + kOffset + n, shifted into the exponent field (the
// rest of the mantissa and the exponent of shifted fall off the top).
template <typename T>
GW_ALWAYS_INLINE T pow2_from_shifted(T shifted) {
  return from_ubits<T>(ubits_of<T>(shifted) << FloatTraits<T>::kMantissaBits);
}

// The guard factor of exp_nonpositive_minus: 2^(n + kGuard) stays normal down to the clamp
// (n = -150 in float, -1076 in double), so exp(r) 2^-kGuard times it rounds the result once,
// correctly also where it is subnormal.
template <typename T> struct ExpGuard;
template <> struct ExpGuard<float> {
  static constexpr int kGuard = 32;
  static constexpr float kInverse = 2.3283064365386963e-10f;  // 2^-32
};
template <> struct ExpGuard<double> {
  static constexpr int kGuard = 64;
  static constexpr double kInverse = 5.421010862427522e-20;  // 2^-64
};

// exp(x - c) for x <= 0 (-inf included; NaN passes through) and 0 <= |c| much smaller than
// ln 2 / 2. Positive x is not allowed: 2^n would overflow the guard. The accurate one (erfc's
// tail, gelu): exp(r) = 1 + expm1(r) by Estrin's scheme, below 0.6 ulp.
template <typename T>
GW_ALWAYS_INLINE T exp_nonpositive_minus(T x, T c) {
  using Tr = FloatTraits<T>;
  using UInt = typename Tr::UInt;
  const NonPositiveReduction<T> red = reduce_nonpositive<ExpGuard<T>::kGuard>(x, c);
  // exp(r) 2^-kGuard (exact: a power of two, far from underflow), then one rounding by 2^n.
  const T expm1_r = red.r + polynomial(red.r, ExpM1P<T>::kCoefficients) * (red.r * red.r);
  const T exp_r_scaled = expm1_r * ExpGuard<T>::kInverse + ExpGuard<T>::kInverse;
  const T e = exp_r_scaled * pow2_from_shifted(red.shifted);
  // 0 below the clamp bound (-inf included), as in vexp_nonpositive; NaN passes through.
  const UInt keep = UInt(0) - static_cast<UInt>(!(x < Tr::kExpClampLow));
  return from_ubits<T>(ubits_of<T>(e) & keep);
}

// exp(x) for x <= 0 or NaN. Shorter in float: Horner's rule for 1 + r Q(r) with the guard
// folded into the coefficients, and the one-FMA reduction (up to 4.7 ulp, 3e-7, at x ~ -85;
// 2 ulp for |x| < 20; ~25% faster sigmoid). In double, Horner's longer chain measured no
// faster than exp_nonpositive_minus.
template <typename T>
GW_ALWAYS_INLINE T vexp_nonpositive(T x) {
  if constexpr (std::is_same_v<T, float>) {
    const NonPositiveReduction<float> red = reduce_nonpositive_short<ExpGuard<float>::kGuard>(x);
    constexpr float kInverse = ExpGuard<float>::kInverse;
    const float exp_r_scaled =
        horner_scaled(red.r, ExpQFloat::kCoefficients, kInverse) * red.r + kInverse;
    const float e = exp_r_scaled * pow2_from_shifted(red.shifted);
    // Below the clamp bound (-inf included) n would leave the guard's range: e is 0 there, by
    // an integer mask rather than a select, which GCC's jump threading would turn into a
    // blend of both outcomes in every caller. NaN fails the comparison and passes through.
    const uint32_t keep = 0u - static_cast<uint32_t>(!(x < FloatTraits<float>::kExpClampLow));
    return from_ubits<float>(ubits_of<float>(e) & keep);
  } else {
    return exp_nonpositive_minus(x, static_cast<T>(0));
  }
}

// ---- exp as a quotient, for kernels that divide anyway ----------------------------------------
// In double, exp(r) on |r| <= ln(2)/2 is the rational form of Cephes' exp.c,
// (Q(r^2) + r P(r^2)) / (Q(r^2) - r P(r^2)): six multiply-adds where the polynomial needs a dozen.
// The division is left to the caller, whose own (sigmoid's 1 / (1 + e), ...) takes it along for
// free: exp(x) = t / den, one division in all. In float vexp_nonpositive's polynomial is already
// short and den is 1, which the compiler folds away.
template <typename T>
struct ExpQuotient {
  T t;    // 2^n (Q + r P), rounded once (also where it is subnormal)
  T den;  // Q - r P, in [1.6, 2.4]
};
struct ExpRationalDouble {
  // P's constant term, 0.99999999999999999991, is 1 in double: kP holds the rest.
  static constexpr double kP[] = {
      3.02994407707441961300E-2,
      1.26177193074810590878E-4,
  };
  static constexpr double kQ[] = {
      2.00000000000000000009E0,
      2.27265548208155028766E-1,
      2.52448340349684104192E-3,
      3.00198505138664455042E-6,
  };
};
// Q and r P for the reduced argument r (exp(r) = (q + rp) / (q - rp)). Each is rounded once
// after an exact leading term (r + r^3 P'(r^2), Horner's rule ending in + 2), the other
// roundings damped by r^2 <= 0.12: that keeps tanh's quotient within 3 ulp near 0.
struct ExpRationalParts {
  double q;
  double rp;
};
GW_ALWAYS_INLINE ExpRationalParts exp_rational_parts(double r) {
  const double r_squared = r * r;
  return {horner_scaled(r_squared, ExpRationalDouble::kQ, 1.0),
          (r * r_squared) * polynomial(r_squared, ExpRationalDouble::kP) + r};
}

// exp(x) = t / den for x <= 0 (-inf included; NaN passes through). Largest error of t / den
// 1.8 ulp in double (against long double expl, x in [-750, 0]), vexp_nonpositive's in float.
template <typename T>
GW_ALWAYS_INLINE ExpQuotient<T> exp_quotient_nonpositive(T x) {
  if constexpr (std::is_same_v<T, float>) {
    return {vexp_nonpositive(x), 1.0f};
  } else {
    using Tr = FloatTraits<double>;
    const double xc = x < Tr::kExpClampLow ? Tr::kExpClampLow : x;  // NaN fails, passes through
    const NonPositiveReduction<double> red = reduce_nonpositive<ExpGuard<double>::kGuard>(xc, 0.0);
    const ExpRationalParts parts = exp_rational_parts(red.r);
    // (q + rp) 2^-kGuard is exact; the product with 2^(n + kGuard) rounds once.
    constexpr double kInverse = ExpGuard<double>::kInverse;
    const double numerator_scaled = parts.q * kInverse + parts.rp * kInverse;
    return {numerator_scaled * pow2_from_shifted(red.shifted),
            parts.q - parts.rp};
  }
}

// expm1(x) for x in [kExpm1MinusOneBelow, 0] or NaN: 2^n expm1(r) + (2^n - 1) in one
// multiply-add, with 2^n - 1 exact for n >= -24 (float) / -53 (double). expm1(-0) is +0 here:
// callers that care about the sign of zero select x itself at 0.
// Below this expm1 rounds to -1 in both precisions (2^n stays normal there).
template <typename T>
constexpr T kExpm1MinusOneBelow = static_cast<T>(-40);
template <typename T>
GW_ALWAYS_INLINE T expm1_nonpositive_in_range(T x) {
  const NonPositiveReduction<T> red = reduce_nonpositive_short<0>(x);
  const T r_squared = red.r * red.r;
  T expm1_r;
  if constexpr (std::is_same_v<T, float>) {
    // P by powers of r^2 (computed anyway): (c0 + c1 r) + r^2 ((c2 + c3 r) + r^2 c4), the same
    // four multiply-adds as Horner's rule in a chain two shorter (tanh, elu, selu ~4% faster).
    constexpr const float* c = ExpM1P<float>::kCoefficients;
    const float low = c[0] + c[1] * red.r;
    const float high = (c[2] + c[3] * red.r) + r_squared * c[4];
    expm1_r = (low + r_squared * high) * r_squared + red.r;
  } else {
    expm1_r =
        horner_scaled(red.r, ExpM1P<T>::kCoefficients, static_cast<T>(1)) * r_squared + red.r;
  }
  const T two_n = pow2_from_shifted(red.shifted);
  return two_n * expm1_r + (two_n - static_cast<T>(1));
}

// expm1(x) for x <= 0 or NaN.
template <typename T>
GW_ALWAYS_INLINE T vexpm1_nonpositive(T x) {
  const T low = kExpm1MinusOneBelow<T>;
  return expm1_nonpositive_in_range(x < low ? low : x);  // NaN fails and passes through
}

// exp(x) - 1, accurate for small |x|: expm1(x) = 2^n expm1(r) + (2^n - 1), where 2^n - 1 is exact
// for n up to the mantissa width; beyond that the - 1 is below the result's rounding.
template <typename T>
GW_ALWAYS_INLINE T vexpm1(T x) {
  using Tr = FloatTraits<T>;
  // Below this expm1 rounds to -1 in both precisions.
  constexpr T kMinusOneBelow = static_cast<T>(-40);
  T xc = x < kMinusOneBelow ? kMinusOneBelow : x;
  xc = xc > Tr::kExpClampHigh ? Tr::kExpClampHigh : xc;  // `large` overflows to inf there
  const ExpReduction<T> red = exp_reduce(xc, static_cast<T>(0));
  const T expm1_r = red.r + expm1_minus_r_poly(red.r);
  const T two_n = exp2_int<T>(red.n);  // +inf for the largest n, whose lanes use `large`
  const T moderate = two_n * expm1_r + (two_n - static_cast<T>(1));
  const T large = scale_by_exp2(static_cast<T>(1) + expm1_r, red.n) - static_cast<T>(1);
  T result = red.n_real > static_cast<T>(Tr::kMantissaBits) ? large : moderate;
  // Below this expm1(x) rounds to x (this also keeps the sign of -0).
  constexpr T kTiny =
      static_cast<T>(1) / static_cast<T>(typename Tr::Int(1) << (Tr::kMantissaBits + 1));
  return std::fabs(x) < kTiny ? x : result;
}

// R(z) = 2z/3 + 2z^2/5 + ... with log(1 + f) = 2 atanh(s) = 2s + s R(s^2), s = f / (2 + f);
// |s| <= 0.1716 for 1 + f in [sqrt(1/2), sqrt(2)], where the truncated series is below half
// an ulp.
GW_ALWAYS_INLINE float log_series(float z) {
  static constexpr float kCoefficients[] = {
      2.0f / 3.0f,
      2.0f / 5.0f,
      2.0f / 7.0f,
      2.0f / 9.0f,
  };
  return polynomial(z, kCoefficients) * z;
}
GW_ALWAYS_INLINE double log_series(double z) {
  static constexpr double kCoefficients[] = {
      2.0 / 3.0,
      2.0 / 5.0,
      2.0 / 7.0,
      2.0 / 9.0,
      2.0 / 11.0,
      2.0 / 13.0,
      2.0 / 15.0,
      2.0 / 17.0,
      2.0 / 19.0,
      2.0 / 21.0,
      2.0 / 23.0,
  };
  return polynomial(z, kCoefficients) * z;
}

// log(x) - c for a correction c much smaller than ulp(1), as e ln 2 + log(1 + f) - c with
// x = (1 + f) 2^e, 1 + f in [sqrt(1/2), sqrt(2)). log(1 + f) = f - (f^2/2 - s (f^2/2 + R)):
// f is exact and everything after it a small correction (fdlibm's e_log.c arrangement).
template <typename T>
GW_ALWAYS_INLINE T log_minus(T x, T c) {
  using Tr = FloatTraits<T>;
  using Int = typename Tr::Int;
  using UInt = typename Tr::UInt;
  // Subnormals: scale into the normal range first and take the exponent back afterwards.
  constexpr int kSubnormalShift = Tr::kMantissaBits + 2;
  constexpr T kSubnormalScale = static_cast<T>(Int(1) << kSubnormalShift);
  const bool subnormal = x < Tr::kSmallestNormal;
  const T scaled = subnormal ? x * kSubnormalScale : x;
  const UInt bits = ubits_of<T>(scaled);
  // Offset the exponent so that the mantissa lands in [sqrt(1/2), sqrt(2)); the biased
  // exponent is then non-negative for every positive x, so a logical shift extracts it.
  const UInt sqrt_half_bits = ubits_of<T>(static_cast<T>(0.70710678118654752440));
  const UInt bias_bits = static_cast<UInt>(Tr::kExponentBias) << Tr::kMantissaBits;
  const UInt biased_exponent = (bits - sqrt_half_bits + bias_bits) >> Tr::kMantissaBits;
  const UInt mantissa_bits = bits - ((biased_exponent << Tr::kMantissaBits) - bias_bits);
  const T f = from_ubits<T>(mantissa_bits) - static_cast<T>(1);
  // Integer to float through the mantissa (exact): AVX2 has no 64-bit integer conversion.
  constexpr T kTwoToMantissa = static_cast<T>(Int(1) << Tr::kMantissaBits);
  const T exponent_plus_magic = from_ubits<T>(ubits_of<T>(kTwoToMantissa) | biased_exponent);
  const T e = exponent_plus_magic - (kTwoToMantissa + static_cast<T>(Tr::kExponentBias)) -
              (subnormal ? static_cast<T>(kSubnormalShift) : static_cast<T>(0));
  const T s = f / (static_cast<T>(2) + f);
  const T half_f_squared = static_cast<T>(0.5) * f * f;
  const T correction = s * (half_f_squared + log_series(s * s));
  T result = e * Ln2Split<T>::hi -
             ((half_f_squared - (correction + (e * Ln2Split<T>::lo - c))) - f);
  result = x == std::numeric_limits<T>::infinity() ? x : result;
  result = x == static_cast<T>(0) ? -std::numeric_limits<T>::infinity() : result;
  result = x < static_cast<T>(0) ? std::numeric_limits<T>::quiet_NaN() : result;
  result = x != x ? x : result;
  return result;
}

template <typename T>
GW_ALWAYS_INLINE T vlog(T x) {
  return log_minus(x, static_cast<T>(0));
}

// log(1 + x) for x >= -1: log(w) + (1 + x - w) / w with w = 1 + x rounded, whose rounding
// error 1 + x - w is computed exactly (fdlibm's s_log1p.c correction).
template <typename T>
GW_ALWAYS_INLINE T vlog1p(T x) {
  using Tr = FloatTraits<T>;
  // Below this log1p(x) rounds to x (this also keeps the sign of -0).
  constexpr T kTiny =
      static_cast<T>(1) / static_cast<T>(typename Tr::Int(1) << (Tr::kMantissaBits + 1));
  const T w = static_cast<T>(1) + x;
  const T rounding =
      w >= static_cast<T>(2) ? static_cast<T>(1) - (w - x) : x - (w - static_cast<T>(1));
  const T w_or_one = w == static_cast<T>(0) ? static_cast<T>(1) : w;
  const T result = log_minus(w, -(rounding / w_or_one));
  return std::fabs(x) < kTiny ? x : result;
}

// log(1 + f) for f in [-1/4, 1/2], with k ln 2 added (k = 0 or 1). Float: f - f^2/2 + f^3 P(f),
// P minimax for the relative error of log(1 + f) (Lawson iteration in numpy; 0.08 ulp before
// rounding), no division. Double: as in log_minus, with s = f / (2 + f), |s| <= 1/5.
GW_ALWAYS_INLINE float log1p_reduced_plus(float f, float k) {
  static constexpr float kCoefficients[] = {
      0.3333345f,  -0.25000095f, 0.19990861f,  -0.16647312f,
      0.144784f,   -0.13161196f, 0.104629956f, -0.045074467f,
  };
  const float f_squared = f * f;
  const float small = f_squared * (f * polynomial(f, kCoefficients) - 0.5f);
  return k * Ln2Split<float>::hi + (f + (small + k * Ln2Split<float>::lo));
}
GW_ALWAYS_INLINE double log1p_reduced_plus(double f, double k) {
  const double s = f / (2.0 + f);
  const double half_f_squared = 0.5 * f * f;
  const double correction = s * (half_f_squared + log_series(s * s));
  return k * Ln2Split<double>::hi -
         ((half_f_squared - (correction + k * Ln2Split<double>::lo)) - f);
}

// log(1 + x) for x in [0, 1] (NaN passes through), cheaper than vlog1p: no exponent to extract
// and no rounding of 1 + x to correct. 1 + x = 2^k (1 + f) with k = 0, f = x for x < 1/2 and
// k = 1, f = (x - 1) / 2 otherwise, both exact.
template <typename T>
GW_ALWAYS_INLINE T vlog1p_unit(T x) {
  const bool upper = x >= static_cast<T>(0.5);
  const T f = upper ? static_cast<T>(0.5) * (x - static_cast<T>(1)) : x;
  return log1p_reduced_plus(f, upper ? static_cast<T>(1) : static_cast<T>(0));
}

// min(|x|, bound) for bound >= 0, computed on the bit patterns, which order like the values for
// non-negative numbers; NaN gives bound. A floating-point select (a > bound ? bound : a) would
// let GCC's jump threading duplicate everything computed from the result, once per outcome
// (measured 3x slower for gelu).
template <typename T>
GW_ALWAYS_INLINE T min_of_magnitude(T x, T bound) {
  using Int = typename FloatTraits<T>::Int;
  const Int bits = bits_of<T>(std::fabs(x));
  const Int bound_bits = bits_of<T>(bound);
  return from_bits<T>(bits < bound_bits ? bits : bound_bits);
}

// tanh(x) = sign(x) (-m) / (2 + m) with m = expm1(-2|x|) in [-1, 0]: no cancellation near 0
// (m ~ -2|x| there) and no overflow.
template <typename T>
GW_ALWAYS_INLINE T vtanh(T x) {
  // tanh rounds to +-1 beyond this in both precisions; -2 kSaturation is expm1's lower bound,
  // so this is the only clamp.
  constexpr T kSaturation = -kExpm1MinusOneBelow<T> / static_cast<T>(2);
  const T a = std::fabs(x);
  const T a_clamped = a > kSaturation ? kSaturation : a;  // NaN fails and passes through
#if defined(__FMA__)
  if constexpr (std::is_same_v<T, double>) {
    // In double, with exp(-2|x|) = 2^n (q + rp) / (q - rp) (exp_quotient_nonpositive's
    // rational form; 2^n stays normal down to the clamp): tanh |x| = (1 - e) / (1 + e)
    // = (q (1 - 2^n) - rp (1 + 2^n)) / (q (1 + 2^n) - rp (1 - 2^n)), where 1 +- 2^n is exact
    // (or rounds below the result's precision) and at n = 0, near x = 0, the numerator is
    // -2 rp without cancellation. One division and a shorter polynomial than expm1's: ~30%
    // faster. 2.8 ulp with fused multiply-adds; without them (baseline) the products round
    // separately (4.3 ulp), so that build keeps the expm1 form below.
    const NonPositiveReduction<double> red = reduce_nonpositive<0>(-2.0 * a_clamped, 0.0);
    const ExpRationalParts parts = exp_rational_parts(red.r);
    const double two_n = pow2_from_shifted(red.shifted);
    const double one_minus = 1.0 - two_n;
    const double one_plus = 1.0 + two_n;
    const double numerator = parts.q * one_minus - parts.rp * one_plus;
    const double denominator = parts.q * one_plus - parts.rp * one_minus;
    return std::copysign(numerator / denominator, x);
  }
#endif
  const T m = expm1_nonpositive_in_range(static_cast<T>(-2) * a_clamped);
  return std::copysign(-m / (static_cast<T>(2) + m), x);
}

// exp(-scale x^2) without the rounding error of x^2 (which erfc would amplify by x^2):
// x^2 = square + error exactly, with the error from one fused multiply-add where the ISA has it,
// else from x = hi + lo with hi^2 exact (scale x^2 = scale hi^2 + scale lo (2 hi + lo)). scale
// must be a power of two.
// exp(-x^2 / 2) is 0 beyond this in both precisions; clamping |x| to it keeps the square finite.
template <typename T>
constexpr T kSquareZeroBeyond = static_cast<T>(40);

// exp_minus_scaled_square for a = |x| already clamped to [0, kSquareZeroBeyond] (or NaN).
template <typename T>
GW_ALWAYS_INLINE T exp_minus_scaled_square_clamped(T a, T scale) {
#if defined(__FMA__)
  const T square = a * a;
  const T error = std::fma(a, a, -square);
  return exp_nonpositive_minus(-(scale * square), scale * error);
#else
  using Tr = FloatTraits<T>;
  const T hi = from_ubits<T>(ubits_of<T>(a) & Tr::kSplitMask);
  const T lo = a - hi;
  return exp_nonpositive_minus(-(scale * (hi * hi)), scale * (lo * (hi + hi + lo)));
#endif
}

template <typename T>
GW_ALWAYS_INLINE T exp_minus_scaled_square(T x, T scale) {
  // NaN becomes kSquareZeroBeyond here; the callers' other factors carry the NaN.
  return exp_minus_scaled_square_clamped(min_of_magnitude(x, kSquareZeroBeyond<T>), scale);
}

// erfc(a) exp(a^2) for a >= 0 (NaN passes through), as F(u) / (a + 3) with
// u = (a - 3) / (a + 3) in [-1, 0.8] and F a polynomial fitted on a in [0, kErfcZeroBeyond]
// (Chebyshev interpolation in mpmath, coefficients rounded; the rounding dominates the error).
GW_ALWAYS_INLINE float erfc_scaled_poly(float u) {
  static constexpr float kCoefficients[] = {
      1.0740069e+00f,
      -8.833945e-01f,
      5.9022844e-01f,
      -3.1046665e-01f,
      1.1952727e-01f,
      -2.6836442e-02f,
      -1.2169178e-03f,
      3.0775692e-03f,
      -4.996759e-04f,
      -3.340298e-04f,
  };
  return polynomial(u, kCoefficients);
}
GW_ALWAYS_INLINE double erfc_scaled_poly(double u) {
  static constexpr double kCoefficients[] = {
      1.0740069070883398,
      -0.8833944531698824,
      0.5902283571040831,
      -0.31046726190069396,
      0.1195277612882283,
      -0.02682723462066803,
      -0.0012124166452256253,
      0.0030340619471894005,
      -0.0005483095170666786,
      -0.000276777415115837,
      0.00010756052074567876,
      3.0396044980787458e-05,
      -1.7467351714932773e-05,
      -4.742552914508181e-06,
      2.758912994833923e-06,
      9.852903308078803e-07,
      -4.004763804150826e-07,
      -2.1593353053488373e-07,
      4.205754747107241e-08,
      3.7023863025042324e-08,
      -1.186145559568988e-09,
      -2.918153016812884e-09,
  };
  return polynomial(u, kCoefficients);
}

template <typename T> struct ErfcRange;
// erfc(a) underflows to 0 beyond these; the fit of erfc_scaled_poly covers [0, kZeroBeyond].
template <> struct ErfcRange<float> { static constexpr float kZeroBeyond = 10.1f; };
template <> struct ErfcRange<double> { static constexpr double kZeroBeyond = 27.3; };

template <typename T>
GW_ALWAYS_INLINE T erfc_scaled(T a) {
  constexpr T kCentre = static_cast<T>(3);
  const T ac = a > ErfcRange<T>::kZeroBeyond ? ErfcRange<T>::kZeroBeyond : a;
  const T inverse = static_cast<T>(1) / (ac + kCentre);
  return erfc_scaled_poly((ac - kCentre) * inverse) * inverse;
}

// Phi(-b) exp(b^2 / 2) = erfc(b / sqrt 2) exp(b^2 / 2) / 2 for b >= 0 (NaN passes through):
// erfc_scaled with a = b / sqrt 2 written in b, G(v) / (b + 3 sqrt 2),
// v = (b - 3 sqrt 2) / (b + 3 sqrt 2), G = erfc_scaled_poly's coefficients times sqrt(2) / 2
// (rounded again). Saves gelu the scaling of b and of the result. Past the fit (b beyond
// sqrt 2 ErfcRange::kZeroBeyond, up to kSquareZeroBeyond) G stays within [0.6, 0.8], and
// exp(-b^2 / 2) is 0 or the smallest subnormal there, so the product rounds to 0.
GW_ALWAYS_INLINE float normal_tail_scaled_poly(float v) {
  static constexpr float kCoefficients[] = {
      0.7594375610351562f,    -0.624654233455658f,    0.4173545241355896f,
      -0.2195330709218979f,   0.08451854437589645f,   -0.018976230174303055f,
      -0.0008604907779954374f, 0.002176170004531741f, -0.0003533242270350456f,
      -0.00023619474086444825f,
  };
  return polynomial(v, kCoefficients);
}
GW_ALWAYS_INLINE double normal_tail_scaled_poly(double v) {
  static constexpr double kCoefficients[] = {
      0.7594375670433554,     -0.6246542082990059,    0.41735447375689233,
      -0.21953350622640055,   0.08451889054695313,    -0.01896971952075688,
      -0.0008573080314624843, 0.0021454057773976857,  -0.00038771337770696947,
      -0.0001957111871076924, 7.605677360722578e-05,  2.1493249527166134e-05,
      -1.2351282846999434e-05, -3.35349132598476e-06, 1.9508460873507534e-06,
      6.967054743517889e-07,  -2.831795642965484e-07, -1.526880637267687e-07,
      2.9739177016870434e-08, 2.617982461072931e-08,  -8.387315686455434e-10,
      -2.0634457867283716e-09,
  };
  return polynomial(v, kCoefficients);
}
template <typename T>
GW_ALWAYS_INLINE T normal_tail_scaled(T b) {
  constexpr T kCentre = static_cast<T>(4.24264068711928514640);  // 3 sqrt 2
  const T inverse = static_cast<T>(1) / (b + kCentre);
  return normal_tail_scaled_poly((b - kCentre) * inverse) * inverse;
}

// erf(x) / x = P(x^2) for |x| <= 1 (fitted like erfc_scaled_poly).
GW_ALWAYS_INLINE float erf_small_poly(float z) {
  static constexpr float kCoefficients[] = {
      1.1283791e+00f,
      -3.7612343e-01f,
      1.1280317e-01f,
      -2.6715055e-02f,
      4.921762e-03f,
      -5.64806e-04f,
  };
  return polynomial(z, kCoefficients);
}
GW_ALWAYS_INLINE double erf_small_poly(double z) {
  static constexpr double kCoefficients[] = {
      1.1283791670955126,
      -0.37612638903183543,
      0.11283791670945006,
      -0.02686617064323777,
      0.0052239776071164225,
      -0.0008548325975389692,
      0.00012055294904839707,
      -1.492473690741966e-05,
      1.6447424703317362e-06,
      -1.6208483801871705e-07,
      1.3720064546777686e-08,
      -7.795898827002142e-10,
  };
  return polynomial(z, kCoefficients);
}

// erfc(|x|): relative accuracy over the whole range, including the subnormal tail.
template <typename T>
GW_ALWAYS_INLINE T erfc_abs(T x) {
  const T a = std::fabs(x);
  return erfc_scaled(a) * exp_minus_scaled_square(a, static_cast<T>(1));
}

// erfc(x): 1 - erf(x) near 0, where erfc is close to 1 and erf small enough to keep its bits.
template <typename T>
GW_ALWAYS_INLINE T verfc(T x) {
  const T near_zero = static_cast<T>(1) - x * erf_small_poly(x * x);
  const T tail = erfc_abs(x);
  const T far = x < static_cast<T>(0) ? static_cast<T>(2) - tail : tail;
  return std::fabs(x) < static_cast<T>(0.5) ? near_zero : far;
}

// erf(x): the odd polynomial near 0 keeps the relative accuracy of tiny x; 1 - erfc beyond.
template <typename T>
GW_ALWAYS_INLINE T verf(T x) {
  const T small = x * erf_small_poly(x * x);
  const T large = std::copysign(static_cast<T>(1) - erfc_abs(x), x);
  return std::fabs(x) < static_cast<T>(1) ? small : large;
}

}  // namespace GW_ISA
}  // namespace gradwatch
