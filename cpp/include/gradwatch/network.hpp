// A multilayer perceptron whose whole training step (forward, loss, backward, clipping, optimiser
// update, batch-norm running statistics) is one call.
//
// Dims: N = batch, L = dense layers (the output layer is layer L - 1), I = fan_in and O = fan_out
// of a layer, D = input features (widths[0]), C = outputs (widths[L]).
//
// A hidden layer i < L - 1 computes
//   z = x @ W + b,  h = batchnorm(z) (or z),  a = act(h),  out = a * mask / (1 - p) (or a),
//   out += x when the layer is residual (I == O),
// and the output layer z = x @ W + b gives the logits.
//
// Parameters, in the order shared with the optimiser and state_dict: for each layer i,
// dense{i}.weight (I, O), dense{i}.bias (O), then, with batch norm, bn{i}.gamma (O), bn{i}.beta (O).
// Buffers (not optimised): bn{i}.running_mean (O), bn{i}.running_var (O).
//
// Determinism: every GEMM is split into blocks fixed by its shape alone, each block one
// single-threaded OpenBLAS call (or, for at most 4 rows, gradwatch's own kernel), and every
// reduction over the batch runs over row chunks fixed by N alone, added in chunk order; so results
// are bitwise the same for any thread count (on one machine and SIMD level). OpenBLAS is set to
// one thread while a call runs and back afterwards.
// Allocation: the workspace grows to the largest batch seen; later calls with the same or smaller
// batches allocate nothing (the optimiser allocates its state on its first step). Inference runs
// in chunks of 256 rows, so its memory does not grow with N.
// Threads: the calls of one Network are serialised by a mutex; all of them may run without the
// GIL.
// Telemetry (gradwatch/telemetry.hpp): train_step records per-layer statistics of every
// options.every-th step into a ring buffer allocated in advance; probe computes them for one
// pass without recording or changing anything.
#pragma once

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "gradwatch/activations.hpp"
#include "gradwatch/optim.hpp"
#include "gradwatch/telemetry.hpp"

namespace gradwatch {

enum class LossKind : int {
  softmax_cross_entropy,             // int64 class indices (N)
  binary_cross_entropy_with_logits,  // targets (N, C), mean over all N C elements
  mse,                               // targets (N, C), mean over all N C elements
};

const char* loss_name(LossKind kind);

// One hidden layer: dense -> batch norm (if on) -> activation -> dropout (if p > 0) (+ input).
template <typename T>
struct HiddenBackwardArgs;  // network_passes.hpp

struct HiddenLayerSpec {
  Activation activation = Activation::relu;
  double alpha = 0;       // leaky_relu's negative slope or elu's alpha; ignored by other kinds
  bool batchnorm = false;
  bool residual = false;  // needs fan_in == fan_out
  double dropout = 0;     // probability of zeroing an activation, in [0, 1)
};

struct NetworkSpec {
  std::vector<int64_t> widths;          // (L + 1): D, hidden widths..., C
  std::vector<HiddenLayerSpec> hidden;  // (L - 1)
  LossKind loss = LossKind::softmax_cross_entropy;
  double bn_momentum = 0.1;  // weight of the new batch in the running statistics (PyTorch's)
  double bn_eps = 1e-5;
  uint64_t dropout_seed = 0;  // Philox key of the dropout masks
};

// Throws std::invalid_argument naming the first invalid field.
void validate_network_spec(const NetworkSpec& spec);

// A NaN or infinity in the loss, a gradient or a batch statistic of a training step. layer is
// "loss", "dense{i}" or "bn{i}"; tensor e.g. "weight gradient". Nothing was changed.
class NonFiniteError : public std::runtime_error {
 public:
  NonFiniteError(const std::string& layer, const std::string& tensor);
  const std::string& layer() const { return layer_; }
  const std::string& tensor() const { return tensor_; }

