// Telemetry of gradwatch::Network: per-layer statistics of training steps, kept in a ring buffer
// that the network owns and allocates in advance (recording a step allocates nothing).
// Dims: L = dense layers (the output layer is L - 1), M = kLayerMetrics, S = capacity (steps kept),
// n = steps recorded (n <= S).
//
// The statistics of one step are computed inside the step's own passes (network.cpp,
// telemetry_kernels.hpp): activation sums in the activation pass, gradient norms from the sums
// of squares the clipping needs, ||W|| and ||W_after - W_before|| in the optimiser's update pass.
// Every sum runs in an order fixed by the shapes alone: the same bits on any number of threads.
#pragma once

#include <cstdint>
#include <memory>

namespace gradwatch {

// The per-layer metrics, in storage order (python/gradwatch/telemetry.py names them alike).
enum class LayerMetric : int {
  grad_weight_norm,    // ||dL/dW||, before clipping
  grad_bias_norm,      // ||dL/db||
  weight_norm,         // ||W|| (Frobenius) before this step's update
  update_ratio,        // ||W_after - W_before|| / ||W_before||; NaN without an update
  grad_output_norm,    // ||dL/d(out)||: out after activation, dropout, residual; logits last
  grad_input_norm,     // ||dL/d(x)||: the layer's input (layer 0: the network input)
  preact_mean,         // over the N O entries the activation takes (after batch norm); logits
  preact_std,          // population std (divided by N O)
  act_mean,            // over the N O entries of the activation's output; NaN for logits
  act_std,
  saturated_fraction,  // sigmoid: a outside [0.01, 0.99]; tanh: |a| > 0.99; else NaN
  dead_fraction,       // relu, leaky_relu: units with pre-activation <= 0 on every row; else NaN
  activation_cosine,   // mean pairwise cosine of the nonzero activation rows (logits last)
};
constexpr int kLayerMetrics = 13;

// Name of a metric ("grad_weight_norm", ...).
const char* layer_metric_name(LayerMetric metric);

struct TelemetryOptions {
  bool enabled = true;
  int64_t every = 1;          // record steps whose counter is a multiple of every (>= 1)
  int64_t capacity = 10000;   // steps kept (>= 1); when full the oldest is dropped
};

// Throws std::invalid_argument naming the field: every < 1, capacity < 1 or > 2^31.
void validate_telemetry_options(const TelemetryOptions& options);

// The per-step scalars of one record.
struct StepRecord {
  int64_t step;      // the network's training-step counter (0-based) at the step
  double loss;
  double lr;         // the optimiser's learning rate at the step
  double grad_norm;  // global, before clipping
  bool clipped;      // clipping changed the gradients
};

class TelemetryBuffer {
 public:
  // Allocates `options.capacity` records of `layers` layers (validated).
  TelemetryBuffer(int64_t layers, const TelemetryOptions& options);

  const TelemetryOptions& options() const { return options_; }
  // New options; a new capacity reallocates, keeping the newest min(size, capacity) records.
  // Validates first: nothing changes when it throws.
  void configure(const TelemetryOptions& options);
  int64_t layers() const { return layers_; }
  int64_t size() const { return size_; }
  // Whether the step with this counter is recorded.
  bool due(int64_t step) const { return options_.enabled && step % options_.every == 0; }
  // Appends a record, dropping the oldest when full.
  // metrics: (L, M)  nonfinite: (L)
  void push(const StepRecord& record, const double* metrics, const int64_t* nonfinite);
  void clear() { head_ = size_ = 0; }
  // Copies of the newest n = min(most, size()) records, oldest first; returns n.
  // steps, clipped: (n)  scalars: (n, 3) loss, lr, grad_norm  metrics: (n, L, M)  nonfinite: (n, L)
  int64_t copy(int64_t* steps, double* scalars, uint8_t* clipped, double* metrics,
               int64_t* nonfinite, int64_t most) const;

 private:
  void allocate(int64_t capacity);

  int64_t layers_;
  TelemetryOptions options_;
  int64_t head_ = 0;  // slot of the oldest record
  int64_t size_ = 0;
  // (S) each, (S, 3), (S, L, M), (S, L): left uninitialised until written.
  std::unique_ptr<int64_t[]> steps_;
  std::unique_ptr<uint8_t[]> clipped_;
  std::unique_ptr<double[]> scalars_;
  std::unique_ptr<double[]> metrics_;
  std::unique_ptr<int64_t[]> nonfinite_;
};

}  // namespace gradwatch
