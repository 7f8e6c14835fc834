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
    return static_cast<int>((a > band.high) | (a < -band.high));
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

// The sums of one row [f0, f1) in accumulators of type Acc (T or double); counts in int
// (a row has fewer than 2^31 entries).
template <Activation kKind, typename Acc, typename T, typename Preact>
GW_ALWAYS_INLINE void telemetry_row_sums(Acc (&sums)[4], int& saturated, int& nonfinite,
                                         const T* z, const T* a, int64_t f0, int64_t f1,
                                         const Preact& preact) {
  Acc preact_sum = 0, preact_squares = 0, act_sum = 0, act_squares = 0;
  int saturated_count = 0, nonfinite_count = 0;
  const SaturationBand<Acc> band = kind_band<kKind, Acc>();
#pragma omp simd reduction(+ : preact_sum, preact_squares, act_sum, act_squares, saturated_count, nonfinite_count)
  for (int64_t j = f0; j < f1; ++j) {
    const Acc h = static_cast<Acc>(preact(j));
    const Acc y = static_cast<Acc>(a[j]);
    preact_sum += h;
    preact_squares += h * h;
    act_sum += y;
    act_squares += y * y;
    saturated_count += saturated_element<kKind>(y, band);
    nonfinite_count += nonfinite_element(z[j]) + nonfinite_element(a[j]);
  }
  sums[0] = preact_sum;
  sums[1] = preact_squares;
  sums[2] = act_sum;
  sums[3] = act_squares;
  saturated = saturated_count;
  nonfinite = nonfinite_count;
}

// The sums of elements [f0, f1): in float lanes for float, again in double when the float
// squares are not trusted.
template <Activation kKind, typename T, typename Preact>
GW_ALWAYS_INLINE void telemetry_range_sums(double (&sums)[4], int& saturated, int& nonfinite,
                                           const T* z, const T* a, int64_t f0, int64_t f1,
                                           const Preact& preact) {
  if constexpr (std::is_same_v<T, float>) {
    float float_sums[4];
    telemetry_row_sums<kKind, float>(float_sums, saturated, nonfinite, z, a, f0, f1, preact);
    for (int k = 0; k < 4; ++k) sums[k] = static_cast<double>(float_sums[k]);
    if (float_squares_trusted(sums[1]) && float_squares_trusted(sums[3])) return;
  }
  telemetry_row_sums<kKind, double>(sums, saturated, nonfinite, z, a, f0, f1, preact);
}

// The sum of squares of a (n), as telemetry_range_sums sums them.
template <typename T>
GW_ALWAYS_INLINE double telemetry_squares(const T* a, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    float float_squares = 0.0f;
#pragma omp simd reduction(+ : float_squares)
    for (int64_t j = 0; j < n; ++j) float_squares += a[j] * a[j];
    if (float_squares_trusted(static_cast<double>(float_squares))) {
      return static_cast<double>(float_squares);
    }
  }
  double squares = 0.0;
#pragma omp simd reduction(+ : squares)
  for (int64_t j = 0; j < n; ++j) squares += static_cast<double>(a[j]) * static_cast<double>(a[j]);
  return squares;
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
// element j as preact(j). With whole_rows, the row's unit vector a / ||a|| is added to the
// chunk's unit sums (rows of norm 0 are left out; a NaN norm is not, so NaN reaches the cosine).
// z, a: (N, O)  alive, unit_sums: (chunks, O)
template <Activation kKind, typename T, typename Preact>
GW_ALWAYS_INLINE void telemetry_row(double* acc, int64_t& nonzero, const ForwardStatsArgs& s,
                                    const T* z, const T* a, const PassTile& t, int64_t O,
                                    bool whole_rows, const Preact& preact) {
  uint8_t* alive = s.alive != nullptr ? s.alive + t.chunk * O : nullptr;
  if constexpr (telemetry_can_die(kKind)) {
    if (alive != nullptr) {
#pragma omp simd
      for (int64_t j = t.f0; j < t.f1; ++j) {
        alive[j] = static_cast<uint8_t>(alive[j] | static_cast<uint8_t>(!(preact(j) <= 0)));
      }
    }
  }
  int saturated = 0, nonfinite = 0;
  double sums[4];
  telemetry_range_sums<kKind>(sums, saturated, nonfinite, z, a, t.f0, t.f1, preact);
  const double preact_sum = sums[0], preact_squares = sums[1], act_sum = sums[2];
  const double act_squares = sums[3];
  acc[kPreactSum] += preact_sum;
  acc[kPreactSquares] += preact_squares;
  acc[kActSum] += act_sum;
  acc[kActSquares] += act_squares;
  acc[kSaturated] += static_cast<double>(saturated);
  acc[kNonfinite] += static_cast<double>(nonfinite);
  if (s.unit_sums != nullptr && whole_rows && !(act_squares == 0)) {
    const double inverse = 1.0 / std::sqrt(act_squares);
    double* u = s.unit_sums + t.chunk * O;
#pragma omp simd
    for (int64_t j = 0; j < O; ++j) u[j] += static_cast<double>(a[j]) * inverse;
    ++nonzero;
  }
}

