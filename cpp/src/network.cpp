// gradwatch::Network: the layers' data flow, the parallel region of a step, the GEMM blocking,
// the fixed-order reductions and the checks that keep a failed step from changing anything.
// Dims: N = batch, L = layers, I = fan_in, O = fan_out, D = input features, C = outputs.
//
// Threads. A step is one OpenMP parallel region; every pass inside is an orphaned worksharing
// loop over items fixed by the shapes alone (GEMM blocks, tiles of rows x features), so which
// thread runs an item never changes a bit of its result. OpenBLAS is made single-threaded for
// the duration (its threaded GEMM partitions by the thread count): each GEMM block is one
// single-threaded call on one of our threads (gemm_blocks.hpp).
#define GW_ISA baseline
#include "network_kernels.hpp"
#include "step_profile.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "gradwatch/blas.hpp"
#include "gradwatch/cpu_dispatch.hpp"
#include "gradwatch/network.hpp"
#include "gradwatch/telemetry.hpp"
#include "gradwatch/threads.hpp"
#include "gemm_blocks.hpp"

namespace gradwatch {

namespace baseline {
GRADWATCH_INSTANTIATE_NETWORK_KERNELS(float)
GRADWATCH_INSTANTIATE_NETWORK_KERNELS(double)
}  // namespace baseline

namespace {

// Row chunks of a pass: about kPassChunkRows rows or more, at most kMaxChunks of them, as equal
// as they go (the threads taking them in turn finish together); a batch of fewer than
// kPassMinTiles chunks is also split into feature blocks of at least kPassMinBlockWidth. Fixed
// by (N, F) alone: the order of every sum over the batch is too.
constexpr int64_t kPassChunkRows = 32;
constexpr int64_t kMaxChunks = 16;
constexpr int64_t kPassMinTiles = 4;
constexpr int64_t kPassMinBlockWidth = 256;
// Elements per thread below which a pass alone is not worth a team (threads.hpp's threads_for).
constexpr int64_t kPassMinTileWork = 16384;
// Rows per inference chunk: memory does not grow with the batch.
constexpr int64_t kInferenceRows = 256;
// Elements per partial sum of the elementwise losses (loss_kernels.hpp's kChunk).
constexpr int64_t kLossChunk = baseline::kChunk;
// Tiles of one pass: at most kMaxChunks (a grid splits features only when it has fewer than
// kPassMinTiles chunks, into at most kPassMinTiles tiles per chunk); room for twice that.
constexpr int64_t kMaxTiles = 2 * kMaxChunks;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t multiple) { return ceil_div(a, multiple) * multiple; }

struct PassGrid {
  int64_t N, F, chunks, block_width, blocks;
  int64_t row_align = 1;  // chunks start at multiples of row_align rows

  PassGrid(int64_t rows, int64_t features) : N(rows), F(features) {
    chunks = std::min(kMaxChunks, ceil_div(N, kPassChunkRows));
    blocks = 1;
    block_width = F;
    if (chunks < kPassMinTiles) {
      const int64_t wanted = ceil_div(kPassMinTiles, chunks);
      const int64_t most = std::max<int64_t>(1, F / kPassMinBlockWidth);
      block_width = round_up(ceil_div(F, std::min(wanted, most)), 16);
      blocks = ceil_div(F, block_width);
    }
  }
  // The row blocks of a GEMM that splits its rows: chunk b holds the rows of block b.
  static PassGrid gemm_rows(const GemmPlan& plan, int64_t rows, int64_t features) {
    PassGrid grid(rows, features);
    grid.chunks = plan.blocks;
    grid.blocks = 1;
    grid.block_width = features;
    grid.row_align = plan.align;
    return grid;
  }
  int64_t tiles() const { return chunks * blocks; }
  // The first row of chunk c (c = chunks: N), as GemmPlan::begin places its blocks.
  int64_t row(int64_t chunk) const {
    const int64_t units = ceil_div(N, row_align);
    return std::min(N, row_align * (chunk * units / chunks));
  }
  PassTile tile(int64_t index) const {
    const int64_t chunk = index / blocks;
    const int64_t f0 = index % blocks * block_width;
    return {chunk, row(chunk), row(chunk + 1), f0, std::min(F, f0 + block_width), index};
  }
};

// A hidden layer without batch norm whose GEMM splits rows in blocks runs its forward pass
// inside those blocks, each right after its block's GEMM on the same thread (run_gemm_with_pass):
// no barrier between them, and the rows are still in that core's cache. Its grid is then the
// GEMM's row blocks. (Batch norm's moments need every row of a feature before any row goes on.)
bool forward_pass_fused(const GemmPlan& plan, bool batchnorm) {
  return !batchnorm && plan.split_rows && plan.blocks > 1;
}
PassGrid forward_pass_grid(int64_t N, int64_t I, int64_t O, bool batchnorm) {
  const GemmPlan plan = plan_gemm(N, O, I);
  return forward_pass_fused(plan, batchnorm) ? PassGrid::gemm_rows(plan, N, O) : PassGrid(N, O);
}

// The network's GEMM blocks may use its own few-row GEMM (used only with neither operand
// transposed, where B is a weight matrix: params_ keeps kSmallGemmPadding values after the last)
// and, with sumsq, record the sum of squares of each block.
template <typename T>
void small_gemm(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K, int64_t lda,
                int64_t ldb, int64_t ldc, bool accumulate) {
  GRADWATCH_DISPATCH(network_small_gemm<T>, C, A, B, M, N, K, lda, ldb, ldc, accumulate);
}

template <typename T>
void sum_of_squares(double* sum, const T* C, int64_t M, int64_t N, int64_t ldc) {
  GRADWATCH_DISPATCH(network_sum_of_squares<T>, sum, C, M, N, ldc);
}

template <typename T>
GemmJob<T> make_gemm(bool transpose_a, bool transpose_b, int64_t M, int64_t N, int64_t K,
                     const T* A, const T* B, T beta, T* C, const T* bias, double* sumsq,
                     int64_t* nonfinite = nullptr) {
  GemmJob<T> job = gemm_job<T>(transpose_a, transpose_b, M, N, K, A, B, beta, C, bias);
  job.small_gemm = &small_gemm<T>;
  job.small_gemm_rows = kSmallGemmRows;
  if (sumsq != nullptr) {
    job.sum_of_squares = &sum_of_squares<T>;
    job.sumsq = sumsq;
    job.nonfinite = nonfinite;
  }
  return job;
}

template <typename Body>
void for_tiles(const PassGrid& grid, const Body& body) {
#pragma omp for schedule(static)
  for (int64_t index = 0; index < grid.tiles(); ++index) body(grid.tile(index));
}

template <typename Body>
void run_parallel(int threads, const Body& body) {
  if (threads <= 1) {  // no team: even one of a single thread costs a microsecond
    body();
    return;
  }
#pragma omp parallel num_threads(threads)
  body();
}

template <typename T>
bool all_finite(const T* a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return false;
  }
  return true;
}

// For checks off the hot path: the message is built whether or not the check fails.
void require(bool condition, const std::string& message) {
  if (!condition) throw std::invalid_argument(message);
}

[[noreturn]] void fail(const std::string& message) { throw std::invalid_argument(message); }

}  // namespace

const char* loss_name(LossKind kind) {
  switch (kind) {
    case LossKind::softmax_cross_entropy: return "softmax_cross_entropy";
    case LossKind::binary_cross_entropy_with_logits: return "binary_cross_entropy_with_logits";
    case LossKind::mse: return "mse";
  }
  return "unknown";
}

NonFiniteError::NonFiniteError(const std::string& layer, const std::string& tensor)
    : std::runtime_error("non-finite " + tensor + " in " + layer +
                         " (NaN or infinity); nothing was changed"),
      layer_(layer),
      tensor_(tensor) {}

