// Kernel bodies of telemetry_passes.hpp, compiled once per ISA inside the network's activation
// pass (network_kernels.hpp includes this file; see gradwatch/cpu_dispatch.hpp).
// Each row of a tile is summed right after the pass has written it, while it is in L1: the
// statistics cost no extra pass over the activations.
// Dims: N = batch, O = features; tiles as in network_passes.hpp.
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including telemetry_kernels.hpp"
#endif

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gradwatch/activations.hpp"
#include "network_passes.hpp"
#include "reductions.hpp"
#include "telemetry_passes.hpp"
#include "vecmath.hpp"

namespace gradwatch {
namespace GW_ISA {

// Saturation bands (gradwatch/telemetry.hpp): sigmoid outside [0.01, 0.99], tanh |a| > 0.99,
// decided as in double (saturation_band).
constexpr double kSigmoidSaturatedLow = 0.01;
constexpr double kSigmoidSaturatedHigh = 0.99;
constexpr double kTanhSaturated = 0.99;

constexpr bool telemetry_saturates(Activation kind) {
  return kind == Activation::sigmoid || kind == Activation::tanh;
}
constexpr bool telemetry_can_die(Activation kind) {
  return kind == Activation::relu || kind == Activation::leaky_relu;
}

// The band of kKind in T: for float, the edges are the floats nearest inside the double band,
// so that comparing a float with them decides exactly as comparing it, widened, with the
// double edges (a < 0.01 exactly when a < low, the smallest float >= 0.01).
template <typename T>
struct SaturationBand {
  T low, high;
};
template <typename T>
inline SaturationBand<T> saturation_band(double low, double high) {
  T l = static_cast<T>(low), h = static_cast<T>(high);
  if (static_cast<double>(l) < low) l = std::nextafter(l, static_cast<T>(1));
  if (static_cast<double>(h) > high) h = std::nextafter(h, static_cast<T>(0));
  return {l, h};
}

// The band of kKind in T, computed once (tanh: [-0.99, 0.99]; kinds that do not saturate: unused).
template <Activation kKind, typename T>
SaturationBand<T> kind_band() {
  static const SaturationBand<T> band =
      kKind == Activation::sigmoid ? saturation_band<T>(kSigmoidSaturatedLow, kSigmoidSaturatedHigh)
                                   : saturation_band<T>(-kTanhSaturated, kTanhSaturated);
  return band;
}

// 1 for an entry of a outside the band of kKind (tanh: |a| > band.high); NaN is not saturated.
template <Activation kKind, typename T>
GW_ALWAYS_INLINE int saturated_element(T a, const SaturationBand<T>& band) {
  if constexpr (kKind == Activation::sigmoid) {
    return static_cast<int>((a < band.low) | (a > band.high));
  } else if constexpr (kKind == Activation::tanh) {
    return static_cast<int>(std::fabs(a) > band.high);  // the band is symmetric
  } else {
    return 0;
  }
}

// 1 for NaN or infinity (v - v is 0 exactly for finite v), branch-free.
template <typename T>
GW_ALWAYS_INLINE int nonfinite_element(T v) {
  return static_cast<int>(!((v - v) == static_cast<T>(0)));
}

// A float row's sums of squares, added in float lanes (8 per AVX2 vector, each lane adding at
// most O / 8 terms: relative error ~1e-6, far inside the float32 tolerance of the statistics),
// are trusted inside [kFloatSquaresLow, kFloatSquaresHigh]: there no term overflows and the
// terms lost to float underflow are negligible. A row outside it (zero, tiny, huge, NaN) is
// summed again in double, so that extreme values give the same statistics as before.
constexpr double kFloatSquaresLow = 1e-30;
constexpr double kFloatSquaresHigh = 1e30;

GW_ALWAYS_INLINE bool float_squares_trusted(double squares) {
  return squares >= kFloatSquaresLow && squares <= kFloatSquaresHigh;
}

// The sums of one row [f0, f1) in accumulators of type Acc (T or double); the count in int (a
// row has fewer than 2^31 entries).
template <Activation kKind, typename Acc, typename T, typename Preact>
GW_ALWAYS_INLINE void telemetry_row_sums(Acc (&sums)[4], int& saturated, const T* a, int64_t f0,
                                         int64_t f1, const Preact& preact) {
  // The two halves of the range with accumulators of their own: two independent chains of
  // additions, whose latency (not the arithmetic) limits a single set.
  const int64_t half = (f1 - f0) / 2, g0 = f0 + half;
  Acc preact_sum0 = 0, preact_squares0 = 0, act_sum0 = 0, act_squares0 = 0;
  Acc preact_sum1 = 0, preact_squares1 = 0, act_sum1 = 0, act_squares1 = 0;
  int saturated0 = 0, saturated1 = 0;
  const SaturationBand<Acc> band = kind_band<kKind, Acc>();
#pragma omp simd reduction(+ : preact_sum0, preact_squares0, act_sum0, act_squares0, saturated0, \
                               preact_sum1, preact_squares1, act_sum1, act_squares1, saturated1)
  for (int64_t k = 0; k < half; ++k) {
    const Acc h0 = static_cast<Acc>(preact(f0 + k)), h1 = static_cast<Acc>(preact(g0 + k));
    const Acc y0 = static_cast<Acc>(a[f0 + k]), y1 = static_cast<Acc>(a[g0 + k]);
    preact_sum0 += h0;
    preact_squares0 += h0 * h0;
    act_sum0 += y0;
    act_squares0 += y0 * y0;
    saturated0 += saturated_element<kKind>(y0, band);
    preact_sum1 += h1;
    preact_squares1 += h1 * h1;
    act_sum1 += y1;
    act_squares1 += y1 * y1;
    saturated1 += saturated_element<kKind>(y1, band);
  }
  for (int64_t j = g0 + half; j < f1; ++j) {  // the last element of an odd range
    const Acc h = static_cast<Acc>(preact(j)), y = static_cast<Acc>(a[j]);
    preact_sum0 += h;
    preact_squares0 += h * h;
    act_sum0 += y;
    act_squares0 += y * y;
    saturated0 += saturated_element<kKind>(y, band);
  }
  sums[0] = preact_sum0 + preact_sum1;
  sums[1] = preact_squares0 + preact_squares1;
  sums[2] = act_sum0 + act_sum1;
  sums[3] = act_squares0 + act_squares1;
  saturated = saturated0 + saturated1;
}

// The NaN and infinite entries of z and a in [f0, f1).
template <typename T>
int telemetry_nonfinite(const T* z, const T* a, int64_t f0, int64_t f1) {
  int count = 0;
  for (int64_t j = f0; j < f1; ++j) count += nonfinite_element(z[j]) + nonfinite_element(a[j]);
  return count;
}

// The sums of elements [f0, f1): in float lanes for float, again in double when the float
// squares are not trusted. Non-finite entries are counted only when a sum of squares is not
// finite: a NaN or infinity in z makes h (z itself, or batch norm's affine map of it) non-finite,
// one in a makes a^2 so, and every non-finite term makes its sum non-finite.
template <Activation kKind, typename T, typename Preact>
GW_ALWAYS_INLINE void telemetry_range_sums(double (&sums)[4], int& saturated, int& nonfinite,
                                           const T* z, const T* a, int64_t f0, int64_t f1,
                                           const Preact& preact) {
  nonfinite = 0;
  if constexpr (std::is_same_v<T, float>) {
    float float_sums[4];
    telemetry_row_sums<kKind, float>(float_sums, saturated, a, f0, f1, preact);
    for (int k = 0; k < 4; ++k) sums[k] = static_cast<double>(float_sums[k]);
    if (float_squares_trusted(sums[1]) && float_squares_trusted(sums[3])) return;
  }
  telemetry_row_sums<kKind, double>(sums, saturated, a, f0, f1, preact);
  if (!std::isfinite(sums[1]) || !std::isfinite(sums[3])) {
    nonfinite = telemetry_nonfinite(z, a, f0, f1);
  }
}

// acc (kTileSums) += the sums of elements [f0, f1), as telemetry_range_sums computes them.
template <Activation kKind, typename T, typename Preact>
GW_ALWAYS_INLINE void telemetry_add_range_sums(double* acc, const T* z, const T* a, int64_t f0,
                                               int64_t f1, const Preact& preact) {
  int saturated = 0, nonfinite = 0;
  double sums[4];
  telemetry_range_sums<kKind>(sums, saturated, nonfinite, z, a, f0, f1, preact);
  acc[kPreactSum] += sums[0];
  acc[kPreactSquares] += sums[1];
  acc[kActSum] += sums[2];
  acc[kActSquares] += sums[3];
  acc[kSaturated] += static_cast<double>(saturated);
  acc[kNonfinite] += static_cast<double>(nonfinite);
}

// The sum of squares of a (n), as telemetry_range_sums sums them.
template <typename T>
GW_ALWAYS_INLINE double telemetry_squares(const T* a, int64_t n) {
  const double squares = static_cast<double>(sum_of_squares(a, n));
  if (!std::is_same_v<T, float> || float_squares_trusted(squares)) return squares;
  return double_sum_of_squares(a, n);
}

// Rows per group and columns per block of telemetry_add_unit_rows.
constexpr int64_t kUnitRows = 32;
constexpr int64_t kUnitColumns = 256;

// u += the sum of the unit vectors a[r] / ||a[r]|| over rows [r0, r1) (rows of norm 0 are left
// out; a NaN norm is not, so NaN reaches the cosine), and nonzero += the rows added. Rows go in
// groups whose sum is formed in T, block of columns by block of columns in L1, then added to u in
// double: one conversion per group instead of one per row. For float, a group holding a row whose
// squares are outside the trusted range (1 / ||a|| not a normal float, or NaN) is added row by
// row in double instead.
// a: (N, O)  u: (O)
template <typename T>
void telemetry_add_unit_rows(double* u, int64_t& nonzero, const T* a, int64_t r0, int64_t r1,
                             int64_t O) {
  for (int64_t g0 = r0; g0 < r1; g0 += kUnitRows) {
    const int64_t g1 = r1 - g0 < kUnitRows ? r1 : g0 + kUnitRows;
    const int64_t count = g1 - g0;
    double squares[kUnitRows];
    for (int64_t r = g0; r < g1; ++r) squares[r - g0] = telemetry_squares(a + r * O, O);
    // The inverse norms in one vectorised loop: the latency of a square root and a division
    // per row, one row after the other, cost more than the rows' sums.
    T inverse[kUnitRows];
    int64_t added = 0, untrusted = 0;
#pragma omp simd reduction(+ : added, untrusted)
    for (int64_t k = 0; k < count; ++k) {
      const double s = squares[k];
      inverse[k] = s == 0 ? T(0) : static_cast<T>(1.0 / std::sqrt(s));
      added += s == 0 ? 0 : 1;
      untrusted += s == 0 || float_squares_trusted(s) ? 0 : 1;
    }
    nonzero += added;
    if (std::is_same_v<T, float> && untrusted > 0) {
      for (int64_t r = g0; r < g1; ++r) {
        if (squares[r - g0] == 0) continue;
        const double row_inverse = 1.0 / std::sqrt(squares[r - g0]);
        const T* row = a + r * O;
#pragma omp simd
        for (int64_t j = 0; j < O; ++j) u[j] += static_cast<double>(row[j]) * row_inverse;
      }
      continue;
    }
    for (int64_t c0 = 0; c0 < O; c0 += kUnitColumns) {
      const int64_t width = O - c0 < kUnitColumns ? O - c0 : kUnitColumns;
      T group_sum[kUnitColumns];
      const T* first = a + g0 * O + c0;
      const T first_inverse = inverse[0];
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) group_sum[j] = first[j] * first_inverse;
      for (int64_t r = g0 + 1; r < g1; ++r) {
        const T* row = a + r * O + c0;
        const T row_inverse = inverse[r - g0];
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) group_sum[j] += row[j] * row_inverse;
      }
      double* u_block = u + c0;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) u_block[j] += static_cast<double>(group_sum[j]);
    }
  }
}

