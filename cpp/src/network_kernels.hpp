// Kernel bodies of network_passes.hpp, compiled once per ISA (see gradwatch/cpu_dispatch.hpp).
// They reuse the scalar math of the other kernel files (activations, batch norm, dense, losses),
// compiled here in the same ISA namespace. Each works on one tile and never starts threads: the
// network runs them from its own parallel region, tile by tile.
// Dims: N = batch, O = F = features, C = outputs; tiles as in network_passes.hpp.
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including network_kernels.hpp"
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "activations_kernels.hpp"
#include "batchnorm_kernels.hpp"
#include "dense_kernels.hpp"
#include "loss_kernels.hpp"
#include "network_passes.hpp"
#include "telemetry_kernels.hpp"

namespace gradwatch {
namespace GW_ISA {

// ---- dropout masks ---------------------------------------------------------------------------
constexpr uint32_t kNetPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kNetPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kNetPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kNetPhiloxW1 = 0xBB67AE85u;
// Philox blocks computed at once, as vectors of counters.
constexpr int64_t kMaskBlocks = 64;

// Philox4x32-10 (gradwatch/random.hpp) of counter (c0, c1, c2, c3), written so that a loop over
// counters vectorises (32 x 32 -> 64-bit products).
GW_ALWAYS_INLINE void philox_block(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3,
                                   uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kNetPhiloxM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kNetPhiloxM1) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += kNetPhiloxW0;
    k1 += kNetPhiloxW1;
  }
}

// mask[e] = word (e mod 4) of block e / 4 >= threshold, for e in [e0, e1).
// mask: (N O)
inline void dropout_mask_range(uint8_t* mask, int64_t e0, int64_t e1, const DropoutStream& s) {
  const uint32_t k0 = static_cast<uint32_t>(s.seed), k1 = static_cast<uint32_t>(s.seed >> 32);
  const uint32_t step_low = static_cast<uint32_t>(s.step);
  const uint32_t step_high = static_cast<uint32_t>(s.step >> 32);
  const uint32_t threshold = s.threshold;
  const int64_t block_end = (e1 + 3) / 4;
  uint32_t words[4][kMaskBlocks];
  for (int64_t first = e0 / 4; first < block_end; first += kMaskBlocks) {
    const int64_t count = block_end - first < kMaskBlocks ? block_end - first : kMaskBlocks;
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) {
      uint32_t c0 = static_cast<uint32_t>(first + i), c1 = s.layer, c2 = step_low, c3 = step_high;
      philox_block(c0, c1, c2, c3, k0, k1);
      words[0][i] = c0;
      words[1][i] = c1;
      words[2][i] = c2;
      words[3][i] = c3;
    }
    for (int64_t i = 0; i < count; ++i) {
      const int64_t base = (first + i) * 4;
      const uint8_t keep[4] = {words[0][i] >= threshold, words[1][i] >= threshold,
                               words[2][i] >= threshold, words[3][i] >= threshold};
      if (base >= e0 && base + 4 <= e1) {
        std::memcpy(mask + base, keep, 4);
      } else {
        for (int64_t w = 0; w < 4; ++w) {
          if (base + w >= e0 && base + w < e1) mask[base + w] = keep[w];
        }
      }
    }
  }
}

void network_dropout_mask(uint8_t* mask, int64_t e0, int64_t e1, const DropoutStream& stream) {
  dropout_mask_range(mask, e0, e1, stream);
}