void validate_network_spec(const NetworkSpec& spec) {
  const size_t layers = spec.widths.size() < 2 ? 0 : spec.widths.size() - 1;
  require(layers >= 1, "widths must have at least 2 entries (inputs and outputs), got " +
                           std::to_string(spec.widths.size()));
  for (size_t i = 0; i < spec.widths.size(); ++i) {
    const int64_t w = spec.widths[i];
    require(w >= 1 && w <= std::numeric_limits<int>::max(),
            "widths[" + std::to_string(i) + "] must be in [1, 2^31 - 1], got " + std::to_string(w));
  }
  require(spec.hidden.size() == layers - 1,
          "hidden must have one entry per hidden layer (" + std::to_string(layers - 1) + "), got " +
              std::to_string(spec.hidden.size()));
  for (size_t i = 0; i < spec.hidden.size(); ++i) {
    const HiddenLayerSpec& h = spec.hidden[i];
    const std::string at = "hidden layer " + std::to_string(i);
    const int code = static_cast<int>(h.activation);
    require(code >= 0 && code < kActivationCount, at + ": unknown activation " + std::to_string(code));
    require(std::isfinite(h.alpha), at + ": alpha must be finite");
    require(h.dropout >= 0 && h.dropout < 1, at + ": dropout must be in [0, 1), got " +
                                                 std::to_string(h.dropout));
    require(!h.residual || spec.widths[i] == spec.widths[i + 1],
            at + ": a residual layer needs fan_in == fan_out, got " + std::to_string(spec.widths[i]) +
                " -> " + std::to_string(spec.widths[i + 1]));
  }
  const int loss = static_cast<int>(spec.loss);
  require(loss >= 0 && loss <= static_cast<int>(LossKind::mse), "unknown loss " + std::to_string(loss));
  require(spec.bn_momentum >= 0 && spec.bn_momentum <= 1,
          "bn_momentum must be in [0, 1], got " + std::to_string(spec.bn_momentum));
  require(std::isfinite(spec.bn_eps) && spec.bn_eps > 0,
          "bn_eps must be finite and > 0, got " + std::to_string(spec.bn_eps));
}

template <typename T>
struct Network<T>::Layer {
  int64_t in = 0, out = 0;
  bool hidden = false, batchnorm = false, residual = false, dropout = false;
  bool from_output = false;  // the activation's derivative is computed from a
  bool keep_h = false;       // h is kept for the backward (batch norm and a derivative from h)
  Activation kind = Activation::identity;
  T alpha = 0, keep_scale = 1;
  uint32_t threshold = 0;
  // Parameter tensors (indices into parameter_info_, -1 when absent) and buffers.
  int64_t weight = -1, bias = -1, gamma = -1, beta = -1, running_mean = -1, running_var = -1;
  // Batch norm, (O) each: batch mean, biased var, inv_std; forward scale and offset (with z's
  // first row as shift); backward coefficients; the inference scale from the running variance.
  std::vector<T> stats;
  T *mean = nullptr, *var = nullptr, *inv_std = nullptr, *scale = nullptr, *offset = nullptr;
  T *scale_dy = nullptr, *scale_xc = nullptr, *grad_offset = nullptr, *inference_scale = nullptr;
  // Workspace for capacity_ rows, (N, O) each.
  T *z = nullptr, *h = nullptr, *a = nullptr, *output = nullptr;
  T *grad_out = nullptr, *grad_h = nullptr, *grad_z = nullptr;
  uint8_t* mask = nullptr;
  int64_t stats_offset = 0;  // of the layer's features in the telemetry scratch
};

template <typename T>
Network<T>::Network(const NetworkSpec& spec)
    : spec_(spec),
      telemetry_(std::max<int64_t>(1, static_cast<int64_t>(spec.widths.size()) - 1),
                 TelemetryOptions{}) {
  validate_network_spec(spec_);
  const int64_t L = static_cast<int64_t>(spec_.widths.size()) - 1;
  layers_.resize(static_cast<size_t>(L));
  int64_t param_offset = 0, buffer_offset = 0;
  const auto add_parameter = [&](const std::string& name, int64_t rows, int64_t cols,
                                 ParamRole role) {
    parameter_info_.push_back({name, rows, cols, role, param_offset});
    param_offset += parameter_info_.back().size();
    return static_cast<int64_t>(parameter_info_.size()) - 1;
  };
  const auto add_buffer = [&](const std::string& name, int64_t rows) {
    buffer_info_.push_back({name, rows, 0, ParamRole::weight, buffer_offset});
    buffer_offset += rows;
    return static_cast<int64_t>(buffer_info_.size()) - 1;
  };
  for (int64_t i = 0; i < L; ++i) {
    Layer& layer = layers_[i];
    layer.in = spec_.widths[i];
    layer.out = spec_.widths[i + 1];
    const std::string index = std::to_string(i);
    layer.weight = add_parameter("dense" + index + ".weight", layer.in, layer.out, ParamRole::weight);
    layer.bias = add_parameter("dense" + index + ".bias", layer.out, 0, ParamRole::bias);
    if (i == L - 1) continue;
    const HiddenLayerSpec& h = spec_.hidden[i];
    layer.hidden = true;
    layer.batchnorm = h.batchnorm;
    layer.residual = h.residual;
    layer.dropout = h.dropout > 0;
    layer.kind = h.activation;
    layer.alpha = static_cast<T>(h.alpha);
    layer.from_output = activation_has_backward_from_output(h.activation) &&
                        !(activation_takes_alpha(h.activation) && !(h.alpha > 0));
    layer.keep_h = layer.batchnorm && !layer.from_output;
    if (layer.dropout) {
      layer.keep_scale = static_cast<T>(1.0 / (1.0 - h.dropout));
      layer.threshold = static_cast<uint32_t>(
          std::min(std::floor(h.dropout * 4294967296.0), 4294967295.0));
    }
    if (layer.batchnorm) {
      layer.gamma = add_parameter("bn" + index + ".gamma", layer.out, 0, ParamRole::bn_gamma);
      layer.beta = add_parameter("bn" + index + ".beta", layer.out, 0, ParamRole::bn_beta);
      layer.running_mean = add_buffer("bn" + index + ".running_mean", layer.out);
      layer.running_var = add_buffer("bn" + index + ".running_var", layer.out);
      layer.stats.assign(static_cast<size_t>(9 * layer.out), T(0));
      T* s = layer.stats.data();
      T** slots[] = {&layer.mean,     &layer.var,      &layer.inv_std,
                     &layer.scale,    &layer.offset,   &layer.scale_dy,
                     &layer.scale_xc, &layer.grad_offset, &layer.inference_scale};
      for (T** slot : slots) {
        *slot = s;
        s += layer.out;
      }
    }
  }
  // The padding is read (never used) by network_small_gemm, whose B is a weight matrix.
  params_.assign(static_cast<size_t>(param_offset + kSmallGemmPadding), T(0));
  grads_.assign(static_cast<size_t>(param_offset), T(0));
  buffers_.assign(static_cast<size_t>(buffer_offset), T(0));
  for (const Layer& layer : layers_) {
    if (!layer.batchnorm) continue;
    const TensorInfo& gamma = parameter_info_[layer.gamma];
    std::fill(params_.begin() + gamma.offset, params_.begin() + gamma.offset + gamma.size(), T(1));
    const TensorInfo& var = buffer_info_[layer.running_var];
    std::fill(buffers_.begin() + var.offset, buffers_.begin() + var.offset + var.size(), T(1));
  }
  for (const TensorInfo& info : parameter_info_) {
    param_ptrs_.push_back(params_.data() + info.offset);
    grad_ptrs_.push_back(grads_.data() + info.offset);
    param_sizes_.push_back(info.size());
    param_roles_.push_back(info.role);
  }
  grad_sumsq_.assign(parameter_info_.size() * kMaxGemmBlocks, 0.0);
  int64_t widest = 1;
  for (int64_t w : spec_.widths) widest = std::max(widest, w);
  sum_partials_.assign(static_cast<size_t>(3 * kMaxChunks * widest), 0.0);
  bias_partials_.assign(static_cast<size_t>(2 * kMaxChunks * widest), T(0));
  inference_work_.assign(static_cast<size_t>(2 * kInferenceRows * widest), T(0));
  const int64_t C = spec_.widths.back();
  eval_grad_.assign(static_cast<size_t>(2 * kInferenceRows * C), T(0));
  int64_t features = 0;
  for (Layer& layer : layers_) {
    layer.stats_offset = features;
    features += layer.out;
  }
  tile_sums_.assign(static_cast<size_t>(L * kMaxTiles * kTileSums), 0.0);
  alive_.assign(static_cast<size_t>(kMaxChunks * features), 0);
  unit_sums_.assign(static_cast<size_t>(kMaxChunks * features), 0.0);
  nonzero_rows_.assign(static_cast<size_t>(L * kMaxChunks), 0);
  grad_out_sumsq_.assign(static_cast<size_t>(L * kMaxGemmBlocks), 0.0);
  grad_out_nonfinite_.assign(static_cast<size_t>(L * kMaxGemmBlocks), 0);
  param_norms_.assign(2 * parameter_info_.size(), 0.0);
  step_metrics_.assign(static_cast<size_t>(L * kLayerMetrics), 0.0);
  step_nonfinite_.assign(static_cast<size_t>(L), 0);
  refresh_inference_scales();
}

