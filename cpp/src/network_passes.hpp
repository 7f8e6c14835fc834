// The passes of gradwatch::Network around its GEMMs: argument blocks and the kernels of each ISA
// (bodies in network_kernels.hpp, instantiated in network.cpp and simd/network_<isa>.cpp).
// Dims: N = batch, O = F = features of the layer; a tile is rows [r0, r1) x features [f0, f1)
// whose column sums go to row `chunk` of a partials array (chunks, O).
#pragma once

#include <cstdint>

#include "gradwatch/activations.hpp"
#include "gradwatch/network.hpp"

namespace gradwatch {

// GEMMs of at most this many rows (not transposed) use network_small_gemm instead of OpenBLAS, as
// do those OpenBLAS would allocate for (gradwatch/blas.hpp, gemm_allocates).
constexpr int64_t kSmallGemmRows = 4;
// Values after the end of B that network_small_gemm may read (one vector of the widest ISA).
constexpr int64_t kSmallGemmPadding = 16;

struct PassTile {
  int64_t chunk, r0, r1, f0, f1;
  int64_t index = 0;  // of the tile in its pass (telemetry's per-tile sums)
};

struct ForwardStatsArgs;  // telemetry_passes.hpp

// Where the dropout mask of one layer and step comes from (see Network::dropout_mask).
struct DropoutStream {
  uint64_t seed;
  uint64_t step;
  uint32_t layer;
  uint32_t threshold;  // dropped when the 32-bit word < threshold = floor(p 2^32)
};

// After the GEMM of a hidden layer: h = (z - shift) * scale + offset (batch norm; h = z without),
// a = act(h), out = a * (mask ? keep_scale : 0) + residual. Null pointers switch parts off:
// shift/scale/offset (no batch norm), h (not kept), mask (no dropout), residual (none). out may
// be a (neither dropout nor residual), and z, h, a may all be one buffer (inference, in place).
// With generate_mask the tile first writes its part of the mask from `dropout`. Without mask and
// residual, out (if it is not a) gets a copy of a. With stats (telemetry) the tile also sums
// each row it has written (telemetry_kernels.hpp).
// h, a, out, z, residual: (N, O)  mask: (N, O)  shift, scale, offset: (O)
template <typename T>
struct HiddenForwardArgs {
  T* h;
  T* a;
  T* out;
  uint8_t* mask;
  const T* z;
  const T* shift;
  const T* scale;
  const T* offset;
  const T* residual;
  int64_t O;
  Activation kind;
  T alpha;
  T keep_scale;
  bool generate_mask;
  DropoutStream dropout;
  const ForwardStatsArgs* stats;
};

// Backward of a hidden layer's activation and dropout:
//   d = grad_out * (mask ? keep_scale : 0),  grad_h = d * act'(h) (from a where cheaper),
// and residual_grad = grad_out (the start of the input gradient, which the GEMM adds to).
// Column sums of the tile go to row `chunk` of: bias_partials (no batch norm: grad_h is dz), or
// sum_dy, sum_dy_xhat (batch norm: sum of grad_h and of grad_h * (z - mean) * inv_std, double).
// grad_h, residual_grad, grad_out, a, h, z: (N, O)  mean, inv_std: (O)
// bias_partials: (chunks, O)  sum_dy, sum_dy_xhat: (chunks, O)
template <typename T>
struct HiddenBackwardArgs {
  T* grad_h;
  T* residual_grad;
  T* bias_partials;
  double* sum_dy;
  double* sum_dy_xhat;
  const T* grad_out;
  const uint8_t* mask;
  const T* a;
  const T* h;
  const T* z;
  const T* mean;
  const T* inv_std;
  int64_t O;
  Activation kind;
  T alpha;
  T keep_scale;
  bool from_output;
};

// Batch-norm backward to the dense output: grad_z = scale_dy * grad_h + ((z - mean) * scale_xc +
// offset), and the tile's column sums of grad_z (the bias gradient) into row `chunk` of
// bias_partials.
// grad_z, grad_h, z: (N, O)  mean, scale_dy, scale_xc, offset: (O)  bias_partials: (chunks, O)
template <typename T>
struct BatchnormGradArgs {
  T* grad_z;
  T* bias_partials;
  const T* grad_h;
  const T* z;
  const T* mean;
  const T* scale_dy;
  const T* scale_xc;
  const T* offset;
  int64_t O;
};

// The kernels of one ISA.
#define GRADWATCH_DECLARE_NETWORK_KERNELS(isa)                                                   \
  namespace isa {                                                                                \
  template <typename T>                                                                          \
  void network_forward_tile(const HiddenForwardArgs<T>& args, const PassTile& tile);             \
  template <typename T>                                                                          \
  void network_backward_tile(const HiddenBackwardArgs<T>& args, const PassTile& tile);           \
  template <typename T>                                                                          \
  void network_batchnorm_grad_tile(const BatchnormGradArgs<T>& args, const PassTile& tile);      \
  /* Moment sums of batch norm's forward (batchnorm_kernels.hpp) into row tile.chunk. */         \
  /* within, between1, between2: (chunks, F)  z: (N, F)  shift: (F) */                          \
  template <typename T>                                                                          \
  void network_moments_tile(double* within, double* between1, double* between2, const T* z,      \
                            const T* shift, const PassTile& tile, int64_t F);                    \
  /* Column sums of a over the tile into row tile.chunk of partials (chunks, F). */             \
  template <typename T>                                                                          \
  void network_column_sum_tile(T* partials, const T* a, const PassTile& tile, int64_t F);        \
  /* *sum = the sum of squares of a (rows, cols) with row stride `stride`, in double. */        \
  template <typename T>                                                                          \
  void network_sum_of_squares(double* sum, const T* a, int64_t rows, int64_t cols,               \
                              int64_t stride);                                                   \
  /* Loss partial sums (per row for softmax cross-entropy, per 8192 elements otherwise) and */  \
  /* the gradient of the mean loss. grad, logits, values: (N, C)  labels: (N) */                \
  template <typename T>                                                                          \
  void network_loss(T* grad, double* partials, const T* logits, const int64_t* labels,           \
                    const T* values, int64_t N, int64_t C, LossKind kind);                       \
  /* C = (accumulate ? C : 0) + A @ B, B streamed once per group of 4 rows. */               \
  /* Reads up to kSmallGemmPadding values past B's last row: its storage must have them. */     \
  /* C: (M, N) row stride ldc  A: (M, K) row stride lda  B: (K, N) row stride ldb */             \
  template <typename T>                                                                          \
  void network_small_gemm(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K,          \
                          int64_t lda, int64_t ldb, int64_t ldc, bool accumulate);               \
  /* Elements [e0, e1) of a layer's flat dropout mask. mask: (N O) */                           \
  void network_dropout_mask(uint8_t* mask, int64_t e0, int64_t e1, const DropoutStream& stream); \
  }

GRADWATCH_DECLARE_NETWORK_KERNELS(baseline)
GRADWATCH_DECLARE_NETWORK_KERNELS(avx2)
GRADWATCH_DECLARE_NETWORK_KERNELS(avx512)

}  // namespace gradwatch
