// Public loss and softmax functions: argument checks, dispatch to the kernels of the active SIMD
// level, and the fixed-order sum of the per-row / per-chunk partial losses.
// Dims: N = batch (rows), C = classes (row length), E = elements, K = chunks.
#define GW_ISA baseline
#include "gradwatch/loss.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "gradwatch/cpu_dispatch.hpp"
#include "loss_kernels.hpp"

namespace gradwatch {

namespace baseline {
GRADWATCH_INSTANTIATE_LOSS_KERNELS(float)
GRADWATCH_INSTANTIATE_LOSS_KERNELS(double)
}  // namespace baseline

// The same kernels compiled for AVX2 and AVX-512 (cpp/src/simd/loss_*.cpp).
#define GRADWATCH_DECLARE_LOSS_KERNELS(isa)                                                      \
  namespace isa {                                                                                \
  template <typename T>                                                                          \
  void softmax(T* y, const T* x, int64_t N, int64_t C);                                          \
  template <typename T>                                                                          \
  void log_softmax(T* y, const T* x, int64_t N, int64_t C);                                      \
  template <typename T>                                                                          \
  void softmax_cross_entropy_indices(T* dlogits, double* row_loss, const T* logits,             \
                                     const int64_t* labels, int64_t N, int64_t C);               \
  template <typename T>                                                                          \
  void softmax_cross_entropy_probs(T* dlogits, double* row_loss, const T* logits, const T* probs, \
                                   int64_t N, int64_t C);                                        \
  template <typename T>                                                                          \
  void binary_cross_entropy_with_logits(T* dx, double* partials, const T* x, const T* targets,   \
                                        int64_t E);                                              \
  template <typename T>                                                                          \
  void mse(T* dpred, double* partials, const T* pred, const T* target, int64_t E);               \
  }
GRADWATCH_DECLARE_LOSS_KERNELS(avx2)
GRADWATCH_DECLARE_LOSS_KERNELS(avx512)
#undef GRADWATCH_DECLARE_LOSS_KERNELS

static void require_positive(int64_t value, const char* what) {
  if (value < 1) {
    throw std::invalid_argument(std::string(what) + " must be >= 1, got " + std::to_string(value));
  }
}

// Index order, whatever the thread count that produced the partials.
static double sum_in_order(const std::vector<double>& partials) {
  double total = 0.0;
  for (double partial : partials) total += partial;
  return total;
}

// A NaN target always makes the partial of its row or chunk NaN, so only those are searched.
template <typename T>
static void require_no_nan(const std::vector<double>& partials, const T* target, int64_t span,
                           int64_t size, const char* message) {
  for (size_t k = 0; k < partials.size(); ++k) {
    if (!std::isnan(partials[k])) continue;
    const int64_t begin = static_cast<int64_t>(k) * span;
    const int64_t end = begin + span < size ? begin + span : size;
    for (int64_t i = begin; i < end; ++i) {
      if (std::isnan(target[i])) throw std::invalid_argument(message);
    }
  }
}

template <typename T>
void softmax(T* y, const T* x, int64_t N, int64_t C) {
  require_positive(N, "N (rows)");
  require_positive(C, "C (classes)");
  GRADWATCH_DISPATCH(softmax, y, x, N, C);
}

template <typename T>
void log_softmax(T* y, const T* x, int64_t N, int64_t C) {
  require_positive(N, "N (rows)");
  require_positive(C, "C (classes)");
  GRADWATCH_DISPATCH(log_softmax, y, x, N, C);
}

template <typename T>
double softmax_cross_entropy(T* dlogits, const T* logits, const int64_t* labels, int64_t N,
                             int64_t C) {
  require_positive(N, "N (batch)");
  require_positive(C, "C (classes)");
  for (int64_t n = 0; n < N; ++n) {
    if (labels[n] < 0 || labels[n] >= C) {
      throw std::invalid_argument("labels must be class indices in [0, " + std::to_string(C) +
                                  "), got " + std::to_string(labels[n]) + " at index " +
                                  std::to_string(n));
    }
  }
  std::vector<double> row_loss(static_cast<size_t>(N));
  GRADWATCH_DISPATCH(softmax_cross_entropy_indices, dlogits, row_loss.data(), logits, labels, N, C);
  return sum_in_order(row_loss) / static_cast<double>(N);
}

template <typename T>
double softmax_cross_entropy(T* dlogits, const T* logits, const T* probs, int64_t N, int64_t C) {
  require_positive(N, "N (batch)");
  require_positive(C, "C (classes)");
  std::vector<double> row_loss(static_cast<size_t>(N));
  GRADWATCH_DISPATCH(softmax_cross_entropy_probs, dlogits, row_loss.data(), logits, probs, N, C);
  require_no_nan(row_loss, probs, C, N * C, "labels contain NaN");
  return sum_in_order(row_loss) / static_cast<double>(N);
}

template <typename T>
double binary_cross_entropy_with_logits(T* dx, const T* x, const T* targets, int64_t E) {
  require_positive(E, "E (elements)");
  std::vector<double> partials(static_cast<size_t>((E + baseline::kChunk - 1) / baseline::kChunk));
  GRADWATCH_DISPATCH(binary_cross_entropy_with_logits, dx, partials.data(), x, targets, E);
  require_no_nan(partials, targets, baseline::kChunk, E, "targets contain NaN");
  return sum_in_order(partials) / static_cast<double>(E);
}

template <typename T>
double mse(T* dpred, const T* pred, const T* target, int64_t E) {
  require_positive(E, "E (elements)");
  std::vector<double> partials(static_cast<size_t>((E + baseline::kChunk - 1) / baseline::kChunk));
  GRADWATCH_DISPATCH(mse, dpred, partials.data(), pred, target, E);
  require_no_nan(partials, target, baseline::kChunk, E, "target contains NaN");
  return sum_in_order(partials) / static_cast<double>(E);
}

template void softmax<float>(float*, const float*, int64_t, int64_t);
template void softmax<double>(double*, const double*, int64_t, int64_t);
template void log_softmax<float>(float*, const float*, int64_t, int64_t);
template void log_softmax<double>(double*, const double*, int64_t, int64_t);
template double softmax_cross_entropy<float>(float*, const float*, const int64_t*, int64_t,
                                             int64_t);
template double softmax_cross_entropy<double>(double*, const double*, const int64_t*, int64_t,
                                              int64_t);
template double softmax_cross_entropy<float>(float*, const float*, const float*, int64_t, int64_t);
template double softmax_cross_entropy<double>(double*, const double*, const double*, int64_t,
                                              int64_t);
template double binary_cross_entropy_with_logits<float>(float*, const float*, const float*,
                                                        int64_t);
template double binary_cross_entropy_with_logits<double>(double*, const double*, const double*,
                                                         int64_t);
template double mse<float>(float*, const float*, const float*, int64_t);
template double mse<double>(double*, const double*, const double*, int64_t);

}  // namespace gradwatch
