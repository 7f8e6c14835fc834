// Batch-norm kernels, compiled once per ISA (see gradwatch/cpu_dispatch.hpp); the public
// functions and their contracts are in gradwatch/batchnorm.hpp.
// Dims: N = batch, F = features. Every (N, F) array is row-major, so the inner loops run over
// the contiguous feature axis and the per-feature sums live in small buffers.
//
// Each training kernel makes two passes over the batch, in one parallel region: the column sums
// of each tile of a grid (row chunks x feature blocks) chosen from N and F alone, into that
// tile's own partials; per feature, the partials added in chunk order and turned into
// coefficients; then y = (x - center) * scale + offset style, tile by tile. No sum depends on
// which thread ran what, so results are bitwise the same on any thread count. Each thread
// writes the tiles it summed, last summed first, so that the second pass starts on the rows
// still in that thread's L2.
//
// Precision. The column sums run in T over blocks of 32 rows and in double across blocks, so
// float input keeps float speed in the inner loops while the long sums carry double precision.
// The variance never comes from E[x^2] - E[x]^2. Each block sums d = x - (its own first row),
// which makes d small and usually exact for clustered data (x = 1e4 + noise in float32) and
// bounds the cancellation in its m2 = sum d^2 - (sum d)^2 / n to a factor 1 + n = 33 (a sample
// is never more than sqrt(n) standard deviations from the mean of n samples). The blocks are then
// combined in double around one global shift (the first row of the batch): there the
// cancellation is bounded by N, against double rounding.
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including batchnorm_kernels.hpp"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>

#include <omp.h>

#include "gradwatch/threads.hpp"

namespace gradwatch {
namespace GW_ISA {

// The accumulator type of the column sums across blocks (see the precision note above).
using Sum = double;

// Rows handled per step of the forward's column-sum loop; the 4 terms are added pairwise, then once to
// the block sum, which also quarters the loads and stores of the block buffers.
constexpr int64_t kRowUnroll = 4;
// Rows summed in T before the sums go to double (see the precision note), and the features
// handled at once, so that a block's sums stay in L1.
constexpr int64_t kBlockRows = 32;
constexpr int64_t kStripWidth = 512;
// Up to kTargetTiles row chunks, multiples of kBlockRows and at least kMinChunkRows long: each
// chunk carries 2 or 3 doubles of partial sums per feature, so chunks must be long for that
// traffic to stay small next to the pass (6% of a float pass at 128 rows). Short batches,
// with fewer than kMinTiles chunks, are also split into feature blocks of at least
// kMinBlockWidth. Whole rows stream best: at 256 x 1024, two chunks of whole rows were measured
// 5-15% faster than four tiles of half rows, so a batch is split into feature blocks only when
// it has a single chunk (at most kMinChunkRows rows).
constexpr int64_t kTargetTiles = 16;
constexpr int64_t kMinChunkRows = 128;
constexpr int64_t kMinTiles = 2;
constexpr int64_t kMinBlockWidth = 512;
constexpr int64_t kBlockAlign = 16;  // 64 bytes of float

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Rows [r0, r1) x features [f0, f1) of the batch; its partial sums go to row `chunk`.
struct Tile {
  int64_t chunk, r0, r1, f0, f1;
};

// Row chunks x feature blocks, a function of (N, F) only. The last chunk and the last block may
// be shorter than the others. Tiles are numbered row-major, so that a thread given a run of
// them by a static schedule streams through contiguous rows.
struct TileGrid {
  int64_t N, F, chunk_rows, chunks, block_width, blocks;