template <typename T>
Network<T>::~Network() = default;

template <typename T>
void Network<T>::copy_parameters(T* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::copy(params_.begin(), params_.begin() + parameter_count(), out);
}

template <typename T>
void Network<T>::copy_gradients(T* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::copy(grads_.begin(), grads_.end(), out);
}

template <typename T>
void Network<T>::copy_buffers(T* out) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::copy(buffers_.begin(), buffers_.end(), out);
}

template <typename T>
void Network<T>::load(const T* params, const T* buffers) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const TensorInfo& info : parameter_info_) {
    require(all_finite(params + info.offset, info.size()),
            info.name + " contains NaN or infinity");
  }
  for (const TensorInfo& info : buffer_info_) {
    const T* values = buffers + info.offset;
    require(all_finite(values, info.size()), info.name + " contains NaN or infinity");
  }
  for (const Layer& layer : layers_) {
    if (!layer.batchnorm) continue;
    const TensorInfo& info = buffer_info_[layer.running_var];
    const T* values = buffers + info.offset;
    for (int64_t f = 0; f < info.size(); ++f) {
      if (!(values[f] >= 0)) {
        fail(info.name + " must be >= 0 (a variance), got " +
             std::to_string(static_cast<double>(values[f])) + " at index " + std::to_string(f));
      }
    }
  }
  std::copy(params, params + parameter_count(), params_.begin());
  std::copy(buffers, buffers + buffers_.size(), buffers_.begin());
  refresh_inference_scales();
}

template <typename T>
T Network<T>::exchange_parameter(int64_t index, T value) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (index < 0 || index >= parameter_count()) {
    fail("parameter index " + std::to_string(index) + " is out of range");
  }
  const T old = params_[index];
  params_[index] = value;
  refresh_inference_scales();
  return old;
}

template <typename T>
void Network<T>::set_dropout_step(uint64_t step) {
  std::lock_guard<std::mutex> lock(mutex_);
  dropout_step_ = step;
}

template <typename T>
void Network<T>::require_batch(int64_t N, bool training) const {
  if (N < 1) fail("the batch is empty (N = 0)");
  check_blas_size(N, "N (the batch size)");
  if (training && N < 2) {
    for (const Layer& layer : layers_) {
      if (layer.batchnorm) {
        fail("batch norm in training mode needs at least 2 samples per batch (the variance of "
             "one sample is zero), got N = " + std::to_string(N));
      }
    }
  }
}

template <typename T>
void Network<T>::require_targets(const Targets<T>& targets, int64_t N) const {
  const int64_t C = spec_.widths.back();
  if (spec_.loss == LossKind::softmax_cross_entropy) {
    if (targets.labels == nullptr) fail("softmax_cross_entropy needs int64 class indices");
    for (int64_t n = 0; n < N; ++n) {
      const int64_t label = targets.labels[n];
      if (label < 0 || label >= C) {
        fail("y must hold class indices in [0, " + std::to_string(C) + "), got " +
             std::to_string(label) + " at index " + std::to_string(n));
      }
    }
  } else if (targets.values == nullptr) {
    fail(std::string(loss_name(spec_.loss)) + " needs float targets of shape (N, C)");
  }
}

template <typename T>
void Network<T>::reserve(int64_t N) {
  const int64_t C = spec_.widths.back();
  const int64_t loss_partials =
      spec_.loss == LossKind::softmax_cross_entropy ? N : ceil_div(N * C, kLossChunk);
  if (static_cast<int64_t>(loss_partials_.size()) < loss_partials) {
    loss_partials_.assign(static_cast<size_t>(loss_partials), 0.0);
    ++workspace_allocations_;
  }
  if (N <= capacity_) return;
  // Per row: z for every layer; a for hidden layers; h, out, grad_h and grad_z where needed;
  // the logits' gradient for the output layer; two gradient buffers as wide as the widest
  // hidden layer.
  // The hidden layers' gradients stay in cache: a layer's backward passes write grad_h and
  // grad_z over its grad_out, element by element, and grad_out itself is one of the two
  // gradient buffers, alternating by layer (layer i's dx GEMM reads its grad_z from one and
  // writes layer i - 1's grad_out into the other; nothing reads a gradient buffer after the
  // layers below have used it). Buffers of their own cost a miss for every line written
  // (784-256x5-10 + batch norm: the activation backward's stores stalled on 64% of its
  // samples). Layer 0 with a residual keeps grad_h and grad_z apart: probe's gradient of the
  // input adds its grad_out.
  const auto keeps_grad_out = [&](const Layer& l) {
    return l.residual && &l == &layers_.front();
  };
  int64_t per_row = 0, mask_per_row = 0, widest = 0;
  for (const Layer& l : layers_) {
    per_row += l.out;  // z
    if (!l.hidden) {
      per_row += l.out;  // grad_z
      continue;
    }
    widest = std::max(widest, l.out);
    per_row += l.out;  // a
    if (l.keep_h) per_row += l.out;  // h
    if (l.dropout || l.residual) per_row += l.out;  // output
    if (keeps_grad_out(l)) per_row += (l.batchnorm ? 2 : 1) * l.out;  // grad_h, grad_z
    if (l.dropout) mask_per_row += l.out;
  }
  per_row += 2 * widest;  // the gradient buffers
  std::vector<T> work(static_cast<size_t>(N * per_row));
  std::vector<uint8_t> masks(static_cast<size_t>(N * mask_per_row));
  T* next = work.data();
  uint8_t* next_mask = masks.data();
  const auto take = [&](int64_t width) {
    T* p = next;
    next += N * width;
    return p;
  };
  T* gradient_buffers[2] = {take(widest), take(widest)};
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& l = layers_[i];
    l.z = take(l.out);
    if (!l.hidden) {
      l.grad_z = take(l.out);
      l.output = l.z;
      continue;
    }
    l.a = take(l.out);
    l.grad_out = gradient_buffers[i % 2];
    l.h = l.keep_h ? take(l.out) : nullptr;
    l.output = l.dropout || l.residual ? take(l.out) : l.a;
    l.grad_h = keeps_grad_out(l) ? take(l.out) : l.grad_out;
    l.grad_z = l.batchnorm && keeps_grad_out(l) ? take(l.out) : l.grad_h;
    if (l.dropout) {
      l.mask = next_mask;
      next_mask += N * l.out;
    }
  }
  work_.swap(work);
  mask_work_.swap(masks);
  capacity_ = N;
  ++workspace_allocations_;
}

// The most items any pass of a step (training or, with `training` false, inference) can share
// out, counting only passes worth waking a thread for: a team costs its barriers (about a
// microsecond each) even when one thread does all the work.
static int64_t parallel_items(int64_t N, int64_t I, int64_t O, bool training) {
  int64_t most = 1;
  if (N * O >= 2 * kPassMinTileWork) most = std::max(most, PassGrid(N, O).tiles());
  most = std::max(most, plan_gemm(N, O, I).blocks);
  if (training && N * I * O >= 2 * kGemmBlockWork) {
    most = std::max(most, plan_gemm(I, O, N).blocks + plan_gemm(N, I, O).blocks);
  }
  return most;
}