// ---- forward ---------------------------------------------------------------------------------
// out[f0:f1] of one row from a: dropout, then the residual.
template <typename T>
void finish_row(const HiddenForwardArgs<T>& p, int64_t row, int64_t f0, int64_t f1) {
  const int64_t at = row * p.O;
  const T* a = p.a + at;
  T* out = p.out + at;
  const T keep = p.keep_scale, zero = static_cast<T>(0);
  if (p.mask != nullptr && p.residual != nullptr) {
    const uint8_t* m = p.mask + at;
    const T* x = p.residual + at;
#pragma omp simd
    for (int64_t j = f0; j < f1; ++j) out[j] = a[j] * (m[j] ? keep : zero) + x[j];
  } else if (p.mask != nullptr) {
    const uint8_t* m = p.mask + at;
#pragma omp simd
    for (int64_t j = f0; j < f1; ++j) out[j] = a[j] * (m[j] ? keep : zero);
  } else if (p.residual != nullptr) {
    const T* x = p.residual + at;
#pragma omp simd
    for (int64_t j = f0; j < f1; ++j) out[j] = a[j] + x[j];
  } else if (out != a) {  // a dropout layer run without its masks (probe)
    std::memcpy(out + f0, a + f0, static_cast<size_t>(f1 - f0) * sizeof(T));
  }
}

// Rows at least this wide take their statistics row by row, each right after the pass wrote it
// (in L1), rather than in one flat pass over the tile once it is written: a tile of 32 x 1024 is
// read back from beyond L2 on these machines (784-1024-1024-10, batch 256: 240 against 143 CPU-us a
// step), while rows of 64-100 features pay more for a reduction per row than for reading back.
constexpr int64_t kFlatStatsMaxWidth = 512;

template <Activation kKind, typename T>
void forward_rows(const HiddenForwardArgs<T>& p, const PassTile& t) {
  const T alpha = p.alpha;
  const bool whole_rows = t.f0 == 0 && t.f1 == p.O;
  double stats[kTileSums] = {};
  int64_t nonzero_rows = 0;
  if (p.stats != nullptr) telemetry_start_tile(*p.stats, t, p.O, whole_rows);
  // The activation's input, when it is stored: z without batch norm, else the kept h.
  const T* stored_preact = p.scale == nullptr ? p.z : p.h;
  const bool flat_stats = p.stats != nullptr && whole_rows && stored_preact != nullptr &&
                          p.O < kFlatStatsMaxWidth;
  for (int64_t r = t.r0; r < t.r1; ++r) {
    const int64_t at = r * p.O;
    if (p.generate_mask) dropout_mask_range(p.mask, at + t.f0, at + t.f1, p.dropout);
    const T* z = p.z + at;
    T* a = p.a + at;
    if (p.scale == nullptr) {
#pragma omp simd
      for (int64_t j = t.f0; j < t.f1; ++j) a[j] = forward_element<kKind>(z[j], alpha);
    } else if (p.h == nullptr) {
      const T *shift = p.shift, *scale = p.scale, *offset = p.offset;
#pragma omp simd
      for (int64_t j = t.f0; j < t.f1; ++j) {
        a[j] = forward_element<kKind>((z[j] - shift[j]) * scale[j] + offset[j], alpha);
      }
    } else {
      const T *shift = p.shift, *scale = p.scale, *offset = p.offset;
      T* h = p.h + at;
#pragma omp simd
      for (int64_t j = t.f0; j < t.f1; ++j) {
        const T normalised = (z[j] - shift[j]) * scale[j] + offset[j];
        h[j] = normalised;
        a[j] = forward_element<kKind>(normalised, alpha);
      }
    }
    finish_row(p, r, t.f0, t.f1);
    if (p.stats != nullptr && !flat_stats) telemetry_forward_row<kKind>(stats, p, r, t);
  }
  if (flat_stats) telemetry_flat_tile<kKind>(stats, *p.stats, stored_preact, p.z, p.a, t, p.O);
  if (p.stats != nullptr && whole_rows) {
    telemetry_tile_unit_sums(nonzero_rows, *p.stats, p.a, t, p.O);
  }
  if (p.stats != nullptr) telemetry_end_tile(*p.stats, t, stats, nonzero_rows, whole_rows);
}

template <typename T>
void network_forward_tile(const HiddenForwardArgs<T>& args, const PassTile& tile) {
  visit_kind(args.kind, [&](auto k) { forward_rows<decltype(k)::value>(args, tile); });
}