// A tile starts: its part of the chunk's alive flags (and unit sums, when it spans whole rows)
// is cleared. alive, unit_sums: (chunks, O)
inline void telemetry_start_tile(const ForwardStatsArgs& s, const PassTile& t, int64_t O,
                                 bool whole_rows) {
  if (s.alive != nullptr) {
    std::memset(s.alive + t.chunk * O + t.f0, 0, static_cast<size_t>(t.f1 - t.f0));
  }
  if (s.unit_sums != nullptr && whole_rows) {
    double* u = s.unit_sums + t.chunk * O;
    for (int64_t j = 0; j < O; ++j) u[j] = 0.0;
  }
}

// The sums of one row r of the tile into acc (kTileSums), given the activation's input of
// element j as preact(j).
// z, a: (N, O)  alive: (chunks, O)
template <Activation kKind, typename T, typename Preact>
GW_ALWAYS_INLINE void telemetry_row(double* acc, const ForwardStatsArgs& s, const T* z, const T* a,
                                    const PassTile& t, int64_t O, const Preact& preact) {
  uint8_t* alive = s.alive != nullptr ? s.alive + t.chunk * O : nullptr;
  if constexpr (telemetry_can_die(kKind)) {
    if (alive != nullptr) {
#pragma omp simd
      for (int64_t j = t.f0; j < t.f1; ++j) {
        alive[j] = static_cast<uint8_t>(alive[j] | static_cast<uint8_t>(!(preact(j) <= 0)));
      }
    }
  }
  telemetry_add_range_sums<kKind>(acc, z, a, t.f0, t.f1, preact);
}