  TileGrid(int64_t rows, int64_t features) : N(rows), F(features) {
    chunk_rows = std::max(kMinChunkRows,
                          ceil_div(ceil_div(N, kTargetTiles), kBlockRows) * kBlockRows);
    chunks = ceil_div(N, chunk_rows);
    const int64_t wanted_blocks = ceil_div(kMinTiles, chunks);
    const int64_t most_blocks = std::max<int64_t>(1, F / kMinBlockWidth);
    block_width = ceil_div(ceil_div(F, std::min(wanted_blocks, most_blocks)), kBlockAlign) *
                  kBlockAlign;
    blocks = ceil_div(F, block_width);
  }
  int64_t tiles() const { return chunks * blocks; }
  int64_t strips() const { return ceil_div(F, kStripWidth); }
  int threads() const { return static_cast<int>(std::min<int64_t>(threads_for(N * F), tiles())); }
  Tile tile(int64_t index) const {
    const int64_t chunk = index / blocks;
    const int64_t r0 = chunk * chunk_rows;
    const int64_t f0 = index % blocks * block_width;
    return {chunk, r0, std::min(N, r0 + chunk_rows), f0, std::min(F, f0 + block_width)};
  }
};

// Adds rows 1.. of partial into row 0 in row order, for features [fa, fb).
// partial: (chunks, F)
inline void add_chunk_partials(Sum* partial, int64_t chunks, int64_t F, int64_t fa, int64_t fb) {
  for (int64_t chunk = 1; chunk < chunks; ++chunk) {
    const Sum* row = partial + chunk * F;
#pragma omp simd
    for (int64_t f = fa; f < fb; ++f) partial[f] += row[f];
  }
}

// Block sums over 4 rows starting at x0 (row stride F), of d = x - k and d^2; the first call of
// a block assigns, the others add.
// block1, block2, k: (width)
template <bool kFirst, typename T>
void add_moment_rows(T* block1, T* block2, const T* x0, const T* k, int64_t width, int64_t F) {
  const T* x1 = x0 + F;
  const T* x2 = x1 + F;
  const T* x3 = x2 + F;
#pragma omp simd
  for (int64_t j = 0; j < width; ++j) {
    const T d0 = x0[j] - k[j];
    const T d1 = x1[j] - k[j];
    const T d2 = x2[j] - k[j];
    const T d3 = x3[j] - k[j];
    const T sum1 = (d0 + d1) + (d2 + d3);
    const T sum2 = (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
    block1[j] = kFirst ? sum1 : block1[j] + sum1;
    block2[j] = kFirst ? sum2 : block2[j] + sum2;
  }
}

// One tile of the forward statistics, in blocks of kBlockRows rows x kStripWidth features.
// A block with n_b rows and first row k_b sums d = x - k_b and d^2 in T, which gives its mean
// k_b + mu_b (mu_b = sum d / n_b) and m2_b = sum d^2 - mu_b sum d = sum (x - mean_b)^2; the
// tile adds up, in double,
//   within = sum_b m2_b,  between1 = sum_b n_b e_b,  between2 = sum_b n_b e_b^2,
// with e_b = k_b + mu_b - shift the block mean relative to the global shift.
// within, between1, between2, shift: (F)  x: (N, F)
template <typename T>
void moment_sums_tile(Sum* within, Sum* between1, Sum* between2, const T* x, const T* shift,
                      const Tile& tile, int64_t F) {
  std::fill(within + tile.f0, within + tile.f1, Sum(0));
  std::fill(between1 + tile.f0, between1 + tile.f1, Sum(0));
  std::fill(between2 + tile.f0, between2 + tile.f1, Sum(0));
  T block1[kStripWidth];  // sum of d over the block, per feature of the strip
  T block2[kStripWidth];  // sum of d^2
  for (int64_t rb = tile.r0; rb < tile.r1; rb += kBlockRows) {
    const int64_t re = std::min(tile.r1, rb + kBlockRows);
    for (int64_t fa = tile.f0; fa < tile.f1; fa += kStripWidth) {
      const int64_t width = std::min(kStripWidth, tile.f1 - fa);
      const T* k = x + rb * F + fa;
      int64_t r = rb;
      if (re - rb >= kRowUnroll) {
        add_moment_rows<true>(block1, block2, x + r * F + fa, k, width, F);
        r += kRowUnroll;
      } else {
        std::fill(block1, block1 + width, T(0));
        std::fill(block2, block2 + width, T(0));
      }
      for (; r + kRowUnroll <= re; r += kRowUnroll) {
        add_moment_rows<false>(block1, block2, x + r * F + fa, k, width, F);
      }
      for (; r < re; ++r) {
        const T* xr = x + r * F + fa;
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) {
          const T d = xr[j] - k[j];
          block1[j] += d;
          block2[j] += d * d;
        }
      }
      // d^2 overflows T only for a spread beyond sqrt of T's range (1.8e19 for float);
      // such blocks are summed again in double, so only inf or NaN in x gives inf or NaN.
      int overflow = 0;
#pragma omp simd reduction(| : overflow)
      for (int64_t j = 0; j < width; ++j) {
        overflow |= block2[j] > std::numeric_limits<T>::max() ? 1 : 0;
      }
      const Sum rows = Sum(re - rb);
      const Sum inv_rows = 1 / rows;
      const auto add_block = [&](int64_t j, Sum sum1, Sum sum2) {
        const Sum mu = sum1 * inv_rows;
        const Sum e = (Sum(k[j]) - Sum(shift[fa + j])) + mu;
        within[fa + j] += sum2 - mu * sum1;
        between1[fa + j] += rows * e;
        between2[fa + j] += rows * e * e;
      };
      if (!overflow) {
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) add_block(j, block1[j], block2[j]);
      } else {
        for (int64_t j = 0; j < width; ++j) {
          Sum sum1 = 0, sum2 = 0;
          for (int64_t row = rb; row < re; ++row) {
            const Sum d = Sum(x[row * F + fa + j]) - Sum(k[j]);
            sum1 += d;
            sum2 += d * d;
          }
          add_block(j, sum1, sum2);
        }
      }
    }
  }
}

// One tile of the backward sums, s_dy = sum dy and s_dy_xhat = sum dy * x_hat, in T over blocks
// of kBlockRows rows and in double across blocks. The terms are normalised (|x_hat| is at most
// sqrt(N)), so they overflow T only where the gradients themselves would.
// s_dy, s_dy_xhat, mean, inv_std: (F)  dy, x: (N, F)
template <typename T>
void gradient_sums_tile(Sum* s_dy, Sum* s_dy_xhat, const T* dy, const T* x, const T* mean,
                        const T* inv_std, const Tile& tile, int64_t F) {
  std::fill(s_dy + tile.f0, s_dy + tile.f1, Sum(0));
  std::fill(s_dy_xhat + tile.f0, s_dy_xhat + tile.f1, Sum(0));
  T block1[kStripWidth];  // sum of dy over the block, per feature of the strip
  T block2[kStripWidth];  // sum of dy * x_hat
  for (int64_t rb = tile.r0; rb < tile.r1; rb += kBlockRows) {
    const int64_t re = std::min(tile.r1, rb + kBlockRows);
    for (int64_t fa = tile.f0; fa < tile.f1; fa += kStripWidth) {
      const int64_t width = std::min(kStripWidth, tile.f1 - fa);
      const T* m = mean + fa;
      const T* inv = inv_std + fa;
      {
        const T* dy_row = dy + rb * F + fa;
        const T* x_row = x + rb * F + fa;
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) {
          block1[j] = dy_row[j];
          block2[j] = dy_row[j] * ((x_row[j] - m[j]) * inv[j]);
        }
      }
      // Two rows per step halve the loads and stores of the block buffers; more rows at a
      // power-of-two stride (F = 1024) map to one L1 set and were measured slower.
      int64_t r = rb + 1;
      for (; r + 2 <= re; r += 2) {
        const T* dy0 = dy + r * F + fa;
        const T* x0 = x + r * F + fa;
        const T* dy1 = dy0 + F;
        const T* x1 = x0 + F;
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) {
          const T mj = m[j];
          const T ij = inv[j];
          block1[j] = (block1[j] + dy0[j]) + dy1[j];
          block2[j] = (block2[j] + dy0[j] * ((x0[j] - mj) * ij)) + dy1[j] * ((x1[j] - mj) * ij);
        }
      }
      for (; r < re; ++r) {
        const T* dy_row = dy + r * F + fa;
        const T* x_row = x + r * F + fa;
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) {
          block1[j] += dy_row[j];
          block2[j] += dy_row[j] * ((x_row[j] - m[j]) * inv[j]);
        }
      }
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) {
        s_dy[fa + j] += Sum(block1[j]);
        s_dy_xhat[fa + j] += Sum(block2[j]);
      }
    }
  }
}