// ---- backward --------------------------------------------------------------------------------
template <Activation kKind, bool kFromOutput, typename T>
void backward_rows(const HiddenBackwardArgs<T>& p, const PassTile& t) {
  const T alpha = p.alpha, keep = p.keep_scale, zero = static_cast<T>(0);
  for (int64_t r = t.r0; r < t.r1; ++r) {
    const int64_t at = r * p.O;
    const T* g = p.grad_out + at;
    const T* v = (kFromOutput ? p.a : p.h) + at;  // what the derivative is computed from
    T* dh = p.grad_h + at;
    if (p.residual_grad != nullptr) {
      T* copy = p.residual_grad + at;
#pragma omp simd
      for (int64_t j = t.f0; j < t.f1; ++j) copy[j] = g[j];
    }
    if (p.mask != nullptr) {
      const uint8_t* m = p.mask + at;
#pragma omp simd
      for (int64_t j = t.f0; j < t.f1; ++j) {
        const T d = g[j] * (m[j] ? keep : zero);
        if constexpr (kFromOutput) {
          dh[j] = backward_from_output_element<kKind>(d, v[j], alpha);
        } else {
          dh[j] = backward_element<kKind>(d, v[j], alpha);
        }
      }
    } else {
#pragma omp simd
      for (int64_t j = t.f0; j < t.f1; ++j) {
        if constexpr (kFromOutput) {
          dh[j] = backward_from_output_element<kKind>(g[j], v[j], alpha);
        } else {
          dh[j] = backward_element<kKind>(g[j], v[j], alpha);
        }
      }
    }
  }
}

inline Tile as_tile(const PassTile& t) { return Tile{t.chunk, t.r0, t.r1, t.f0, t.f1}; }

template <typename T>
void network_backward_tile(const HiddenBackwardArgs<T>& args, const PassTile& tile) {
  visit_kind(args.kind, [&](auto k) {
    constexpr Activation kind = decltype(k)::value;
    if constexpr (has_backward_from_output(kind)) {
      if (args.from_output) {
        backward_rows<kind, true>(args, tile);
        return;
      }
    }
    backward_rows<kind, false>(args, tile);
  });
  const int64_t O = args.O;
  if (args.sum_dy != nullptr) {
    const int64_t at = tile.chunk * O;
    gradient_sums_tile(args.sum_dy + at, args.sum_dy_xhat + at, args.grad_h, args.z, args.mean,
                       args.inv_std, as_tile(tile), O);
  } else {
    sum_rows(args.bias_partials + tile.chunk * O, args.grad_h, tile.r0, tile.r1, tile.f0,
             tile.f1, O);
  }
}

template <typename T>
void network_batchnorm_grad_tile(const BatchnormGradArgs<T>& p, const PassTile& t) {
  const T *mean = p.mean, *scale_dy = p.scale_dy, *scale_xc = p.scale_xc, *offset = p.offset;
  for (int64_t r = t.r0; r < t.r1; ++r) {
    const int64_t at = r * p.O;
    const T* dh = p.grad_h + at;
    const T* z = p.z + at;
    T* dz = p.grad_z + at;
#pragma omp simd
    for (int64_t j = t.f0; j < t.f1; ++j) {
      dz[j] = scale_dy[j] * dh[j] + ((z[j] - mean[j]) * scale_xc[j] + offset[j]);
    }
  }
  sum_rows(p.bias_partials + t.chunk * p.O, p.grad_z, t.r0, t.r1, t.f0, t.f1, p.O);
}

// ---- reductions ------------------------------------------------------------------------------
template <typename T>
void network_moments_tile(double* within, double* between1, double* between2, const T* z,
                          const T* shift, const PassTile& tile, int64_t F) {
  const int64_t at = tile.chunk * F;
  moment_sums_tile(within + at, between1 + at, between2 + at, z, shift, as_tile(tile), F);
}