// One row's statistics in the forward tile: h is z (no batch norm), the kept h, or recomputed
// from z as the pass computed it.
// h, a, z: (N, O)  shift, scale, offset: (O)
template <Activation kKind, typename T>
void telemetry_forward_row(double* acc, const HiddenForwardArgs<T>& p, int64_t row,
                           const PassTile& t) {
  const ForwardStatsArgs& s = *p.stats;
  const int64_t at = row * p.O;
  const T* z = p.z + at;
  const T* a = p.a + at;
  if (p.scale == nullptr) {
    telemetry_row<kKind>(acc, s, z, a, t, p.O, [z](int64_t j) { return z[j]; });
  } else if (p.h != nullptr) {
    const T* h = p.h + at;
    telemetry_row<kKind>(acc, s, z, a, t, p.O, [h](int64_t j) { return h[j]; });
  } else {
    const T *shift = p.shift, *scale = p.scale, *offset = p.offset;
    telemetry_row<kKind>(acc, s, z, a, t, p.O, [=](int64_t j) {
      return (z[j] - shift[j]) * scale[j] + offset[j];
    });
  }
}

// The unit sums of a tile that spans whole rows, once the pass has written it (the rows are
// still in cache): the chunk's unit_sums += the tile's rows as unit vectors.
// a: (N, O)  unit_sums: (chunks, O)
template <typename T>
void telemetry_tile_unit_sums(int64_t& nonzero, const ForwardStatsArgs& s, const T* a,
                              const PassTile& t, int64_t O) {
  if (s.unit_sums == nullptr) return;
  telemetry_add_unit_rows(s.unit_sums + t.chunk * O, nonzero, a, t.r0, t.r1, O);
}