template <typename T>
int Network<T>::threads_for_batch(int64_t N) const {
  const int budget = get_num_threads();
  if (budget <= 1) return 1;
  int64_t most = 1;
  for (const Layer& l : layers_) most = std::max(most, parallel_items(N, l.in, l.out, true));
  return static_cast<int>(std::min<int64_t>(budget, most));
}

// ---- training passes (run by every thread of the region) --------------------------------------

template <typename T>
void Network<T>::training_forward(const T* x, int64_t N) {
  const int64_t L = static_cast<int64_t>(layers_.size());
  for (int64_t i = 0; i < L; ++i) {
    Layer& l = layers_[i];
    const T* in = i == 0 ? x : layers_[i - 1].output;
    const T* W = params_.data() + parameter_info_[l.weight].offset;
    const T* b = params_.data() + parameter_info_[l.bias].offset;
    const GemmJob<T> job =
        make_gemm<T>(false, false, N, l.out, l.in, in, W, T(1), l.z, b, nullptr);
    const bool fused = l.hidden && forward_pass_fused(job.plan, l.batchnorm);
    if (!fused) run_gemms(job, static_cast<const GemmJob<T>*>(nullptr), [] {});
    if (!l.hidden) continue;
    std::optional<PhaseTimer> timer;
    if (!fused) timer.emplace(&StepProfile::own_ns);
    const PassGrid grid = forward_pass_grid(N, l.in, l.out, l.batchnorm);
    const int64_t O = l.out;
    if (l.batchnorm) {
      double* within = sum_partials_.data();
      double* between1 = within + kMaxChunks * O;
      double* between2 = between1 + kMaxChunks * O;
      for_tiles(grid, [&](const PassTile& tile) {
        GRADWATCH_DISPATCH(network_moments_tile<T>, within, between1, between2, l.z, l.z, tile, O);
      });
      {
        // The partials of each feature added in chunk order, then batch norm's coefficients,
        // as batchnorm_forward computes them (shift = z's first row); features shared out.
        const T* gamma = params_.data() + parameter_info_[l.gamma].offset;
        const T* beta = params_.data() + parameter_info_[l.beta].offset;
        const double n = static_cast<double>(N);
#pragma omp for schedule(static)
        for (int64_t f = 0; f < O; ++f) {
          double w = within[f], s1 = between1[f], s2 = between2[f];
          for (int64_t c = 1; c < grid.chunks; ++c) {
            w += within[c * O + f];
            s1 += between1[c * O + f];
            s2 += between2[c * O + f];
          }
          const double mean_minus_shift = s1 / n;
          double variance = (w + (s2 - s1 * mean_minus_shift)) / n;
          variance = variance < 0 ? 0.0 : variance;  // rounding only; NaN falls through
          const double inverse = 1 / std::sqrt(variance + spec_.bn_eps);
          const double a = static_cast<double>(gamma[f]) * inverse;
          l.mean[f] = static_cast<T>(static_cast<double>(l.z[f]) + mean_minus_shift);
          l.var[f] = static_cast<T>(variance);
          l.inv_std[f] = static_cast<T>(inverse);
          l.scale[f] = static_cast<T>(a);
          l.offset[f] = static_cast<T>(static_cast<double>(beta[f]) - a * mean_minus_shift);
        }
      }
    }
    HiddenForwardArgs<T> args{};
    // h is written only when the backward needs it: telemetry's statistics recompute it row by
    // row from z, in L1, which costs less than writing h out and reading it back (measured on
    // 784-256x5-10 + batch norm: +2.5-4% a step with recording against +6-8%).
    args.h = l.keep_h ? l.h : nullptr;
    args.a = l.a;
    args.out = l.output;
    args.mask = use_dropout_ ? l.mask : nullptr;
    args.z = l.z;
    args.shift = l.batchnorm ? l.z : nullptr;
    args.scale = l.batchnorm ? l.scale : nullptr;
    args.offset = l.batchnorm ? l.offset : nullptr;
    args.residual = l.residual ? in : nullptr;
    args.O = O;
    args.kind = l.kind;
    args.alpha = l.alpha;
    args.keep_scale = l.keep_scale;
    args.generate_mask = l.dropout && use_dropout_;
    args.dropout = {spec_.dropout_seed, dropout_step_, static_cast<uint32_t>(i), l.threshold};
    const bool can_die = l.kind == Activation::relu || l.kind == Activation::leaky_relu;
    const ForwardStatsArgs stats{tile_sums_.data() + i * kMaxTiles * kTileSums,
                                 can_die ? alive_.data() + kMaxChunks * l.stats_offset : nullptr,
                                 unit_sums_.data() + kMaxChunks * l.stats_offset,
                                 nonzero_rows_.data() + i * kMaxChunks};
    args.stats = collect_stats_ ? &stats : nullptr;
    if (fused) {
      run_gemm_with_pass(job, [&](int64_t block) {
        GRADWATCH_DISPATCH(network_forward_tile<T>, args, grid.tile(block));
      });
    } else {
      for_tiles(grid, [&](const PassTile& tile) {
        GRADWATCH_DISPATCH(network_forward_tile<T>, args, tile);
      });
    }
    if (collect_stats_ && grid.blocks > 1) {  // tiles split rows: their norms come after
#pragma omp for schedule(static)
      for (int64_t chunk = 0; chunk < grid.chunks; ++chunk) {
        const PassTile first = grid.tile(chunk * grid.blocks);
        baseline::telemetry_unit_sums_chunk(stats.unit_sums, stats.nonzero_rows, l.a, first.r0,
                                            first.r1, chunk, O);
      }
    }
  }
}

template <typename T>
void Network<T>::loss_forward(const Targets<T>& targets, int64_t N) {
  const PhaseTimer timer(&StepProfile::own_ns);
#pragma omp single
  {
    const Layer& last = layers_.back();
    const int64_t C = last.out;
    double* partials = loss_partials_.data();
    GRADWATCH_DISPATCH(network_loss<T>, last.grad_z, partials, last.z, targets.labels,
                       targets.values, N, C, spec_.loss);
    const bool rows = spec_.loss == LossKind::softmax_cross_entropy;
    const int64_t count = rows ? N : ceil_div(N * C, kLossChunk);
    double total = 0.0;
    for (int64_t k = 0; k < count; ++k) total += partials[k];
    loss_ = total / static_cast<double>(rows ? N : N * C);
  }
}

template <typename T>
T* Network<T>::bias_partials(int64_t i) {
  // Layer i's sums are written while layer i + 1's are read (its backward pass runs inside
  // layer i + 1's GEMM blocks): two halves, by parity.
  return bias_partials_.data() + (i % 2) * static_cast<int64_t>(bias_partials_.size() / 2);
}

template <typename T>
HiddenBackwardArgs<T> Network<T>::hidden_backward_args(int64_t i) {
  Layer& l = layers_[i];
  Layer* below = i > 0 ? &layers_[i - 1] : nullptr;
  double* sum_dy = sum_partials_.data();
  HiddenBackwardArgs<T> args{};
  args.grad_h = l.grad_h;
  args.residual_grad = l.residual && below != nullptr ? below->grad_out : nullptr;
  args.bias_partials = l.batchnorm ? nullptr : bias_partials(i);
  args.sum_dy = l.batchnorm ? sum_dy : nullptr;
  args.sum_dy_xhat = l.batchnorm ? sum_dy + kMaxChunks * l.out : nullptr;
  args.grad_out = l.grad_out;
  args.mask = use_dropout_ ? l.mask : nullptr;
  args.a = l.a;
  args.h = l.keep_h ? l.h : l.z;
  args.z = l.z;
  args.mean = l.mean;
  args.inv_std = l.inv_std;
  args.O = l.out;
  args.kind = l.kind;
  args.alpha = l.alpha;
  args.keep_scale = l.keep_scale;
  args.from_output = l.from_output;
  return args;
}

