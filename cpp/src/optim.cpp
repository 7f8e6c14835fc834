// The optimiser: option checks, state allocation on the first step, the layout check, the
// per-step scalars (bias corrections, decayed rates, LARS trust ratios), the split of every
// tensor's chunks over one team, and dispatch of the kernels to the active SIMD level.
// Dims: E = elements of one tensor, P = tensors, K = chunks of kOptimChunk elements of one
// tensor, G = chunks of all tensors.
#define GW_ISA baseline
#include "gradwatch/optim.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "gradwatch/cpu_dispatch.hpp"
#include "gradwatch/threads.hpp"
#include "optim_kernels.hpp"

namespace gradwatch {

namespace baseline {
GRADWATCH_INSTANTIATE_OPTIM_KERNELS(float)
GRADWATCH_INSTANTIATE_OPTIM_KERNELS(double)
}  // namespace baseline

// The same kernels compiled for AVX2 and AVX-512 (cpp/src/simd/optim_*.cpp).
#define GRADWATCH_DECLARE_OPTIM_KERNELS(isa)                                                       \
  namespace isa {                                                                                  \
  template <typename T>                                                                            \
  void sgd(T* param, T* momentum_buffer, const T* grad, T lr, T momentum, T one_minus_dampening,   \
           T weight_decay, bool nesterov, bool first_step, T grad_scale, T clip_value, int64_t E,  \
           int64_t chunk_begin, int64_t chunk_end, double* norms);                                 \
  template <typename T>                                                                            \
  void adagrad(T* param, T* sum, const T* grad, T clr, T weight_decay, T eps, T grad_scale,        \
               T clip_value, int64_t E, int64_t chunk_begin, int64_t chunk_end, double* norms);    \
  template <typename T>                                                                            \
  void rmsprop(T* param, T* square_avg, T* momentum_buffer, T* grad_avg, const T* grad, T lr,      \
               T alpha, T one_minus_alpha, T eps, T weight_decay, T momentum, T grad_scale,        \
               T clip_value, int64_t E, int64_t chunk_begin, int64_t chunk_end, double* norms);    \
  template <typename T>                                                                            \
  void adam(T* param, T* exp_avg, T* exp_avg_sq, const T* grad, T step_size, T one_minus_beta1,    \
            T beta2, T one_minus_beta2, T bias_correction2_sqrt, T eps, T weight_decay,            \
            T param_factor, bool decoupled, T grad_scale, T clip_value, int64_t E,                 \
            int64_t chunk_begin, int64_t chunk_end, double* norms);                                \
  template <typename T>                                                                            \
  void lars_partial_norms(double* partials, const T* param, const T* grad, T grad_scale,           \
                          T clip_value, int64_t E, int64_t chunk_begin, int64_t chunk_end);        \
  template <typename T>                                                                            \
  void lars(T* param, T* momentum_buffer, const T* grad, T rate, T momentum, T weight_decay,       \
            T grad_scale, T clip_value, int64_t E, int64_t chunk_begin, int64_t chunk_end,         \
            double* norms);                                                                        \
  }
GRADWATCH_DECLARE_OPTIM_KERNELS(avx2)
GRADWATCH_DECLARE_OPTIM_KERNELS(avx512)
#undef GRADWATCH_DECLARE_OPTIM_KERNELS

namespace {

// The message is built only on failure: a step that passes its checks allocates nothing.
template <typename Message>
void require(bool condition, const Message& message) {
  if (!condition) throw std::invalid_argument(message());
}

std::string number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

// Negated comparisons so that NaN fails every check.
void require_nonnegative(double value, const char* name) {
  require(std::isfinite(value) && !(value < 0), [&] {
    return std::string(name) + " must be finite and >= 0, got " + number_text(value);
  });
}

void require_unit_interval(double value, const char* name) {
  require(value >= 0 && value < 1,
          [&] { return std::string(name) + " must be in [0, 1), got " + number_text(value); });
}

const char* role_name(ParamRole role) {
  switch (role) {
    case ParamRole::weight:
      return "weight";
    case ParamRole::bias:
      return "bias";
    case ParamRole::bn_gamma:
      return "bn_gamma";
    case ParamRole::bn_beta:
      return "bn_beta";
  }
  return "unknown";
}

bool valid_role(ParamRole role) {
  return role == ParamRole::weight || role == ParamRole::bias || role == ParamRole::bn_gamma ||
         role == ParamRole::bn_beta;
}

// Chunks of kOptimChunk elements in a tensor of E.
int64_t chunks_of(int64_t E) { return (E + baseline::kOptimChunk - 1) / baseline::kOptimChunk; }

// Which buffers the options need, as a number: equal numbers, equal buffer lists.
int buffer_signature(const OptimizerOptions& options) {
  const int kind = static_cast<int>(options.kind) << 4;
  switch (options.kind) {
    case OptimizerKind::sgd:
    case OptimizerKind::lars:
      return kind | (options.momentum != 0 ? 1 : 0);
    case OptimizerKind::rmsprop:
      return kind | (options.momentum > 0 ? 1 : 0) | (options.centered ? 2 : 0);
    default:
      return kind;
  }
}

// Buffers whose values are sums or averages of squares.
bool must_be_nonnegative(const std::string& buffer_name) {
  return buffer_name == "sum" || buffer_name == "square_avg" || buffer_name == "exp_avg_sq";
}

}  // namespace

void validate_optimizer_options(const OptimizerOptions& options) {
  const OptimizerKind kind = options.kind;
  require(kind == OptimizerKind::sgd || kind == OptimizerKind::adagrad ||
              kind == OptimizerKind::rmsprop || kind == OptimizerKind::adam ||
              kind == OptimizerKind::adamw || kind == OptimizerKind::lars,
          [&] { return "kind must be one of sgd, adagrad, rmsprop, adam, adamw, lars"; });
  require_nonnegative(options.lr, "lr");
  require_nonnegative(options.weight_decay, "weight_decay");
  require(options.eps > 0 && std::isfinite(options.eps),
          [&] { return "eps must be finite and > 0, got " + number_text(options.eps); });
  switch (kind) {
    case OptimizerKind::sgd:
      require_unit_interval(options.momentum, "momentum");
      require(options.dampening >= 0 && options.dampening <= 1,
              [&] { return "dampening must be in [0, 1], got " + number_text(options.dampening); });
      require(!options.nesterov || (options.momentum > 0 && options.dampening == 0),
              [&] { return "nesterov needs momentum > 0 and dampening = 0"; });
      break;
    case OptimizerKind::adagrad:
      require_nonnegative(options.lr_decay, "lr_decay");
      require_nonnegative(options.initial_accumulator_value, "initial_accumulator_value");
      break;
    case OptimizerKind::rmsprop:
      require_unit_interval(options.alpha, "alpha");
      require_unit_interval(options.momentum, "momentum");
      break;
    case OptimizerKind::adam:
    case OptimizerKind::adamw:
      require_unit_interval(options.beta1, "beta1");
      require_unit_interval(options.beta2, "beta2");
      break;
    case OptimizerKind::lars:
      require_unit_interval(options.momentum, "momentum");
      require_nonnegative(options.trust_coefficient, "trust_coefficient");
      require(options.lars_mode == LarsMode::scale || options.lars_mode == LarsMode::clip,
              [&] { return "lars_mode must be scale or clip"; });
      break;
  }
}

std::vector<std::string> optimizer_buffer_names(const OptimizerOptions& options) {
  switch (options.kind) {
    case OptimizerKind::sgd:
    case OptimizerKind::lars:
      if (options.momentum != 0) return {"momentum_buffer"};
      return {};
    case OptimizerKind::adagrad:
      return {"sum"};
    case OptimizerKind::rmsprop: {
      std::vector<std::string> names{"square_avg"};
      if (options.momentum > 0) names.push_back("momentum_buffer");
      if (options.centered) names.push_back("grad_avg");
      return names;
    }
    case OptimizerKind::adam:
    case OptimizerKind::adamw:
      return {"exp_avg", "exp_avg_sq"};
  }
  return {};
}

bool lars_adapts(const OptimizerOptions& options, ParamRole role) {
  return role == ParamRole::weight || !options.lars_exclude_bias_and_bn;
}

template <typename T>
Optimizer<T>::Optimizer(const OptimizerOptions& options) : options_(options) {
  validate_optimizer_options(options_);
}

template <typename T>
const T* Optimizer<T>::buffer(int64_t buffer, int64_t tensor) const {
  require(buffer >= 0 && buffer < static_cast<int64_t>(buffer_names_.size()),
          [&] { return "buffer index " + std::to_string(buffer) + " out of range"; });
  require(tensor >= 0 && tensor < tensor_count(),
          [&] { return "tensor index " + std::to_string(tensor) + " out of range"; });
  return buffers_[static_cast<size_t>(buffer)].data() + offsets_[static_cast<size_t>(tensor)];
}

// Checks everything the layout of one step or one loaded state must satisfy on its own.
static void require_valid_layout(const int64_t* sizes, const ParamRole* roles, int64_t count) {
  require(count >= 1, [&] { return "count (tensors) must be >= 1, got " + std::to_string(count); });
  for (int64_t p = 0; p < count; ++p) {
    require(sizes[p] >= 1, [&] {
      return "tensor " + std::to_string(p) + " must have >= 1 elements, got " +
             std::to_string(sizes[p]);
    });
    require(valid_role(roles[p]),
            [&] { return "tensor " + std::to_string(p) + " has an invalid role"; });
  }
}

template <typename T>
void Optimizer<T>::require_layout(const int64_t* sizes, const ParamRole* roles,
                                  int64_t count) const {
  const char* context = "the parameter layout differs from the optimiser's state";
  require(count == tensor_count(), [&] {
    return std::string(context) + ": expected " + std::to_string(tensor_count()) +
           " tensors, got " + std::to_string(count);
  });
  for (int64_t p = 0; p < count; ++p) {
    const size_t index = static_cast<size_t>(p);
    require(sizes[p] == sizes_[index], [&] {
      return std::string(context) + ": tensor " + std::to_string(p) + " has " +
             std::to_string(sizes[p]) + " elements, expected " + std::to_string(sizes_[index]);
    });
    require(roles[p] == roles_[index], [&] {
      return std::string(context) + ": tensor " + std::to_string(p) + " has role " +
             role_name(roles[p]) + ", expected " + role_name(roles_[index]);
    });
  }
}

template <typename T>
void Optimizer<T>::allocate(const int64_t* sizes, const ParamRole* roles, int64_t count) {
  std::vector<int64_t> new_sizes(sizes, sizes + count);
  std::vector<ParamRole> new_roles(roles, roles + count);
  std::vector<int64_t> offsets, chunk_offsets{0}, chunk_starts;
  int64_t total = 0;
  for (int64_t p = 0; p < count; ++p) {
    offsets.push_back(total);
    for (int64_t k = 0; k < chunks_of(sizes[p]); ++k) {
      chunk_starts.push_back(total + k * baseline::kOptimChunk);
    }
    chunk_offsets.push_back(static_cast<int64_t>(chunk_starts.size()));
    total += sizes[p];
  }
  const int64_t chunks = chunk_offsets.back();
  chunk_starts.push_back(total);
  std::vector<std::string> names = optimizer_buffer_names(options_);
  std::array<std::vector<T>, kMaxBuffers> buffers;
  for (size_t b = 0; b < names.size(); ++b) {
    const T initial =
        names[b] == "sum" ? static_cast<T>(options_.initial_accumulator_value) : static_cast<T>(0);
    buffers[b].assign(static_cast<size_t>(total), initial);
  }
  std::vector<double> norm_partials(static_cast<size_t>(2 * chunks));
  std::vector<double> lars_partials;
  if (options_.kind == OptimizerKind::lars) lars_partials.resize(static_cast<size_t>(2 * chunks));
  // Nothing below throws.
  sizes_ = std::move(new_sizes);
  roles_ = std::move(new_roles);
  offsets_ = std::move(offsets);
  chunk_offsets_ = std::move(chunk_offsets);
  chunk_starts_ = std::move(chunk_starts);
  lars_partials_ = std::move(lars_partials);
  buffer_names_ = std::move(names);
  buffers_ = std::move(buffers);
  norm_partials_ = std::move(norm_partials);
  buffer_signature_ = buffer_signature(options_);
}

template <typename T>
void Optimizer<T>::step(T* const* params, const T* const* grads, const int64_t* sizes,
                        const ParamRole* roles, int64_t count, T grad_scale, T clip_value,
                        double* norms, int max_threads) {
  validate_optimizer_options(options_);
  require(std::isfinite(grad_scale) && grad_scale >= 0,
          [&] { return "grad_scale must be finite and >= 0, got " + number_text(grad_scale); });
  require(!std::isnan(clip_value),
          [&] { return "clip_value must not be NaN (<= 0 means no clipping)"; });
  require_valid_layout(sizes, roles, count);
  for (int64_t p = 0; p < count; ++p) {
    require(params[p] != nullptr && grads[p] != nullptr, [&] {
      return "tensor " + std::to_string(p) + " has a null parameter or gradient pointer";
    });
  }
  if (step_count_ == 0) {
    allocate(sizes, roles, count);
  } else {
    require_layout(sizes, roles, count);
    require(buffer_signature(options_) == buffer_signature_, [&] {
      return "the options no longer match the optimiser's state buffers (kind, momentum on/off or "
             "centered changed after the first step); create a new optimiser or load a state";
    });
  }
  // One team for every tensor: thread t takes the chunks that start in its share of the elements
  // (tensor by tensor, in order); with LARS, after every adapted tensor's chunk norms.
  const int64_t total = chunk_starts_.back(), chunks = chunk_offsets_.back();
  const bool lars = options_.kind == OptimizerKind::lars;
  const auto run = [&](int64_t thread, int64_t threads) {
    // The first chunk that starts at or after thread t's share; G for t = threads.
    const auto first_chunk = [&](int64_t t) {
      const auto share_start = std::lower_bound(chunk_starts_.begin(), chunk_starts_.end() - 1,
                                                t * total / threads);
      return static_cast<int64_t>(share_start - chunk_starts_.begin());
    };
    const int64_t lo = first_chunk(thread), hi = first_chunk(thread + 1);
    const auto for_my_chunks = [&](const auto& body) {
      for (int64_t p = 0; p < count; ++p) {
        const int64_t g0 = chunk_offsets_[static_cast<size_t>(p)];
        const int64_t k0 = std::max(lo, g0) - g0;
        const int64_t k1 = std::min(hi, chunk_offsets_[static_cast<size_t>(p) + 1]) - g0;
        if (k0 < k1) body(p, k0, k1);
      }
    };
    if (lars) {
      for_my_chunks([&](int64_t p, int64_t k0, int64_t k1) {
        if (!lars_adapts(options_, roles_[static_cast<size_t>(p)])) return;
        GRADWATCH_DISPATCH(lars_partial_norms,
                           lars_partials_.data() + 2 * chunk_offsets_[static_cast<size_t>(p)],
                           params[p], grads[p], grad_scale, clip_value, sizes[p], k0, k1);
      });
      if (threads > 1) {
#pragma omp barrier
      }
    }
    for_my_chunks([&](int64_t p, int64_t k0, int64_t k1) {
      update_chunks(p, params[p], grads[p], grad_scale, clip_value, k0, k1, norms != nullptr);
    });
  };
  int threads = static_cast<int>(std::min<int64_t>(threads_for(total), chunks));
  if (max_threads > 0) threads = std::min(threads, max_threads);
  if (threads <= 1) {
    run(0, 1);
  } else {
#pragma omp parallel num_threads(threads)
    run(omp_get_thread_num(), omp_get_num_threads());
  }
  if (norms != nullptr) {
    for (int64_t p = 0; p < count; ++p) {
      if (roles_[static_cast<size_t>(p)] != ParamRole::weight) {
        norms[2 * p] = norms[2 * p + 1] = std::numeric_limits<double>::quiet_NaN();
        continue;
      }
      norms[2 * p] = norms[2 * p + 1] = 0.0;
      for (int64_t g = chunk_offsets_[static_cast<size_t>(p)];
           g < chunk_offsets_[static_cast<size_t>(p) + 1]; ++g) {  // index order, any threads
        norms[2 * p] += norm_partials_[static_cast<size_t>(2 * g)];
        norms[2 * p + 1] += norm_partials_[static_cast<size_t>(2 * g + 1)];
      }
    }
  }
  ++step_count_;
}

template <typename T>
void Optimizer<T>::update_chunks(int64_t p, T* param, const T* grad, T grad_scale, T clip_value,
                                 int64_t k0, int64_t k1, bool want_norms) {
  const size_t index = static_cast<size_t>(p);
  const int64_t E = sizes_[index];
  const int64_t first = chunk_offsets_[index];
  double* chunk_norms = want_norms && roles_[index] == ParamRole::weight
                            ? norm_partials_.data() + 2 * first
                            : nullptr;
  const OptimizerOptions& o = options_;
  auto state = [&](size_t b) { return buffers_[b].data() + offsets_[index]; };
  const double t = static_cast<double>(step_count_ + 1);  // this step, from 1 (PyTorch's)
  const T lr = static_cast<T>(o.lr), weight_decay = static_cast<T>(o.weight_decay);
  const T eps = static_cast<T>(o.eps), momentum = static_cast<T>(o.momentum);
  switch (o.kind) {
    case OptimizerKind::sgd: {
      T* momentum_buffer = o.momentum != 0 ? state(0) : nullptr;
      GRADWATCH_DISPATCH(sgd, param, momentum_buffer, grad, lr, momentum,
                         static_cast<T>(1.0 - o.dampening), weight_decay, o.nesterov,
                         step_count_ == 0, grad_scale, clip_value, E, k0, k1, chunk_norms);
      break;
    }
    case OptimizerKind::adagrad: {
      const T clr = static_cast<T>(o.lr / (1.0 + (t - 1.0) * o.lr_decay));
      GRADWATCH_DISPATCH(adagrad, param, state(0), grad, clr, weight_decay, eps, grad_scale,
                         clip_value, E, k0, k1, chunk_norms);
      break;
    }
    case OptimizerKind::rmsprop: {
      size_t next = 1;
      T* momentum_buffer = o.momentum > 0 ? state(next++) : nullptr;
      T* grad_avg = o.centered ? state(next) : nullptr;
      GRADWATCH_DISPATCH(rmsprop, param, state(0), momentum_buffer, grad_avg, grad, lr,
                         static_cast<T>(o.alpha), static_cast<T>(1.0 - o.alpha), eps, weight_decay,
                         momentum, grad_scale, clip_value, E, k0, k1, chunk_norms);
      break;
    }
    case OptimizerKind::adam:
    case OptimizerKind::adamw: {
      const bool decoupled = o.kind == OptimizerKind::adamw && o.weight_decay != 0;
      const T coupled_decay = o.kind == OptimizerKind::adam ? weight_decay : static_cast<T>(0);
      const T step_size = static_cast<T>(o.lr / (1.0 - std::pow(o.beta1, t)));
      const T bias_correction2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(o.beta2, t)));
      GRADWATCH_DISPATCH(adam, param, state(0), state(1), grad, step_size,
                         static_cast<T>(1.0 - o.beta1), static_cast<T>(o.beta2),
                         static_cast<T>(1.0 - o.beta2), bias_correction2_sqrt, eps, coupled_decay,
                         static_cast<T>(1.0 - o.lr * o.weight_decay), decoupled, grad_scale,
                         clip_value, E, k0, k1, chunk_norms);
      break;
    }
    case OptimizerKind::lars: {
      T* momentum_buffer = o.momentum != 0 ? state(0) : nullptr;
      double rate = o.lr;
      T decay = 0;
      if (lars_adapts(o, roles_[index])) {
        decay = weight_decay;
        double param_squares = 0.0, grad_squares = 0.0;
        for (int64_t g = first; g < chunk_offsets_[index + 1]; ++g) {  // index order, any threads
          param_squares += lars_partials_[static_cast<size_t>(2 * g)];
          grad_squares += lars_partials_[static_cast<size_t>(2 * g + 1)];
        }
        const double param_norm = std::sqrt(param_squares), grad_norm = std::sqrt(grad_squares);
        // A zero norm keeps the global rate; NaN falls through to a NaN rate.
        if (!(param_norm == 0 || grad_norm == 0)) {
          const double local_lr =
              o.trust_coefficient * param_norm / (grad_norm + o.weight_decay * param_norm);
          rate = o.lars_mode == LarsMode::scale ? o.lr * local_lr
                                                : (local_lr > o.lr ? o.lr : local_lr);
        }
      }
      GRADWATCH_DISPATCH(lars, param, momentum_buffer, grad, static_cast<T>(rate), momentum, decay,
                         grad_scale, clip_value, E, k0, k1, chunk_norms);
      break;
    }
  }
}