// Elements per block of telemetry_flat_tile's sums: 128 per float lane of an AVX2 vector.
constexpr int64_t kFlatBlock = 1024;
// Columns per block of telemetry_alive_from_maxima's running maxima (1 KiB in float, in L1).
constexpr int64_t kAliveColumns = 256;

// alive (O) |= 1 at each feature f where some row of h[r0:r1] (row stride O) is > 0, for h
// without NaN: the rows' maximum per feature, four rows per sweep, then one comparison per
// feature. Setting a flag byte per element, row by row, cost as much as the tile's sums.
template <typename T>
void telemetry_alive_from_maxima(uint8_t* alive, const T* h, int64_t r0, int64_t r1, int64_t O) {
  for (int64_t c0 = 0; c0 < O; c0 += kAliveColumns) {
    const int64_t width = O - c0 < kAliveColumns ? O - c0 : kAliveColumns;
    T most[kAliveColumns];
    const T* first = h + r0 * O + c0;
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) most[j] = first[j];
    int64_t r = r0 + 1;
    for (; r + 4 <= r1; r += 4) {
      const T* h0 = h + r * O + c0;
      const T* h1 = h0 + O;
      const T* h2 = h1 + O;
      const T* h3 = h2 + O;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) {
        const T m01 = h0[j] > h1[j] ? h0[j] : h1[j];
        const T m23 = h2[j] > h3[j] ? h2[j] : h3[j];
        const T m = m01 > m23 ? m01 : m23;
        most[j] = m > most[j] ? m : most[j];
      }
    }
    for (; r < r1; ++r) {
      const T* row = h + r * O + c0;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) most[j] = row[j] > most[j] ? row[j] : most[j];
    }
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) {
      alive[c0 + j] = static_cast<uint8_t>(alive[c0 + j] | static_cast<uint8_t>(most[j] > 0));
    }
  }
}