template <typename T>
void Network<T>::training_backward(const T* x, int64_t N) {
  const int64_t L = static_cast<int64_t>(layers_.size());
  // Set when layer i's activation backward ran inside layer i + 1's dx blocks, on their rows
  // (as the forward pass runs inside its GEMM's blocks): its grid is then dx's row blocks.
  std::optional<PassGrid> fused_grid;
  for (int64_t i = L - 1; i >= 0; --i) {
    Layer& l = layers_[i];
    const int64_t O = l.out;
    const PassGrid grid = fused_grid ? *fused_grid : PassGrid(N, O);
    T* bias_partials = this->bias_partials(i);
    if (!l.hidden) {
      const PhaseTimer timer(&StepProfile::own_ns);
      for_tiles(grid, [&](const PassTile& tile) {
        GRADWATCH_DISPATCH(network_column_sum_tile<T>, bias_partials, l.grad_z, tile, O);
      });
    } else {
      const PhaseTimer timer(&StepProfile::own_ns);
      double* sum_dy = sum_partials_.data();
      double* sum_dy_xhat = sum_dy + kMaxChunks * O;
      if (!fused_grid) {
        const HiddenBackwardArgs<T> args = hidden_backward_args(i);
        for_tiles(grid, [&](const PassTile& tile) {
          GRADWATCH_DISPATCH(network_backward_tile<T>, args, tile);
        });
      }
      if (l.batchnorm) {
        {
          // Features shared out; the sums of squares of grad_gamma and grad_beta come with the
          // bias gradient, in one task beside the GEMMs below.
          const TensorInfo& gamma_info = parameter_info_[l.gamma];
          const TensorInfo& beta_info = parameter_info_[l.beta];
          const T* gamma = params_.data() + gamma_info.offset;
          T* grad_gamma = grads_.data() + gamma_info.offset;
          T* grad_beta = grads_.data() + beta_info.offset;
          const double n = static_cast<double>(N);
#pragma omp for schedule(static)
          for (int64_t f = 0; f < O; ++f) {
            double s_dy = sum_dy[f], s_dy_xhat = sum_dy_xhat[f];
            for (int64_t c = 1; c < grid.chunks; ++c) {
              s_dy += sum_dy[c * O + f];
              s_dy_xhat += sum_dy_xhat[c * O + f];
            }
            const double inverse = static_cast<double>(l.inv_std[f]);
            const double a = static_cast<double>(gamma[f]) * inverse;
            grad_beta[f] = static_cast<T>(s_dy);
            grad_gamma[f] = static_cast<T>(s_dy_xhat);
            l.scale_dy[f] = static_cast<T>(a);
            l.scale_xc[f] = static_cast<T>(-a * inverse * s_dy_xhat / n);
            l.grad_offset[f] = static_cast<T>(-a * s_dy / n);
          }
        }
        BatchnormGradArgs<T> bn{l.grad_z, bias_partials, l.grad_h, l.z, l.mean,
                                l.scale_dy, l.scale_xc, l.grad_offset, O};
        for_tiles(grid, [&](const PassTile& tile) {
          GRADWATCH_DISPATCH(network_batchnorm_grad_tile<T>, bn, tile);
        });
      }
    }
    // dW = in^T @ grad_z and dx = grad_z @ W^T (onto the residual gradient, if any), with the
    // bias gradient (the partials added in chunk order) as one more task.
    const T* in = i == 0 ? x : layers_[i - 1].output;
    const TensorInfo& weight = parameter_info_[l.weight];
    const TensorInfo& bias = parameter_info_[l.bias];
    const T* W = params_.data() + weight.offset;
    T* grad_W = grads_.data() + weight.offset;
    T* grad_b = grads_.data() + bias.offset;
    double* weight_sumsq = grad_sumsq_.data() + l.weight * kMaxGemmBlocks;
    double* bias_sumsq = grad_sumsq_.data() + l.bias * kMaxGemmBlocks;
    const GemmJob<T> dW =
        make_gemm<T>(true, false, l.in, O, N, in, l.grad_z, T(0), grad_W, nullptr, weight_sumsq);
    GemmJob<T> dx{};
    if (i > 0) {
      const T beta = l.residual ? T(1) : T(0);
      double* grad_out_sumsq =
          collect_stats_ ? grad_out_sumsq_.data() + (i - 1) * kMaxGemmBlocks : nullptr;
      int64_t* grad_out_nonfinite =
          collect_stats_ ? grad_out_nonfinite_.data() + (i - 1) * kMaxGemmBlocks : nullptr;
      dx = make_gemm<T>(false, true, N, l.in, O, l.grad_z, W, beta, layers_[i - 1].grad_out,
                        nullptr, grad_out_sumsq, grad_out_nonfinite);
    }
    const int64_t chunks = grid.chunks;
    fused_grid.reset();
    HiddenBackwardArgs<T> below_args{};
    if (i > 0 && layers_[i - 1].hidden && dx.plan.split_rows && dx.plan.blocks > 1) {
      fused_grid = PassGrid::gemm_rows(dx.plan, N, l.in);
      below_args = hidden_backward_args(i - 1);
    }
    const auto below_pass = [&](int64_t block) {
      GRADWATCH_DISPATCH(network_backward_tile<T>, below_args, fused_grid->tile(block));
    };
    run_gemms(dW, i > 0 ? &dx : nullptr, fused_grid ? &below_pass : nullptr, [&] {
      double sumsq = 0.0;
      for (int64_t f = 0; f < O; ++f) {
        T sum = bias_partials[f];
        for (int64_t c = 1; c < chunks; ++c) sum += bias_partials[c * O + f];
        grad_b[f] = sum;
        sumsq += static_cast<double>(sum) * static_cast<double>(sum);
      }
      *bias_sumsq = sumsq;
      if (l.batchnorm) {
        const T* grad_gamma = grads_.data() + parameter_info_[l.gamma].offset;
        const T* grad_beta = grads_.data() + parameter_info_[l.beta].offset;
        double gamma_sumsq = 0.0, beta_sumsq = 0.0;
        for (int64_t f = 0; f < O; ++f) {
          const double g = static_cast<double>(grad_gamma[f]);
          const double b = static_cast<double>(grad_beta[f]);
          gamma_sumsq += g * g;
          beta_sumsq += b * b;
        }
        grad_sumsq_[l.gamma * kMaxGemmBlocks] = gamma_sumsq;
        grad_sumsq_[l.beta * kMaxGemmBlocks] = beta_sumsq;
      }
    });
  }
}

template <typename T>
void Network<T>::run_training(const T* x, const Targets<T>& targets, int64_t N,
                              bool gradients) {
  reserve(N);
  // The number of GEMM blocks of a gradient depends on N: clear the sums of the unused ones.
  std::fill(grad_sumsq_.begin(), grad_sumsq_.end(), 0.0);
  if (collect_stats_) {
    std::fill(grad_out_sumsq_.begin(), grad_out_sumsq_.end(), 0.0);
    std::fill(grad_out_nonfinite_.begin(), grad_out_nonfinite_.end(), 0);
  }
  const int threads = threads_for_batch(N);
  BlasSingleThreaded single_threaded_blas;
  run_parallel(threads, [&] {
    training_forward(x, N);
    if (targets.labels != nullptr || targets.values != nullptr) loss_forward(targets, N);
    if (gradients) training_backward(x, N);
  });
}

// ---- inference -------------------------------------------------------------------------------

template <typename T>
void Network<T>::refresh_inference_scales() {
  for (Layer& l : layers_) {
    if (!l.batchnorm) continue;
    const T* gamma = params_.data() + parameter_info_[l.gamma].offset;
    const T* running_var = buffers_.data() + buffer_info_[l.running_var].offset;
    for (int64_t f = 0; f < l.out; ++f) {
      l.inference_scale[f] = static_cast<T>(
          static_cast<double>(gamma[f]) / std::sqrt(static_cast<double>(running_var[f]) + spec_.bn_eps));
    }
  }
}