// out = (in - center) * scale + offset over one tile, with per-feature coefficients.
// out, in: (N, F)  center, scale, offset: (F)
template <typename T>
void affine_tile(T* out, const T* in, const T* center, const T* scale, const T* offset,
                 const Tile& tile, int64_t F) {
  for (int64_t r = tile.r0; r < tile.r1; ++r) {
    T* out_row = out + r * F;
    const T* in_row = in + r * F;
#pragma omp simd
    for (int64_t f = tile.f0; f < tile.f1; ++f) {
      out_row[f] = (in_row[f] - center[f]) * scale[f] + offset[f];
    }
  }
}

// dx = scale_dy * dy + ((x - mean) * scale_xc + offset) over one tile.
// dx, dy, x: (N, F)  mean, scale_dy, scale_xc, offset: (F)
template <typename T>
void input_gradient_tile(T* dx, const T* dy, const T* x, const T* mean, const T* scale_dy,
                         const T* scale_xc, const T* offset, const Tile& tile, int64_t F) {
  for (int64_t r = tile.r0; r < tile.r1; ++r) {
    T* dx_row = dx + r * F;
    const T* dy_row = dy + r * F;
    const T* x_row = x + r * F;
#pragma omp simd
    for (int64_t f = tile.f0; f < tile.f1; ++f) {
      dx_row[f] = scale_dy[f] * dy_row[f] + ((x_row[f] - mean[f]) * scale_xc[f] + offset[f]);
    }
  }
}

