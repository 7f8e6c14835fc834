// Optimisers: one fused pass per tensor over parameter, gradient and state.
// Dims: E = elements of one tensor (flattened), P = tensors (count), K = chunks of 8192 elements
// of one tensor, G = chunks of all tensors.
//
// The update rules are PyTorch's (torch/optim/sgd.py, adagrad.py, rmsprop.py, adam.py, adamw.py)
// and LARS (You, Gitman & Ginsburg 2017, Alg. 1) with NVIDIA's LARC clipping as an option. Each
// gradient is first scaled by grad_scale (clipping by norm) and clamped to [-clip_value,
// clip_value] (clipping by value), fused into the update pass: grads are never written.
// Arithmetic is in T (as PyTorch on the CPU); the LARS norms are sums of squares in double over
// fixed chunks of 8192 elements added in index order, so the update has the same bits on any
// number of threads.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace gradwatch {

enum class OptimizerKind { sgd, adagrad, rmsprop, adam, adamw, lars };
enum class LarsMode { scale, clip };
enum class ParamRole { weight, bias, bn_gamma, bn_beta };

struct OptimizerOptions {  // every field has PyTorch's default
  OptimizerKind kind = OptimizerKind::sgd;
  double lr = 0.01, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam / adamw (eps 1e-10 adagrad, 1e-8 rmsprop)
  double alpha = 0.99;                            // rmsprop
  bool centered = false;                          // rmsprop
  double lr_decay = 0, initial_accumulator_value = 0;  // adagrad
  double trust_coefficient = 0.001;
  LarsMode lars_mode = LarsMode::scale;
  bool lars_exclude_bias_and_bn = true;  // excluded: plain momentum SGD, no weight decay
};

// Throws std::invalid_argument naming the first invalid field: lr, weight_decay, dampening,
// lr_decay, initial_accumulator_value, trust_coefficient < 0; momentum, beta1, beta2, alpha
// outside [0, 1); dampening outside [0, 1]; eps <= 0; nesterov without momentum or with
// dampening; any NaN or infinity. Only the fields the kind uses are checked (and lr, weight_decay,
// eps).
void validate_optimizer_options(const OptimizerOptions& options);

// The state buffers these options keep per tensor, in order:
// sgd, lars: momentum_buffer (momentum != 0); adagrad: sum; rmsprop: square_avg, then
// momentum_buffer (momentum > 0), then grad_avg (centered); adam, adamw: exp_avg, exp_avg_sq.
std::vector<std::string> optimizer_buffer_names(const OptimizerOptions& options);

// Does LARS adapt the rate of (and decay) a tensor of this role under these options?
bool lars_adapts(const OptimizerOptions& options, ParamRole role);

template <typename T>
class Optimizer {
 public:
  explicit Optimizer(const OptimizerOptions& options);  // validates the options

  OptimizerOptions& options() { return options_; }  // the schedule changes options().lr
  const OptimizerOptions& options() const { return options_; }

  // One update of `count` tensors. grads are read only; each gradient is first scaled by
  // grad_scale (clipping by norm, 1 = none) and clamped to [-clip_value, clip_value] when
  // clip_value > 0, fused into the update pass. The first call allocates the state for these sizes
  // and roles; later calls must pass the same layout (else std::invalid_argument, nothing changed).
  // Also throws std::invalid_argument, changing nothing, for invalid options() (e.g. a negative
  // lr set between steps, or momentum switched on after the state was allocated without it), a
  // grad_scale that is negative or not finite, a NaN clip_value, count < 1, a size < 1 or a null
  // pointer.
  // With norms non-null (telemetry), for each tensor p of role weight: norms[2p] =
  // ||params[p]||^2 before the update and norms[2p + 1] = ||params[p] after - before||^2, summed
  // in the update pass over fixed chunks (the same bits on any number of threads); the other
  // roles, whose norms telemetry does not report, get NaN (their update skips the work).
  // At most max_threads threads (0: the thread budget) share the chunks: a network whose step ran
  // on one thread passes 1, since waking a sleeping thread costs more than its small update.
  // params[p], grads[p]: (sizes[p])  sizes, roles: (P) = count  norms: (2 P)
  void step(T* const* params, const T* const* grads, const int64_t* sizes, const ParamRole* roles,
            int64_t count, T grad_scale, T clip_value, double* norms = nullptr,
            int max_threads = 0);

  int64_t step_count() const { return step_count_; }

  // State for state_dict()/load_state_dict(). Before the first step there is no state:
  // tensor_count() is 0 and buffer_names() is empty.
  int64_t tensor_count() const { return static_cast<int64_t>(sizes_.size()); }
  const std::vector<int64_t>& sizes() const { return sizes_; }
  const std::vector<ParamRole>& roles() const { return roles_; }
  const std::vector<std::string>& buffer_names() const { return buffer_names_; }
  // Buffer `buffer` (index into buffer_names()) of tensor `tensor`: sizes()[tensor] values.
  const T* buffer(int64_t buffer, int64_t tensor) const;

  // Replaces the options, step count and state at once, after checking all of them (strong
  // guarantee: nothing changes when it throws std::invalid_argument).
  // step_count 0 means no state (count must be 0); step_count > 0 needs count >= 1 tensors and
  // one pointer per buffer of optimizer_buffer_names(options) and tensor, buffer-major:
  // buffers[b * count + p] holds sizes[p] values. When this optimiser already has state, the
  // loaded layout (sizes and roles) must equal it (the network's parameters do not change).
  // Adagrad's sum and RMSProp's square_avg must be >= 0 and every value finite.
  void load_state(const OptimizerOptions& options, int64_t step_count, const int64_t* sizes,
                  const ParamRole* roles, int64_t count, const T* const* buffers);

 private:
  static constexpr int kMaxBuffers = 3;

  void allocate(const int64_t* sizes, const ParamRole* roles, int64_t count);
  void require_layout(const int64_t* sizes, const ParamRole* roles, int64_t count) const;
  // Chunks [k0, k1) of tensor p, on the calling thread; want_norms: telemetry's chunk norms of
  // a weight into norm_partials_.
  void update_chunks(int64_t p, T* param, const T* grad, T grad_scale, T clip_value, int64_t k0,
                     int64_t k1, bool want_norms);

  OptimizerOptions options_;
  int64_t step_count_ = 0;
  std::vector<int64_t> sizes_;
  std::vector<ParamRole> roles_;
  std::vector<int64_t> offsets_;  // (P) start of tensor p in each buffer
  std::vector<std::string> buffer_names_;
  std::array<std::vector<T>, kMaxBuffers> buffers_;  // (sum of sizes) each, in buffer_names_ order
  std::vector<int64_t> chunk_offsets_;  // (P + 1) first chunk of tensor p among all G chunks
  std::vector<int64_t> chunk_starts_;   // (G + 1) first element of each chunk, then the total
  std::vector<double> norm_partials_;   // (2 G) telemetry's chunk norms of the weights
  std::vector<double> lars_partials_;   // (2 G) LARS's chunk norms (LARS only)
  int buffer_signature_ = 0;  // which buffers the options that allocated them need
};

}  // namespace gradwatch