template <typename T>
void Network<T>::inference_chunk(T* logits, const T* x, int64_t rows) {
  const int64_t L = static_cast<int64_t>(layers_.size());
  int threads = 1;
  if (get_num_threads() > 1) {
    int64_t most = 1;
    for (const Layer& l : layers_) most = std::max(most, parallel_items(rows, l.in, l.out, false));
    threads = static_cast<int>(std::min<int64_t>(get_num_threads(), most));
  }
  T* buffers[2] = {inference_work_.data(), inference_work_.data() + inference_work_.size() / 2};
  run_parallel(threads, [&] {
    for (int64_t i = 0; i < L; ++i) {
      const Layer& l = layers_[i];
      const T* in = i == 0 ? x : buffers[(i - 1) & 1];
      T* out = i == L - 1 ? logits : buffers[i & 1];
      const T* W = params_.data() + parameter_info_[l.weight].offset;
      const T* b = params_.data() + parameter_info_[l.bias].offset;
      const GemmJob<T> job = make_gemm<T>(false, false, rows, l.out, l.in, in, W, T(1), out, b, nullptr);
      run_gemms(job, static_cast<const GemmJob<T>*>(nullptr), [] {});
      if (!l.hidden) continue;
      HiddenForwardArgs<T> args{};
      args.a = out;
      args.out = out;
      args.z = out;
      if (l.batchnorm) {
        args.shift = buffers_.data() + buffer_info_[l.running_mean].offset;
        args.scale = l.inference_scale;
        args.offset = params_.data() + parameter_info_[l.beta].offset;
      }
      args.residual = l.residual ? in : nullptr;
      args.O = l.out;
      args.kind = l.kind;
      args.alpha = l.alpha;
      args.keep_scale = T(1);
      for_tiles(PassGrid(rows, l.out), [&](const PassTile& tile) {
        GRADWATCH_DISPATCH(network_forward_tile<T>, args, tile);
      });
    }
  });
}

// ---- public calls ----------------------------------------------------------------------------

template <typename T>
void Network<T>::forward(T* logits, const T* x, int64_t N, bool training) {
  std::lock_guard<std::mutex> lock(mutex_);
  require_batch(N, training);
  const int64_t D = spec_.widths.front(), C = spec_.widths.back();
  if (training) {
    run_training(x, Targets<T>{}, N, false);
    std::copy(layers_.back().z, layers_.back().z + N * C, logits);
    return;
  }
  // Up to kSmallGemmRows rows, every GEMM is our own (see GemmJob::run_block).
  std::optional<BlasSingleThreaded> single_threaded_blas;
  if (N > kSmallGemmRows) single_threaded_blas.emplace();
  for (int64_t r = 0; r < N; r += kInferenceRows) {
    inference_chunk(logits + r * C, x + r * D, std::min(kInferenceRows, N - r));
  }
}

template <typename T>
double Network<T>::loss_and_gradients(const T* x, const Targets<T>& targets, int64_t N) {
  std::lock_guard<std::mutex> lock(mutex_);
  require_batch(N, true);
  require_targets(targets, N);
  run_training(x, targets, N, true);
  return loss_;
}

template <typename T>
double Network<T>::loss(const T* x, const Targets<T>& targets, int64_t N) {
  std::lock_guard<std::mutex> lock(mutex_);
  require_batch(N, true);
  require_targets(targets, N);
  run_training(x, targets, N, false);
  return loss_;
}

template <typename T>
void Network<T>::check_finite(const Targets<T>& targets, int64_t N) const {
  const int64_t C = spec_.widths.back();
  if (!std::isfinite(loss_)) {
    if (targets.values != nullptr) {
      for (int64_t e = 0; e < N * C; ++e) {
        if (std::isnan(targets.values[e])) fail("y contains NaN at flat index " + std::to_string(e));
      }
    }
    throw NonFiniteError("loss", "value");
  }
  // A tensor's sum of squares is finite unless one of its entries is not (or, in double, the
  // squares overflow: then the entries are searched).
  const auto tensor_finite = [&](int64_t tensor) {
    double sum = 0.0;
    for (int64_t b = 0; b < kMaxGemmBlocks; ++b) sum += grad_sumsq_[tensor * kMaxGemmBlocks + b];
    if (std::isfinite(sum)) return true;
    const TensorInfo& info = parameter_info_[tensor];
    return all_finite(grads_.data() + info.offset, info.size());
  };
  for (int64_t i = static_cast<int64_t>(layers_.size()) - 1; i >= 0; --i) {
    const Layer& l = layers_[i];
    const auto name = [i](const char* kind) { return kind + std::to_string(i); };
    if (l.batchnorm) {
      if (!tensor_finite(l.gamma)) throw NonFiniteError(name("bn"), "gamma gradient");
      if (!tensor_finite(l.beta)) throw NonFiniteError(name("bn"), "beta gradient");
    }
    if (!tensor_finite(l.bias)) throw NonFiniteError(name("dense"), "bias gradient");
    if (!tensor_finite(l.weight)) throw NonFiniteError(name("dense"), "weight gradient");
  }
  for (int64_t i = 0; i < static_cast<int64_t>(layers_.size()); ++i) {
    const Layer& l = layers_[i];
    if (!l.batchnorm) continue;
    if (!all_finite(l.mean, l.out)) throw NonFiniteError("bn" + std::to_string(i), "batch mean");
    if (!all_finite(l.var, l.out) || !all_finite(l.inv_std, l.out)) {
      throw NonFiniteError("bn" + std::to_string(i), "batch variance");
    }
  }
}

template <typename T>
double Network<T>::gradient_norm() const {
  double total = 0.0;
  for (double sum : grad_sumsq_) total += sum;
  return std::sqrt(total);
}

template <typename T>
void Network<T>::update_running_statistics(int64_t N) {
  const double m = spec_.bn_momentum;
  const double unbiased = static_cast<double>(N) / static_cast<double>(N - 1);
  for (Layer& l : layers_) {
    if (!l.batchnorm) continue;
    T* running_mean = buffers_.data() + buffer_info_[l.running_mean].offset;
    T* running_var = buffers_.data() + buffer_info_[l.running_var].offset;
    for (int64_t f = 0; f < l.out; ++f) {
      running_mean[f] = static_cast<T>((1 - m) * static_cast<double>(running_mean[f]) +
                                       m * static_cast<double>(l.mean[f]));
      running_var[f] = static_cast<T>((1 - m) * static_cast<double>(running_var[f]) +
                                      m * static_cast<double>(l.var[f]) * unbiased);
    }
  }
}

template <typename T>
StepResult Network<T>::train_step(const T* x, const Targets<T>& targets, int64_t N,
                                  Optimizer<T>& optimizer, double clip_norm, double clip_value) {
  std::lock_guard<std::mutex> lock(mutex_);
  const StepProfileScope profile_scope(profiling_ ? &profile_ : nullptr);
  require_batch(N, true);
  require_targets(targets, N);
  if (std::isnan(clip_norm) || std::isnan(clip_value)) fail("clipping thresholds must not be NaN");
  const bool record = telemetry_.due(step_count_);
  collect_stats_ = record;
  run_training(x, targets, N, true);
  collect_stats_ = false;
  const PhaseTimer tail_timer(&StepProfile::tail_ns);
  const double norm = gradient_norm();
  const double lr = optimizer.options().lr;
  double scale = 1.0;
  try {
    check_finite(targets, N);
    if (clip_norm > 0) {
      if (!std::isfinite(norm)) throw NonFiniteError("all layers", "gradient norm");
      scale = std::min(1.0, clip_norm / (norm + 1e-6));
    }
  } catch (const NonFiniteError&) {  // recorded: the step that broke is worth seeing
    if (record) record_step(N, loss_, lr, norm, false, nullptr);
    ++step_count_;
    throw;
  }
  optimizer.step(param_ptrs_.data(), grad_ptrs_.data(), param_sizes_.data(), param_roles_.data(),
                 static_cast<int64_t>(param_ptrs_.size()), static_cast<T>(scale),
                 static_cast<T>(clip_value > 0 ? clip_value : 0),
                 record ? param_norms_.data() : nullptr, threads_for_batch(N));
  update_running_statistics(N);
  refresh_inference_scales();
  ++dropout_step_;
  if (record) {
    // Clipping changed the gradients: scaled by norm, or some |g scale| beyond clip_value (as
    // the optimiser compares them, in T).
    bool clipped = scale < 1.0;
    if (!clipped && clip_value > 0) {
      const T g_scale = static_cast<T>(scale), limit = static_cast<T>(clip_value);
      for (const T g : grads_) {
        if (std::abs(g * g_scale) > limit) {
          clipped = true;
          break;
        }
      }
    }
    record_step(N, loss_, lr, norm, clipped, param_norms_.data());
  }
  ++step_count_;
  return {loss_, norm};
}