// The tiles [begin, end) of the calling thread: the same share in every pass of one parallel
// region, so that a thread's second pass reads the rows its first pass left in its cache.
struct TileRange {
  int64_t begin, end;
};
inline TileRange thread_tiles(int64_t tiles) {
  const int64_t threads = omp_get_num_threads();
  const int64_t id = omp_get_thread_num();
  return {tiles * id / threads, tiles * (id + 1) / threads};
}

// y, x: (N, F)  mean, var, inv_std, gamma, beta: (F)
template <typename T>
void batchnorm_forward(T* y, T* mean, T* var, T* inv_std, const T* x, const T* gamma,
                       const T* beta, int64_t N, int64_t F, double eps) {
  const TileGrid grid(N, F);
  const int64_t partial_size = grid.chunks * F;
  std::unique_ptr<Sum[]> partials(new Sum[3 * partial_size]);
  Sum* within = partials.get();  // (chunks, F) each, see moment_sums_tile
  Sum* between1 = within + partial_size;
  Sum* between2 = between1 + partial_size;
  std::unique_ptr<T[]> coefficients(new T[3 * F]);
  T* shift = coefficients.get();  // (F): a copy of row 0, as y may overwrite x
  T* scale = shift + F;           // (F): gamma * inv_std
  T* offset = scale + F;          // (F): beta - scale * (mean - shift)
  std::copy(x, x + F, shift);
  const Sum n = Sum(N);

#pragma omp parallel num_threads(grid.threads())
  {
    const TileRange mine = thread_tiles(grid.tiles());
    for (int64_t index = mine.begin; index < mine.end; ++index) {
      const Tile tile = grid.tile(index);
      const int64_t at = tile.chunk * F;
      moment_sums_tile(within + at, between1 + at, between2 + at, x, shift, tile, F);
    }
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t strip = 0; strip < grid.strips(); ++strip) {
      const int64_t fa = strip * kStripWidth;
      const int64_t fb = std::min(F, fa + kStripWidth);
      add_chunk_partials(within, grid.chunks, F, fa, fb);
      add_chunk_partials(between1, grid.chunks, F, fa, fb);
      add_chunk_partials(between2, grid.chunks, F, fa, fb);
#pragma omp simd
      for (int64_t f = fa; f < fb; ++f) {
        const Sum mean_minus_shift = between1[f] / n;
        // Cancels by at most a factor N (shift is a sample), in double.
        Sum variance = (within[f] + (between2[f] - between1[f] * mean_minus_shift)) / n;
        variance = variance < 0 ? Sum(0) : variance;  // rounding only; NaN falls through
        const Sum inverse = 1 / std::sqrt(variance + eps);
        const Sum a = Sum(gamma[f]) * inverse;
        mean[f] = T(Sum(shift[f]) + mean_minus_shift);
        var[f] = T(variance);
        inv_std[f] = T(inverse);
        scale[f] = T(a);
        offset[f] = T(Sum(beta[f]) - a * mean_minus_shift);
      }
    }
    // x - shift rather than x - mean: for float, the mean rounded to float would be off by up
    // to half an ulp of the offset (5e-4 at 1e4), while x - shift is exact for clustered data.
    // The tiles in reverse: the last ones summed are the likeliest still in cache.
    for (int64_t index = mine.end; index-- > mine.begin;) {
      affine_tile(y, x, shift, scale, offset, grid.tile(index), F);
    }
  }
}

