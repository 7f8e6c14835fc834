// The telemetry ring buffer (gradwatch/telemetry.hpp). The statistics themselves are computed
// in the network's passes (network.cpp, telemetry_kernels.hpp).
// Dims: L = layers, M = kLayerMetrics, S = capacity, n = records.
#include "gradwatch/telemetry.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace gradwatch {

const char* layer_metric_name(LayerMetric metric) {
  switch (metric) {
    case LayerMetric::grad_weight_norm: return "grad_weight_norm";
    case LayerMetric::grad_bias_norm: return "grad_bias_norm";
    case LayerMetric::weight_norm: return "weight_norm";
    case LayerMetric::update_ratio: return "update_ratio";
    case LayerMetric::grad_output_norm: return "grad_output_norm";
    case LayerMetric::grad_input_norm: return "grad_input_norm";
    case LayerMetric::preact_mean: return "preact_mean";
    case LayerMetric::preact_std: return "preact_std";
    case LayerMetric::act_mean: return "act_mean";
    case LayerMetric::act_std: return "act_std";
    case LayerMetric::saturated_fraction: return "saturated_fraction";
    case LayerMetric::dead_fraction: return "dead_fraction";
    case LayerMetric::activation_cosine: return "activation_cosine";
  }
  return "unknown";
}

// A capacity this large would be gigabytes per layer: surely a mistake.
constexpr int64_t kMaxCapacity = int64_t(1) << 31;

void validate_telemetry_options(const TelemetryOptions& options) {
  if (options.every < 1) {
    throw std::invalid_argument("telemetry every must be >= 1, got " +
                                std::to_string(options.every));
  }
  if (options.capacity < 1 || options.capacity > kMaxCapacity) {
    throw std::invalid_argument("telemetry capacity must be in [1, 2^31], got " +
                                std::to_string(options.capacity));
  }
}

TelemetryBuffer::TelemetryBuffer(int64_t layers, const TelemetryOptions& options)
    : layers_(layers), options_(options) {
  validate_telemetry_options(options);
  allocate(options.capacity);
}

void TelemetryBuffer::allocate(int64_t capacity) {
  const size_t S = static_cast<size_t>(capacity);
  const size_t L = static_cast<size_t>(layers_);
  steps_.reset(new int64_t[S]);
  clipped_.reset(new uint8_t[S]);
  scalars_.reset(new double[3 * S]);
  metrics_.reset(new double[S * L * kLayerMetrics]);
  nonfinite_.reset(new int64_t[S * L]);
}

void TelemetryBuffer::configure(const TelemetryOptions& options) {
  validate_telemetry_options(options);
  if (options.capacity != options_.capacity) {
    TelemetryBuffer resized(layers_, options);
    const int64_t kept = std::min(size_, options.capacity);
    const int64_t M = kLayerMetrics;
    for (int64_t k = size_ - kept; k < size_; ++k) {
      const int64_t slot = (head_ + k) % options_.capacity;
      const StepRecord record{steps_[slot], scalars_[3 * slot], scalars_[3 * slot + 1],
                              scalars_[3 * slot + 2], clipped_[slot] != 0};
      resized.push(record, metrics_.get() + slot * layers_ * M, nonfinite_.get() + slot * layers_);
    }
    steps_ = std::move(resized.steps_);
    clipped_ = std::move(resized.clipped_);
    scalars_ = std::move(resized.scalars_);
    metrics_ = std::move(resized.metrics_);
    nonfinite_ = std::move(resized.nonfinite_);
    head_ = resized.head_;
    size_ = resized.size_;
  }
  options_ = options;
}

void TelemetryBuffer::push(const StepRecord& record, const double* metrics,
                           const int64_t* nonfinite) {
  const int64_t S = options_.capacity;
  const int64_t slot = (head_ + size_) % S;
  if (size_ == S) {
    head_ = (head_ + 1) % S;
  } else {
    ++size_;
  }
  steps_[slot] = record.step;
  clipped_[slot] = record.clipped ? 1 : 0;
  scalars_[3 * slot] = record.loss;
  scalars_[3 * slot + 1] = record.lr;
  scalars_[3 * slot + 2] = record.grad_norm;
  std::copy(metrics, metrics + layers_ * kLayerMetrics, metrics_.get() + slot * layers_ * kLayerMetrics);
  std::copy(nonfinite, nonfinite + layers_, nonfinite_.get() + slot * layers_);
}

int64_t TelemetryBuffer::copy(int64_t* steps, double* scalars, uint8_t* clipped, double* metrics,
                              int64_t* nonfinite, int64_t most) const {
  const int64_t per_step = layers_ * kLayerMetrics;
  const int64_t n = std::min(most, size_);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t slot = (head_ + size_ - n + k) % options_.capacity;
    steps[k] = steps_[slot];
    clipped[k] = clipped_[slot];
    std::copy(scalars_.get() + 3 * slot, scalars_.get() + 3 * slot + 3, scalars + 3 * k);
    std::copy(metrics_.get() + slot * per_step, metrics_.get() + (slot + 1) * per_step,
              metrics + k * per_step);
    std::copy(nonfinite_.get() + slot * layers_, nonfinite_.get() + (slot + 1) * layers_,
              nonfinite + k * layers_);
  }
  return n;
}

}  // namespace gradwatch