// ---- telemetry -------------------------------------------------------------------------------

template <typename T>
void Network<T>::set_telemetry(const TelemetryOptions& options) {
  std::lock_guard<std::mutex> lock(mutex_);
  telemetry_.configure(options);
}

template <typename T>
TelemetryOptions Network<T>::telemetry_options() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return telemetry_.options();
}

template <typename T>
int64_t Network<T>::telemetry_size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return telemetry_.size();
}

template <typename T>
void Network<T>::clear_telemetry() {
  std::lock_guard<std::mutex> lock(mutex_);
  telemetry_.clear();
}

template <typename T>
int64_t Network<T>::copy_telemetry(int64_t* steps, double* scalars, uint8_t* clipped,
                                   double* metrics, int64_t* nonfinite, int64_t most) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return telemetry_.copy(steps, scalars, clipped, metrics, nonfinite, most);
}

template <typename T>
int64_t Network<T>::step_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return step_count_;
}

template <typename T>
void Network<T>::record_step(int64_t N, double loss, double lr, double grad_norm, bool clipped,
                             const double* param_norms) {
  collect_statistics(step_metrics_.data(), step_nonfinite_.data(), N, param_norms);
  telemetry_.push({step_count_, loss, lr, grad_norm, clipped}, step_metrics_.data(),
                  step_nonfinite_.data());
}

namespace {

template <typename T>
int64_t count_nonfinite(const T* values, int64_t n) {
  int64_t count = 0;
  for (int64_t e = 0; e < n; ++e) count += std::isfinite(values[e]) ? 0 : 1;
  return count;
}

// Mean and population standard deviation from a sum and a sum of squares over n values.
void moments(double& mean, double& std_dev, double sum, double squares, double n) {
  mean = sum / n;
  const double variance = (squares - sum * mean) / n;
  std_dev = std::sqrt(variance < 0 ? 0.0 : variance);  // rounding only; NaN falls through
}

// The sum of squares of the per-feature totals of partial sums (chunks, O), each feature's
// chunks added in chunk order, in four interleaved sums: feature by feature into one sum, the
// loop waits on the chain of additions rather than doing arithmetic.
double squared_feature_totals(const double* partials, int64_t chunks, int64_t O) {
  const auto total = [=](int64_t f) {
    double sum = partials[f];
    for (int64_t c = 1; c < chunks; ++c) sum += partials[c * O + f];
    return sum;
  };
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t f = 0;
  for (; f + 4 <= O; f += 4) {
    const double t0 = total(f), t1 = total(f + 1), t2 = total(f + 2), t3 = total(f + 3);
    s0 += t0 * t0;
    s1 += t1 * t1;
    s2 += t2 * t2;
    s3 += t3 * t3;
  }
  for (; f < O; ++f) {
    const double t = total(f);
    s0 += t * t;
  }
  return (s0 + s1) + (s2 + s3);
}

// (||sum of unit rows||^2 - n) / (n (n - 1)): the mean cosine over the n(n - 1) ordered pairs.
double mean_cosine(double unit_sum_squares, int64_t rows) {
  if (rows < 2) return std::numeric_limits<double>::quiet_NaN();
  const double n = static_cast<double>(rows);
  return (unit_sum_squares - n) / (n * (n - 1));
}

}  // namespace

template <typename T>
void Network<T>::collect_statistics(double* metrics, int64_t* nonfinite, int64_t N,
                                    const double* param_norms) {
  const int64_t L = static_cast<int64_t>(layers_.size());
  std::fill(metrics, metrics + L * kLayerMetrics, std::numeric_limits<double>::quiet_NaN());
  const auto metric = [&](int64_t i, LayerMetric m) -> double& {
    return metrics[i * kLayerMetrics + static_cast<int>(m)];
  };
  const auto block_sum = [](const double* sums, int64_t row) {
    double total = 0.0;
    for (int64_t b = 0; b < kMaxGemmBlocks; ++b) total += sums[row * kMaxGemmBlocks + b];
    return total;
  };
  // A gradient's non-finite entries are searched only when its sum of squares is not finite.
  const auto gradient_nonfinite = [&](int64_t tensor) -> int64_t {
    if (std::isfinite(block_sum(grad_sumsq_.data(), tensor))) return 0;
    const TensorInfo& info = parameter_info_[tensor];
    return count_nonfinite(grads_.data() + info.offset, info.size());
  };
  for (int64_t i = 0; i < L; ++i) {
    const Layer& l = layers_[i];
    const int64_t O = l.out;
    metric(i, LayerMetric::grad_weight_norm) = std::sqrt(block_sum(grad_sumsq_.data(), l.weight));
    metric(i, LayerMetric::grad_bias_norm) = std::sqrt(block_sum(grad_sumsq_.data(), l.bias));
    double weight_squares = 0.0;
    if (param_norms != nullptr) {
      weight_squares = param_norms[2 * l.weight];
      metric(i, LayerMetric::update_ratio) =
          std::sqrt(param_norms[2 * l.weight + 1]) / std::sqrt(weight_squares);
    } else {
      const TensorInfo& info = parameter_info_[l.weight];
      const T* W = params_.data() + info.offset;
      for (int64_t e = 0; e < info.size(); ++e) {
        weight_squares += static_cast<double>(W[e]) * static_cast<double>(W[e]);
      }
    }
    metric(i, LayerMetric::weight_norm) = std::sqrt(weight_squares);
    int64_t bad = gradient_nonfinite(l.weight) + gradient_nonfinite(l.bias);
    if (l.batchnorm) bad += gradient_nonfinite(l.gamma) + gradient_nonfinite(l.beta);
    if (l.hidden) {
      const double out_squares = block_sum(grad_out_sumsq_.data(), i);
      metric(i, LayerMetric::grad_output_norm) = std::sqrt(out_squares);
      for (int64_t b = 0; b < kMaxGemmBlocks; ++b) {  // counted by the GEMM that wrote it
        bad += grad_out_nonfinite_[static_cast<size_t>(i * kMaxGemmBlocks + b)];
      }
      const PassGrid grid = forward_pass_grid(N, l.in, O, l.batchnorm);
      double sums[kTileSums] = {};
      for (int64_t t = 0; t < grid.tiles(); ++t) {
        const double* tile = tile_sums_.data() + (i * kMaxTiles + t) * kTileSums;
        for (int k = 0; k < kTileSums; ++k) sums[k] += tile[k];
      }
      const double count = static_cast<double>(N * O);
      moments(metric(i, LayerMetric::preact_mean), metric(i, LayerMetric::preact_std),
              sums[kPreactSum], sums[kPreactSquares], count);
      moments(metric(i, LayerMetric::act_mean), metric(i, LayerMetric::act_std), sums[kActSum],
              sums[kActSquares], count);
      if (l.kind == Activation::sigmoid || l.kind == Activation::tanh) {
        metric(i, LayerMetric::saturated_fraction) = sums[kSaturated] / count;
      }
      if (l.kind == Activation::relu || l.kind == Activation::leaky_relu) {
        const uint8_t* alive = alive_.data() + kMaxChunks * l.stats_offset;
        int64_t dead = 0;
        for (int64_t f = 0; f < O; ++f) {
          uint8_t any = 0;
          for (int64_t c = 0; c < grid.chunks; ++c) any |= alive[c * O + f];
          dead += any ? 0 : 1;
        }
        metric(i, LayerMetric::dead_fraction) = static_cast<double>(dead) / static_cast<double>(O);
      }
      const double unit_squares = squared_feature_totals(
          unit_sums_.data() + kMaxChunks * l.stats_offset, grid.chunks, O);
      int64_t rows = 0;
      for (int64_t c = 0; c < grid.chunks; ++c) rows += nonzero_rows_[i * kMaxChunks + c];
      metric(i, LayerMetric::activation_cosine) = mean_cosine(unit_squares, rows);
      bad += static_cast<int64_t>(sums[kNonfinite]);
    } else {
      // The logits and their gradient: (N, C), small enough for one plain pass.
      double sum = 0.0, squares = 0.0, grad_squares = 0.0;
      int64_t rows = 0;
      double* unit = unit_sums_.data() + kMaxChunks * l.stats_offset;
      std::fill(unit, unit + O, 0.0);
      for (int64_t n = 0; n < N; ++n) {
        const T* z = l.z + n * O;
        const T* g = l.grad_z + n * O;
        double row_squares = 0.0;
        for (int64_t f = 0; f < O; ++f) {
          const double v = static_cast<double>(z[f]), d = static_cast<double>(g[f]);
          sum += v;
          row_squares += v * v;
          grad_squares += d * d;
        }
        squares += row_squares;
        if (row_squares == 0) continue;
        const double inverse = 1.0 / std::sqrt(row_squares);
        for (int64_t f = 0; f < O; ++f) unit[f] += static_cast<double>(z[f]) * inverse;
        ++rows;
      }
      const double unit_squares = squared_feature_totals(unit, 1, O);
      moments(metric(i, LayerMetric::preact_mean), metric(i, LayerMetric::preact_std), sum,
              squares, static_cast<double>(N * O));
      metric(i, LayerMetric::grad_output_norm) = std::sqrt(grad_squares);
      metric(i, LayerMetric::activation_cosine) = mean_cosine(unit_squares, rows);
      // Searched only when a sum of squares is not finite, as for the gradients above.
      if (!std::isfinite(squares)) bad += count_nonfinite(l.z, N * O);
      if (!std::isfinite(grad_squares)) bad += count_nonfinite(l.grad_z, N * O);
    }
    nonfinite[i] = bad;
  }
  for (int64_t i = 1; i < L; ++i) {  // layer i's input is layer i - 1's output
    metric(i, LayerMetric::grad_input_norm) = metric(i - 1, LayerMetric::grad_output_norm);
  }
}