// The statistics of a tile that spans whole rows, once the pass has written it, with the
// activation's input stored (z or the kept h): the rows of the tile are contiguous, so the
// element sums run over them as one range in blocks of kFlatBlock (with rows of 64 features, the
// reductions at the end of each row's loop cost as much as the sums themselves); then the alive
// flags, from the features' maxima unless h holds a NaN (its sum is then NaN), which is alive as
// !(h <= 0) says and a maximum would drop: then row by row.
// preact, z, a: (N, O)  alive: (chunks, O)
template <Activation kKind, typename T>
void telemetry_flat_tile(double* acc, const ForwardStatsArgs& s, const T* preact, const T* z,
                         const T* a, const PassTile& t, int64_t O) {
  const auto h = [preact](int64_t j) { return preact[j]; };
  const int64_t e1 = t.r1 * O;
  for (int64_t b0 = t.r0 * O; b0 < e1; b0 += kFlatBlock) {
    const int64_t b1 = e1 - b0 < kFlatBlock ? e1 : b0 + kFlatBlock;
    telemetry_add_range_sums<kKind>(acc, z, a, b0, b1, h);
  }
  if constexpr (telemetry_can_die(kKind)) {
    if (s.alive == nullptr) return;
    uint8_t* alive = s.alive + t.chunk * O;
    if (!std::isnan(acc[kPreactSum])) {
      telemetry_alive_from_maxima(alive, preact, t.r0, t.r1, O);
      return;
    }
    for (int64_t r = t.r0; r < t.r1; ++r) {
      const T* h_row = preact + r * O;
#pragma omp simd
      for (int64_t j = 0; j < O; ++j) {
        alive[j] = static_cast<uint8_t>(alive[j] | static_cast<uint8_t>(!(h_row[j] <= 0)));
      }
    }
  }
}

// A tile ends: its sums go to row tile.index of tile_sums (and its chunk's row count).
inline void telemetry_end_tile(const ForwardStatsArgs& s, const PassTile& t, const double* acc,
                               int64_t nonzero, bool whole_rows) {
  std::memcpy(s.tile_sums + t.index * kTileSums, acc, sizeof(double) * kTileSums);
  if (s.unit_sums != nullptr && whole_rows) s.nonzero_rows[t.chunk] = nonzero;
}

// The unit sums of rows [r0, r1) (chunk `chunk`) after a pass whose tiles split the features:
// each row's norm needs all of them. Only small batches split features (PassGrid).
// a: (N, O)  unit_sums: (chunks, O)  nonzero_rows: (chunks)
template <typename T>
void telemetry_unit_sums_chunk(double* unit_sums, int64_t* nonzero_rows, const T* a, int64_t r0,
                               int64_t r1, int64_t chunk, int64_t O) {
  double* u = unit_sums + chunk * O;
  for (int64_t j = 0; j < O; ++j) u[j] = 0.0;
  int64_t nonzero = 0;
  telemetry_add_unit_rows(u, nonzero, a, r0, r1, O);
  nonzero_rows[chunk] = nonzero;
}

}  // namespace GW_ISA
}  // namespace gradwatch