template <typename T>
void network_column_sum_tile(T* partials, const T* a, const PassTile& tile, int64_t F) {
  sum_rows(partials + tile.chunk * F, a, tile.r0, tile.r1, tile.f0, tile.f1, F);
}

// The sum of squares of elements [e0, e1) of a contiguous range: in float lanes for float,
// trusted as telemetry's sums are (telemetry_kernels.hpp); a range outside [kFloatSquaresLow,
// kFloatSquaresHigh] (zero, tiny, huge, NaN) is summed again in double, so that an overflow of
// float never makes a finite norm infinite.
template <typename T>
GW_ALWAYS_INLINE double range_sum_of_squares(const T* a, int64_t e0, int64_t e1) {
  const T* range = a + e0;
  const double sum = static_cast<double>(sum_of_squares(range, e1 - e0));
  if (!std::is_same_v<T, float> || float_squares_trusted(sum)) return sum;
  return double_sum_of_squares(range, e1 - e0);
}

// Elements per range of network_sum_of_squares over contiguous rows, and rows per group over
// strided rows.
constexpr int64_t kSquaresBlock = 1024;
constexpr int64_t kSquaresRows = 16;

// The sum of squares of rows (rows, cols) with row stride `stride`, in T: each vector column's
// squares added across the rows in T lanes, and the lanes added once, not once per row (a row of
// 64 features took as long to reduce as to square).
template <typename T>
GW_ALWAYS_INLINE T strided_sum_of_squares(const T* a, int64_t rows, int64_t cols, int64_t stride) {
  constexpr int64_t W = kLanes<T>;
  const int64_t vector_end = cols - cols % W;
  Vector<T> s0 = {}, s1 = {}, s2 = {}, s3 = {};
  T tail = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = a + r * stride;
    int64_t j = 0;
    for (; j + 4 * W <= vector_end; j += 4 * W) {
      const Vector<T> d0 = load_vector(row + j), d1 = load_vector(row + j + W);
      const Vector<T> d2 = load_vector(row + j + 2 * W), d3 = load_vector(row + j + 3 * W);
      s0 += d0 * d0;
      s1 += d1 * d1;
      s2 += d2 * d2;
      s3 += d3 * d3;
    }
    for (; j < vector_end; j += W) {
      const Vector<T> d = load_vector(row + j);
      s1 += d * d;
    }
    for (; j < cols; ++j) tail += row[j] * row[j];
  }
  return lane_sum<T>((s0 + s1) + (s2 + s3)) + tail;
}

// sum = the sum of squares of a (rows, cols) with row stride `stride`, in ranges or groups of
// rows whose T sums are trusted as range_sum_of_squares's are (else summed again in double).
template <typename T>
void network_sum_of_squares(double* sum, const T* a, int64_t rows, int64_t cols,
                            int64_t stride) {
  double total = 0.0;
  if (stride == cols) {  // contiguous rows: one range, in blocks
    const int64_t n = rows * cols;
    for (int64_t e0 = 0; e0 < n; e0 += kSquaresBlock) {
      total += range_sum_of_squares(a, e0, n - e0 < kSquaresBlock ? n : e0 + kSquaresBlock);
    }
  } else {
    for (int64_t r0 = 0; r0 < rows; r0 += kSquaresRows) {
      const int64_t n = rows - r0 < kSquaresRows ? rows - r0 : kSquaresRows;
      const T* group = a + r0 * stride;
      double group_sum = static_cast<double>(strided_sum_of_squares(group, n, cols, stride));
      if (std::is_same_v<T, float> && !float_squares_trusted(group_sum)) {
        group_sum = 0.0;
        for (int64_t r = 0; r < n; ++r) group_sum += double_sum_of_squares(group + r * stride, cols);
      }
      total += group_sum;
    }
  }
  *sum = total;
}