template <typename T>
StepResult Network<T>::probe(double* metrics, int64_t* nonfinite, const T* x,
                             const Targets<T>& targets, int64_t N) {
  std::lock_guard<std::mutex> lock(mutex_);
  require_batch(N, true);
  require_targets(targets, N);
  collect_stats_ = true;
  use_dropout_ = false;
  run_training(x, targets, N, true);
  collect_stats_ = false;
  use_dropout_ = true;
  collect_statistics(metrics, nonfinite, N, nullptr);
  // The gradient with respect to the network input, which training never needs:
  // grad_x = grad_z @ W^T of layer 0 (+ grad_out when it is residual), summed in row order.
  const Layer& first = layers_.front();
  const int64_t D = first.in;
  std::vector<T> grad_x(static_cast<size_t>(N * D), T(0));
  if (first.residual) std::copy(first.grad_out, first.grad_out + N * D, grad_x.begin());
  {
    BlasSingleThreaded single_threaded_blas;
    gemm<T>(false, true, N, D, first.out, T(1), first.grad_z, first.out,
            params_.data() + parameter_info_[first.weight].offset, first.out,
            first.residual ? T(1) : T(0), grad_x.data(), D);
  }
  double squares = 0.0;
  for (const T g : grad_x) squares += static_cast<double>(g) * static_cast<double>(g);
  metrics[static_cast<int>(LayerMetric::grad_input_norm)] = std::sqrt(squares);
  return {loss_, gradient_norm()};
}

template <typename T>
Evaluation Network<T>::evaluate(const T* x, const Targets<T>& targets, int64_t N) {
  std::lock_guard<std::mutex> lock(mutex_);
  require_batch(N, false);
  require_targets(targets, N);
  const int64_t D = spec_.widths.front(), C = spec_.widths.back();
  const bool classes = spec_.loss == LossKind::softmax_cross_entropy;
  std::vector<double>& partials = loss_partials_;
  const int64_t most_partials = std::max(kInferenceRows, ceil_div(kInferenceRows * C, kLossChunk));
  if (static_cast<int64_t>(partials.size()) < most_partials) {
    partials.assign(most_partials, 0.0);
    ++workspace_allocations_;
  }
  T* logits = eval_grad_.data();
  T* grad = logits + kInferenceRows * C;
  double total = 0.0;
  int64_t correct = 0;
  // Up to kSmallGemmRows rows, every GEMM is our own (see GemmJob::run_block).
  std::optional<BlasSingleThreaded> single_threaded_blas;
  if (N > kSmallGemmRows) single_threaded_blas.emplace();
  for (int64_t r = 0; r < N; r += kInferenceRows) {
    const int64_t rows = std::min(kInferenceRows, N - r);
    inference_chunk(logits, x + r * D, rows);
    const int64_t* labels = classes ? targets.labels + r : nullptr;
    const T* values = classes ? nullptr : targets.values + r * C;
    GRADWATCH_DISPATCH(network_loss<T>, grad, partials.data(), logits, labels, values, rows, C,
                       spec_.loss);
    const int64_t count = classes ? rows : ceil_div(rows * C, kLossChunk);
    for (int64_t k = 0; k < count; ++k) total += partials[k];
    if (classes) {
      for (int64_t n = 0; n < rows; ++n) {
        const T* row = logits + n * C;
        const int64_t best = std::max_element(row, row + C) - row;
        correct += best == labels[n] ? 1 : 0;
      }
    } else if (spec_.loss == LossKind::binary_cross_entropy_with_logits) {
      for (int64_t e = 0; e < rows * C; ++e) {
        correct += (logits[e] > 0) == (values[e] > T(0.5)) ? 1 : 0;
      }
    }
  }
  if (!classes && std::isnan(total)) {
    for (int64_t e = 0; e < N * C; ++e) {
      if (std::isnan(targets.values[e])) fail("y contains NaN at flat index " + std::to_string(e));
    }
  }
  const double count = static_cast<double>(classes ? N : N * C);
  const int64_t scored = spec_.loss == LossKind::mse ? 0 : (classes ? N : N * C);
  return {total / count, correct, scored};
}

template <typename T>
void Network<T>::dropout_mask(uint8_t* mask, int64_t layer, int64_t N) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (layer < 0 || layer >= static_cast<int64_t>(layers_.size()) - 1 || !layers_[layer].dropout) {
    fail("layer " + std::to_string(layer) + " is not a hidden layer with dropout");
  }
  if (N < 1) fail("N must be >= 1");
  const Layer& l = layers_[layer];
  const DropoutStream stream{spec_.dropout_seed, dropout_step_, static_cast<uint32_t>(layer),
                             l.threshold};
  GRADWATCH_DISPATCH(network_dropout_mask, mask, 0, N * l.out, stream);
}

template <typename T>
void Network<T>::set_profiling(bool on) {
  std::lock_guard<std::mutex> lock(mutex_);
  profiling_ = on;
  profile_ = StepProfile{};
}

template <typename T>
StepProfile Network<T>::profile() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return profile_;
}

template <typename T>
int64_t Network<T>::workspace_allocations() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return workspace_allocations_;
}

template class Network<float>;
template class Network<double>;

}  // namespace gradwatch