 private:
  std::string layer_, tensor_;
};

// One parameter or buffer: its name, shape (cols = 0 for a vector), role and where it lives.
struct TensorInfo {
  std::string name;
  int64_t rows, cols;
  ParamRole role;  // weight for buffers too (unused there)
  int64_t offset;  // into the parameter (or buffer) storage
  int64_t size() const { return cols == 0 ? rows : rows * cols; }
};

// The targets of a batch: labels (N) for softmax cross-entropy, values (N, C) otherwise.
template <typename T>
struct Targets {
  const int64_t* labels = nullptr;
  const T* values = nullptr;
};

struct StepResult {
  double loss;
  double grad_norm;  // global L2 norm of every gradient, before clipping
};

// Private, for bench/bench_train.py: wall time of train_step calls made while profiling was on,
// split as cpp/src/step_profile.hpp describes (total - gemm - own is the core's overhead).
struct StepProfile {
  int64_t steps = 0;
  int64_t total_ns = 0;  // whole train_step calls
  int64_t gemm_ns = 0;   // GEMM phases
  int64_t own_ns = 0;    // gradwatch's own passes between the GEMMs
  int64_t tail_ns = 0;   // checks, norm, optimiser update, running statistics
};

struct Evaluation {
  double loss;
  int64_t correct;  // rows (softmax) or elements (logistic) classified right; 0 for mse
  int64_t total;    // rows or elements counted in correct
};

template <typename T>
class Network {
 public:
  // Parameters start at zero except gamma = 1; running_mean = 0, running_var = 1.
  explicit Network(const NetworkSpec& spec);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  const NetworkSpec& spec() const { return spec_; }
  const std::vector<TensorInfo>& parameter_info() const { return parameter_info_; }
  const std::vector<TensorInfo>& buffer_info() const { return buffer_info_; }
  int64_t parameter_count() const { return static_cast<int64_t>(grads_.size()); }
  int64_t buffer_count() const { return static_cast<int64_t>(buffers_.size()); }

  // Copies of every parameter, gradient (of the last gradient computation) and buffer, each in
  // its storage order: out has parameter_count() (resp. buffer_count()) values.
  void copy_parameters(T* out) const;
  void copy_gradients(T* out) const;
  void copy_buffers(T* out) const;
  // Replaces every parameter and buffer at once. Throws std::invalid_argument, changing
  // nothing, for a non-finite value or a negative running variance.
  void load(const T* params, const T* buffers);
  // Sets parameter entry `index` of the storage to value and returns the old value (for finite
  // differences).
  T exchange_parameter(int64_t index, T value);

  // logits = the output layer's z. training: batch statistics and dropout masks of the current
  // step (nothing is updated); else running statistics, no dropout. Rows of an inference call
  // are processed in chunks, so memory does not grow with N.
  // logits: (N, C)  x: (N, D)
  void forward(T* logits, const T* x, int64_t N, bool training);

  // Training-mode loss and gradients of every parameter (see copy_gradients); changes no
  // parameter, buffer or dropout step. Non-finite values are returned as they are.
  // x: (N, D)
  double loss_and_gradients(const T* x, const Targets<T>& targets, int64_t N);
  // The same loss without the gradients.
  // x: (N, D)
  double loss(const T* x, const Targets<T>& targets, int64_t N);

  // Forward, loss, backward, finiteness checks, gradient norm, clipping, optimizer.step and the
  // running statistics, then the dropout step advances. clip_norm > 0 scales every gradient by
  // min(1, clip_norm / (norm + 1e-6)) (torch.nn.utils.clip_grad_norm_); clip_value > 0 clamps
  // each to [-clip_value, clip_value] after that. Throws NonFiniteError (loss, gradients or batch
  // statistics not finite, or a non-finite norm with clip_norm > 0) and std::invalid_argument
  // (bad sizes or labels, from the optimiser) with parameters, optimiser state, running
  // statistics and dropout step unchanged.
  // x: (N, D)
  StepResult train_step(const T* x, const Targets<T>& targets, int64_t N, Optimizer<T>& optimizer,
                        double clip_norm, double clip_value);

  // ---- telemetry ----
  // Validates, then replaces the options; a new capacity keeps the newest records.
  void set_telemetry(const TelemetryOptions& options);
  TelemetryOptions telemetry_options() const;
  int64_t telemetry_size() const;  // records held
  void clear_telemetry();
  // Copies of the newest n = min(most, records) records, oldest first; returns n
  // (TelemetryBuffer::copy).
  // steps, clipped: (n)  scalars: (n, 3)  metrics: (n, L, M)  nonfinite: (n, L)
  int64_t copy_telemetry(int64_t* steps, double* scalars, uint8_t* clipped, double* metrics,
                         int64_t* nonfinite, int64_t most) const;
  // The training-step counter of the records: train_step calls that computed a step, whether it
  // was applied or failed with NonFiniteError.
  int64_t step_count() const;
  // The statistics train_step records, for one training-mode pass (batch statistics) without
  // dropout: update_ratio is NaN, grad_input_norm of layer 0 is computed (one more GEMM). Changes
  // no parameter, buffer, dropout step, step count or record (copy_gradients then returns this
  // pass's gradients, as after loss_and_gradients). Non-finite values are returned as they are.
  // metrics: (L, M)  nonfinite: (L)  x: (N, D)
  StepResult probe(double* metrics, int64_t* nonfinite, const T* x, const Targets<T>& targets,
                   int64_t N);

  // Inference-mode loss (and, for classification, how many predictions are right).
  // x: (N, D)
  Evaluation evaluate(const T* x, const Targets<T>& targets, int64_t N);

