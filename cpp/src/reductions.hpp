// Sums of squares shared by the kernel headers (optimiser norms, telemetry, gradient norms),
// compiled once per ISA inside the including kernel file's namespace (see gradwatch/cpu_dispatch.hpp).
//
// Written with GCC's generic vectors rather than `omp simd reduction`: GCC ends such a reduction by
// adding the lanes one by one in scalar code, 8 dependent additions per accumulator, which costs
// more than the sums themselves on the short rows (64 to 256 elements) these helpers see. Here four
// vector accumulators hide the latency of the multiply-adds and the lanes are added as a tree. The
// order of every addition is fixed by n alone (for a given ISA), so results do not depend on the
// thread count.
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including reductions.hpp"
#endif

#include <cstdint>
#include <cstring>

#include "vecmath.hpp"  // GW_ALWAYS_INLINE

namespace gradwatch {
namespace GW_ISA {

constexpr int kVectorBytes = 32;

// A vector of 32 bytes of T, lowered by GCC to the including ISA's registers (two SSE registers
// in the baseline build, one AVX register otherwise).
template <typename T>
struct VectorOf {
  typedef T type __attribute__((vector_size(kVectorBytes)));
};
template <typename T>
using Vector = typename VectorOf<T>::type;
template <typename T>
constexpr int64_t kLanes = kVectorBytes / static_cast<int64_t>(sizeof(T));

template <typename T>
GW_ALWAYS_INLINE Vector<T> load_vector(const T* p) {
  Vector<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
GW_ALWAYS_INLINE void store_vector(T* p, Vector<T> v) {
  std::memcpy(p, &v, sizeof v);
}

// The lanes of v added as a tree.
template <typename T>
GW_ALWAYS_INLINE T lane_sum(Vector<T> v) {
  T t[kLanes<T>];
  std::memcpy(t, &v, sizeof v);
  for (int64_t width = kLanes<T> / 2; width > 0; width /= 2) {
    for (int64_t k = 0; k < width; ++k) t[k] += t[k + width];
  }
  return t[0];
}

// The sum over j in [0, n) of d(j)^2, with vector_at(j) the vector of d(j .. j + lanes) and
// scalar_at(j) the value d(j), in T.
template <typename T, typename VectorAt, typename ScalarAt>
GW_ALWAYS_INLINE T sum_of_squares_of(int64_t n, const VectorAt& vector_at,
                                     const ScalarAt& scalar_at) {
  constexpr int64_t W = kLanes<T>;
  Vector<T> s0 = {}, s1 = {}, s2 = {}, s3 = {};
  int64_t j = 0;
  for (; j + 4 * W <= n; j += 4 * W) {
    const Vector<T> d0 = vector_at(j), d1 = vector_at(j + W), d2 = vector_at(j + 2 * W);
    const Vector<T> d3 = vector_at(j + 3 * W);
    s0 += d0 * d0;
    s1 += d1 * d1;
    s2 += d2 * d2;
    s3 += d3 * d3;
  }
  for (; j + W <= n; j += W) {
    const Vector<T> d = vector_at(j);
    s0 += d * d;
  }
  T total = lane_sum<T>((s0 + s1) + (s2 + s3));
  for (; j < n; ++j) {
    const T d = scalar_at(j);
    total += d * d;
  }
  return total;
}

// The sum of x^2 over x (n), in T.
template <typename T>
GW_ALWAYS_INLINE T sum_of_squares(const T* x, int64_t n) {
  return sum_of_squares_of<T>(
      n, [x](int64_t j) { return load_vector(x + j); }, [x](int64_t j) { return x[j]; });
}

// The sum of x^2 over x (n) in double, for the rare ranges whose float sum is not trusted.
template <typename T>
inline double double_sum_of_squares(const T* x, int64_t n) {
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < n; ++j) total += static_cast<double>(x[j]) * static_cast<double>(x[j]);
  return total;
}

}  // namespace GW_ISA
}  // namespace gradwatch