// One row's statistics in the forward tile: h is z (no batch norm), the kept h, or recomputed
// from z as the pass computed it.
// h, a, z: (N, O)  shift, scale, offset: (O)
template <Activation kKind, typename T>
void telemetry_forward_row(double* acc, int64_t& nonzero, const HiddenForwardArgs<T>& p,
                           int64_t row, const PassTile& t, bool whole_rows) {
  const ForwardStatsArgs& s = *p.stats;
  const int64_t at = row * p.O;
  const T* z = p.z + at;
  const T* a = p.a + at;
  if (p.scale == nullptr) {
    telemetry_row<kKind>(acc, nonzero, s, z, a, t, p.O, whole_rows,
                         [z](int64_t j) { return z[j]; });
  } else if (p.h != nullptr) {
    const T* h = p.h + at;
    telemetry_row<kKind>(acc, nonzero, s, z, a, t, p.O, whole_rows,
                         [h](int64_t j) { return h[j]; });
  } else {
    const T *shift = p.shift, *scale = p.scale, *offset = p.offset;
    telemetry_row<kKind>(acc, nonzero, s, z, a, t, p.O, whole_rows, [=](int64_t j) {
      return (z[j] - shift[j]) * scale[j] + offset[j];
    });
  }
}

// Elements per block of telemetry_flat_tile's sums: 128 per float lane of an AVX2 vector.
constexpr int64_t kFlatBlock = 1024;

// The statistics of a tile that spans whole rows, once the pass has written it, with the
// activation's input stored (z or the kept h): the rows of the tile are contiguous, so the
// element sums run over them as one range in blocks of kFlatBlock (with rows of 64 features, the
// reductions at the end of each row's loop cost as much as the sums themselves); then, row by
// row, the alive flags and the unit sums, which need each row apart.
// preact, z, a: (N, O)  alive, unit_sums: (chunks, O)
template <Activation kKind, typename T>
void telemetry_flat_tile(double* acc, int64_t& nonzero, const ForwardStatsArgs& s,
                         const T* preact, const T* z, const T* a, const PassTile& t, int64_t O) {
  const auto h = [preact](int64_t j) { return preact[j]; };
  const int64_t e1 = t.r1 * O;
  for (int64_t b0 = t.r0 * O; b0 < e1; b0 += kFlatBlock) {
    const int64_t b1 = e1 - b0 < kFlatBlock ? e1 : b0 + kFlatBlock;
    int saturated = 0, nonfinite = 0;
    double sums[4];
    telemetry_range_sums<kKind>(sums, saturated, nonfinite, z, a, b0, b1, h);
    acc[kPreactSum] += sums[0];
    acc[kPreactSquares] += sums[1];
    acc[kActSum] += sums[2];
    acc[kActSquares] += sums[3];
    acc[kSaturated] += static_cast<double>(saturated);
    acc[kNonfinite] += static_cast<double>(nonfinite);
  }
  uint8_t* alive = s.alive != nullptr ? s.alive + t.chunk * O : nullptr;
  double* u = s.unit_sums != nullptr ? s.unit_sums + t.chunk * O : nullptr;
  for (int64_t r = t.r0; r < t.r1; ++r) {
    const T* h_row = preact + r * O;
    const T* a_row = a + r * O;
    if constexpr (telemetry_can_die(kKind)) {
      if (alive != nullptr) {
#pragma omp simd
        for (int64_t j = 0; j < O; ++j) {
          alive[j] = static_cast<uint8_t>(alive[j] | static_cast<uint8_t>(!(h_row[j] <= 0)));
        }
      }
    }
    if (u == nullptr) continue;
    const double squares = telemetry_squares(a_row, O);
    if (squares == 0) continue;
    const double inverse = 1.0 / std::sqrt(squares);
#pragma omp simd
    for (int64_t j = 0; j < O; ++j) u[j] += static_cast<double>(a_row[j]) * inverse;
    ++nonzero;
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
  for (int64_t r = r0; r < r1; ++r) {
    const T* row = a + r * O;
    double squares = 0.0;
#pragma omp simd reduction(+ : squares)
    for (int64_t j = 0; j < O; ++j) squares += static_cast<double>(row[j]) * static_cast<double>(row[j]);
    if (squares == 0) continue;
    const double inverse = 1.0 / std::sqrt(squares);
#pragma omp simd
    for (int64_t j = 0; j < O; ++j) u[j] += static_cast<double>(row[j]) * inverse;
    ++nonzero;
  }
  nonzero_rows[chunk] = nonzero;
}

}  // namespace GW_ISA
}  // namespace gradwatch