// ---- GEMM with few rows ----------------------------------------------------------------------
// Batch-1 inference is a matrix-vector product, where OpenBLAS's GEMM spends most of its time
// packing B (784 x 100 in float32: 44 us, against 4 us here). These kernels stream each row of B
// once per block of columns for all rows of A (up to 4; more go in groups of 4: the products
// OpenBLAS would allocate for, see gemm_allocates), with the block of C in registers. A block's
// last vector may be partial: it loads whole vectors of B (up to L - 1 values past the columns in
// use: the caller pads B's storage) and reads and writes only the valid part of C.

#if defined(__AVX512F__)
constexpr int64_t kNetVectorBytes = 64;
#elif defined(__AVX__)
constexpr int64_t kNetVectorBytes = 32;
#else
constexpr int64_t kNetVectorBytes = 16;
#endif
// Vector registers of accumulators per column block: half the register file (AVX-512 has 32).
#if defined(__AVX512F__)
constexpr int kSmallGemmAccumulators = 16;
#else
constexpr int kSmallGemmAccumulators = 8;
#endif

template <typename T>
struct NetVector {
  typedef T type __attribute__((vector_size(kNetVectorBytes), aligned(sizeof(T)), may_alias));
};

// C[:, 0:width] for kRows rows, width in ((kVectors - 1) L, kVectors L] (L = lanes):
// C = (accumulate ? C : 0) + A @ B, summing over k in order.
// C: (kRows, width) row stride ldc  A: (kRows, K) row stride lda  B: (K, width) row stride ldb
template <int kRows, int kVectors, typename T>
void small_gemm_block(T* C, const T* A, const T* B, int64_t width, int64_t K, int64_t lda,
                      int64_t ldb, int64_t ldc, bool accumulate) {
  using V = typename NetVector<T>::type;
  constexpr int64_t kLanes = kNetVectorBytes / static_cast<int64_t>(sizeof(T));
  const int64_t last = width - (kVectors - 1) * kLanes;  // valid lanes of the last vector
  V acc[kRows][kVectors];
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kVectors; ++v) {
      const T* c = C + r * ldc + v * kLanes;
      if (!accumulate) {
        acc[r][v] = V{};
      } else if (v < kVectors - 1 || last == kLanes) {
        acc[r][v] = *reinterpret_cast<const V*>(c);
      } else {
        T partial[kLanes] = {};
        std::memcpy(partial, c, static_cast<size_t>(last) * sizeof(T));
        acc[r][v] = *reinterpret_cast<const V*>(partial);
      }
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    const T* b_row = B + k * ldb;
    V b[kVectors];
    for (int v = 0; v < kVectors; ++v) b[v] = *reinterpret_cast<const V*>(b_row + v * kLanes);
    for (int r = 0; r < kRows; ++r) {
      const V a = V{} + A[r * lda + k];
      for (int v = 0; v < kVectors; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < kRows; ++r) {
    for (int v = 0; v < kVectors; ++v) {
      T* c = C + r * ldc + v * kLanes;
      if (v < kVectors - 1 || last == kLanes) {
        *reinterpret_cast<V*>(c) = acc[r][v];
      } else {
        T partial[kLanes];
        *reinterpret_cast<V*>(partial) = acc[r][v];
        std::memcpy(c, partial, static_cast<size_t>(last) * sizeof(T));
      }
    }
  }
}

// small_gemm_block for the last `width` columns, with as many vectors as they need (at most
// kVectors).
template <int kRows, int kVectors, typename T>
void small_gemm_last_block(T* C, const T* A, const T* B, int64_t width, int64_t K, int64_t lda,
                           int64_t ldb, int64_t ldc, bool accumulate) {
  constexpr int64_t kLanes = kNetVectorBytes / static_cast<int64_t>(sizeof(T));
  if constexpr (kVectors > 1) {
    if (width <= (kVectors - 1) * kLanes) {
      small_gemm_last_block<kRows, kVectors - 1>(C, A, B, width, K, lda, ldb, ldc, accumulate);
      return;
    }
  }
  small_gemm_block<kRows, kVectors>(C, A, B, width, K, lda, ldb, ldc, accumulate);
}

// C = (accumulate ? C : 0) + A @ B for kRows rows and N columns, in blocks of kVectors vectors.
template <int kRows, typename T>
void small_gemm_rows(T* C, const T* A, const T* B, int64_t N, int64_t K, int64_t lda,
                     int64_t ldb, int64_t ldc, bool accumulate) {
  constexpr int64_t kLanes = kNetVectorBytes / static_cast<int64_t>(sizeof(T));
  // At most 8 vectors: their B vectors and accumulators stay in registers.
  constexpr int kVectors = std::clamp(kSmallGemmAccumulators / kRows, 1, 8);
  constexpr int64_t kBlock = kVectors * kLanes;
  int64_t col = 0;
  for (; col + kBlock <= N; col += kBlock) {
    small_gemm_block<kRows, kVectors>(C + col, A, B + col, kBlock, K, lda, ldb, ldc, accumulate);
  }
  if (col < N) {
    small_gemm_last_block<kRows, kVectors>(C + col, A, B + col, N - col, K, lda, ldb, ldc,
                                           accumulate);
  }
}

// Groups of 4 rows, then the 1-3 rows left.
template <typename T>
void network_small_gemm(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K,
                        int64_t lda, int64_t ldb, int64_t ldc, bool accumulate) {
  int64_t r = 0;
  for (; r + 4 <= M; r += 4) {
    small_gemm_rows<4>(C + r * ldc, A + r * lda, B, N, K, lda, ldb, ldc, accumulate);
  }
  switch (M - r) {
    case 1: small_gemm_rows<1>(C + r * ldc, A + r * lda, B, N, K, lda, ldb, ldc, accumulate); break;
    case 2: small_gemm_rows<2>(C + r * ldc, A + r * lda, B, N, K, lda, ldb, ldc, accumulate); break;
    case 3: small_gemm_rows<3>(C + r * ldc, A + r * lda, B, N, K, lda, ldb, ldc, accumulate); break;
    default: break;
  }
}

// ---- loss ------------------------------------------------------------------------------------
template <typename T>
void network_loss(T* grad, double* partials, const T* logits, const int64_t* labels,
                  const T* values, int64_t N, int64_t C, LossKind kind) {
  switch (kind) {
    case LossKind::softmax_cross_entropy:
      softmax_cross_entropy_indices(grad, partials, logits, labels, N, C);
      break;
    case LossKind::binary_cross_entropy_with_logits:
      binary_cross_entropy_with_logits(grad, partials, logits, values, N * C);
      break;
    case LossKind::mse:
      mse(grad, partials, logits, values, N * C);
      break;
  }
}

}  // namespace GW_ISA
}  // namespace gradwatch

// Explicit instantiations, expanded inside namespace gradwatch::<isa> by each ISA's .cpp file.
#define GRADWATCH_INSTANTIATE_NETWORK_KERNELS(T)                                                 \
  template void network_forward_tile<T>(const HiddenForwardArgs<T>&, const PassTile&);           \
  template void network_backward_tile<T>(const HiddenBackwardArgs<T>&, const PassTile&);         \
  template void network_batchnorm_grad_tile<T>(const BatchnormGradArgs<T>&, const PassTile&);    \
  template void network_moments_tile<T>(double*, double*, double*, const T*, const T*,           \
                                        const PassTile&, int64_t);                               \
  template void network_column_sum_tile<T>(T*, const T*, const PassTile&, int64_t);             \
  template void network_sum_of_squares<T>(double*, const T*, int64_t, int64_t, int64_t);        \
  template void network_loss<T>(T*, double*, const T*, const int64_t*, const T*, int64_t,        \
                                int64_t, LossKind);                                              \
  template void network_small_gemm<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, \
                                      int64_t, int64_t, bool);