// dx, dy, x: (N, F)  dgamma, dbeta, mean, inv_std, gamma: (F)
template <typename T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                        const T* inv_std, const T* gamma, int64_t N, int64_t F) {
  const TileGrid grid(N, F);
  const int64_t partial_size = grid.chunks * F;
  std::unique_ptr<Sum[]> partials(new Sum[2 * partial_size]);
  Sum* sum_dy = partials.get();              // (chunks, F): sum of dy
  Sum* sum_dy_xhat = sum_dy + partial_size;  // (chunks, F): sum of dy * x_hat
  std::unique_ptr<T[]> coefficients(new T[3 * F]);
  T* scale_dy = coefficients.get();  // (F): gamma * inv_std
  T* scale_xc = scale_dy + F;        // (F): -gamma * inv_std^2 * dgamma / N
  T* offset = scale_xc + F;          // (F): -gamma * inv_std * dbeta / N
  const Sum n = Sum(N);

#pragma omp parallel num_threads(grid.threads())
  {
    const TileRange mine = thread_tiles(grid.tiles());
    for (int64_t index = mine.begin; index < mine.end; ++index) {
      const Tile tile = grid.tile(index);
      const int64_t at = tile.chunk * F;
      gradient_sums_tile(sum_dy + at, sum_dy_xhat + at, dy, x, mean, inv_std, tile, F);
    }
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t strip = 0; strip < grid.strips(); ++strip) {
      const int64_t fa = strip * kStripWidth;
      const int64_t fb = std::min(F, fa + kStripWidth);
      add_chunk_partials(sum_dy, grid.chunks, F, fa, fb);
      add_chunk_partials(sum_dy_xhat, grid.chunks, F, fa, fb);
#pragma omp simd
      for (int64_t f = fa; f < fb; ++f) {
        const Sum inverse = inv_std[f];
        const Sum grad_beta = sum_dy[f];
        const Sum grad_gamma = sum_dy_xhat[f];
        const Sum a = Sum(gamma[f]) * inverse;
        dbeta[f] = T(grad_beta);
        dgamma[f] = T(grad_gamma);
        scale_dy[f] = T(a);
        scale_xc[f] = T(-a * inverse * grad_gamma / n);
        offset[f] = T(-a * grad_beta / n);
      }
    }
    // dx = a * dy + ((x - mean) * scale_xc + offset): the definition regrouped per feature.
    // The tiles in reverse, as in the forward.
    for (int64_t index = mine.end; index-- > mine.begin;) {
      input_gradient_tile(dx, dy, x, mean, scale_dy, scale_xc, offset, grid.tile(index), F);
    }
  }
}

// y, x: (N, F)  running_mean, running_var, gamma, beta: (F)
template <typename T>
void batchnorm_inference(T* y, const T* x, const T* running_mean, const T* running_var,
                         const T* gamma, const T* beta, int64_t N, int64_t F, double eps) {
  std::unique_ptr<T[]> scale(new T[F]);  // (F): gamma / sqrt(running_var + eps)
#pragma omp simd
  for (int64_t f = 0; f < F; ++f) {
    scale[f] = T(Sum(gamma[f]) / std::sqrt(Sum(running_var[f]) + eps));
  }
  const TileGrid grid(N, F);
#pragma omp parallel for num_threads(grid.threads()) schedule(static)
  for (int64_t index = 0; index < grid.tiles(); ++index) {
    affine_tile(y, x, running_mean, scale.get(), beta, grid.tile(index), F);
  }
}

}  // namespace GW_ISA
}  // namespace gradwatch

// Explicit instantiations, expanded inside namespace gradwatch::<isa> by each ISA's .cpp file.
#define GRADWATCH_INSTANTIATE_BATCHNORM_KERNELS(T)                                               \
  template void batchnorm_forward<T>(T*, T*, T*, T*, const T*, const T*, const T*, int64_t,     \
                                     int64_t, double);                                           \
  template void batchnorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,       \
                                      const T*, int64_t, int64_t);                               \
  template void batchnorm_inference<T>(T*, const T*, const T*, const T*, const T*, const T*,    \
                                       int64_t, int64_t, double);