  // The dropout masks of the current step: 1 keeps, 0 drops, for element (n, j) of hidden layer
  // `layer` in a batch of N. Counter-based (Philox4x32-10): word (e mod 4) of block e / 4,
  // e = n O + j, of counter (e / 4, layer, step mod 2^32, step / 2^32) under key dropout_seed;
  // kept when the word >= floor(p 2^32).
  // mask: (N, O)
  void dropout_mask(uint8_t* mask, int64_t layer, int64_t N) const;
  uint64_t dropout_step() const { return dropout_step_; }
  void set_dropout_step(uint64_t step);

  // Private, for the benchmark: switches the step profile on or off and resets it. Off (the
  // default) it costs nothing measurable.
  void set_profiling(bool on);
  StepProfile profile() const;
  // Private, for the tests: how often the workspace (or the loss partials) was allocated.
  int64_t workspace_allocations() const;

 private:
  struct Layer;

  void require_batch(int64_t N, bool training) const;
  void require_targets(const Targets<T>& targets, int64_t N) const;
  void reserve(int64_t N);
  int threads_for_batch(int64_t N) const;
  void run_training(const T* x, const Targets<T>& targets, int64_t N, bool gradients);
  void training_forward(const T* x, int64_t N);
  void loss_forward(const Targets<T>& targets, int64_t N);
  void training_backward(const T* x, int64_t N);
  T* bias_partials(int64_t i);
  HiddenBackwardArgs<T> hidden_backward_args(int64_t i);
  void inference_chunk(T* logits, const T* x, int64_t rows);
  void check_finite(const Targets<T>& targets, int64_t N) const;
  double gradient_norm() const;
  void update_running_statistics(int64_t N);
  void refresh_inference_scales();
  // Telemetry: the statistics of the pass just run (param_norms: the optimiser's (2 P) squared
  // norms, or null: ||W|| is then summed here and update_ratio is NaN), and one record.
  // metrics: (L, M)  nonfinite: (L)
  void collect_statistics(double* metrics, int64_t* nonfinite, int64_t N,
                          const double* param_norms);
  void record_step(int64_t N, double loss, double lr, double grad_norm, bool clipped,
                   const double* param_norms);

  NetworkSpec spec_;
  std::vector<Layer> layers_;
  std::vector<TensorInfo> parameter_info_, buffer_info_;
  std::vector<T> params_, grads_, buffers_;  // params_ padded for network_small_gemm
  // For Optimizer::step: one entry per parameter tensor.
  std::vector<T*> param_ptrs_;
  std::vector<const T*> grad_ptrs_;
  std::vector<int64_t> param_sizes_;
  std::vector<ParamRole> param_roles_;
  std::vector<double> grad_sumsq_;  // (tensors, kMaxGemmBlocks): sums of squares of the gradients
  // Workspace: training buffers for `capacity_` rows, inference buffers for a fixed chunk.
  int64_t capacity_ = 0;
  std::vector<T> work_;
  std::vector<uint8_t> mask_work_;
  std::vector<double> loss_partials_;
  std::vector<T> inference_work_;
  std::vector<T> eval_grad_;
  std::vector<double> sum_partials_;  // (3, kMaxChunks, widest) BN and bias-gradient partials
  std::vector<T> bias_partials_;      // (kMaxChunks, widest)
  // Telemetry: the buffer, the step counter, whether the running pass sums statistics and uses
  // its dropout masks, and the pass's scratch (layer i's features at stats_offset in the
  // (chunks, sum of O) arrays).
  TelemetryBuffer telemetry_;
  int64_t step_count_ = 0;
  bool collect_stats_ = false;
  bool use_dropout_ = true;
  std::vector<double> tile_sums_;       // (L, kMaxTiles, kTileSums)
  std::vector<uint8_t> alive_;          // (kMaxChunks, sum of O)
  std::vector<double> unit_sums_;       // (kMaxChunks, sum of O)
  std::vector<int64_t> nonzero_rows_;   // (L, kMaxChunks)
  std::vector<double> grad_out_sumsq_;  // (L, kMaxGemmBlocks): of each hidden layer's grad_out
  std::vector<int64_t> grad_out_nonfinite_;  // (L, kMaxGemmBlocks): its non-finite entries
  std::vector<double> param_norms_;     // (2 P) from the optimiser
  std::vector<double> step_metrics_;    // (L, M)
  std::vector<int64_t> step_nonfinite_; // (L)
  bool inference_scales_valid_ = false;
  double loss_ = 0;
  uint64_t dropout_step_ = 0;
  bool profiling_ = false;
  StepProfile profile_;
  int64_t workspace_allocations_ = 0;
  mutable std::mutex mutex_;
};

}  // namespace gradwatch