template <typename T>
void Optimizer<T>::load_state(const OptimizerOptions& options, int64_t step_count,
                              const int64_t* sizes, const ParamRole* roles, int64_t count,
                              const T* const* buffers) {
  validate_optimizer_options(options);
  require(step_count >= 0,
          [&] { return "step_count must be >= 0, got " + std::to_string(step_count); });
  if (step_count == 0) {
    require(count == 0,
            [&] { return "a state at step 0 has no tensors, got " + std::to_string(count); });
    options_ = options;
    step_count_ = 0;
    sizes_.clear();
    roles_.clear();
    offsets_.clear();
    buffer_names_.clear();
    for (auto& values : buffers_) values.clear();
    chunk_offsets_.clear();
    chunk_starts_.clear();
    norm_partials_.clear();
    lars_partials_.clear();
    buffer_signature_ = 0;
    return;
  }
  require_valid_layout(sizes, roles, count);
  if (step_count_ > 0) require_layout(sizes, roles, count);
  const std::vector<std::string> names = optimizer_buffer_names(options);
  for (size_t b = 0; b < names.size(); ++b) {
    for (int64_t p = 0; p < count; ++p) {
      const T* values = buffers[static_cast<int64_t>(b) * count + p];
      const std::string what = "state buffer " + names[b] + " of tensor " + std::to_string(p);
      require(values != nullptr, [&] { return what + " is missing"; });
      const bool nonnegative = must_be_nonnegative(names[b]);
      for (int64_t i = 0; i < sizes[p]; ++i) {
        require(std::isfinite(values[i]), [&] { return what + " contains a non-finite value"; });
        require(!nonnegative || values[i] >= 0,
                [&] { return what + " contains a negative value"; });
      }
    }
  }
  // Build the new state aside, then commit it with operations that do not throw.
  Optimizer<T> loaded(options);
  loaded.allocate(sizes, roles, count);
  for (size_t b = 0; b < names.size(); ++b) {
    for (int64_t p = 0; p < count; ++p) {
      const T* values = buffers[static_cast<int64_t>(b) * count + p];
      T* target = loaded.buffers_[b].data() + loaded.offsets_[static_cast<size_t>(p)];
      std::copy(values, values + sizes[p], target);
    }
  }
  loaded.step_count_ = step_count;
  *this = std::move(loaded);
}

template class Optimizer<float>;
template class Optimizer<double>;

}  // namespace gradwatch
