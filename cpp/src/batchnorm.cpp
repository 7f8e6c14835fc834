// The public batch-norm functions: argument checks, then the kernel of the active SIMD level.
// Dims: N = batch, F = features.
#define GW_ISA baseline
#include "gradwatch/batchnorm.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "batchnorm_kernels.hpp"
#include "gradwatch/cpu_dispatch.hpp"

namespace gradwatch {

namespace baseline {
GRADWATCH_INSTANTIATE_BATCHNORM_KERNELS(float)
GRADWATCH_INSTANTIATE_BATCHNORM_KERNELS(double)
}  // namespace baseline

// The same kernels compiled for AVX2 and AVX-512 (cpp/src/simd/batchnorm_*.cpp).
#define GRADWATCH_DECLARE_BATCHNORM_KERNELS(isa)                                                 \
  namespace isa {                                                                                \
  template <typename T>                                                                          \
  void batchnorm_forward(T* y, T* mean, T* var, T* inv_std, const T* x, const T* gamma,          \
                         const T* beta, int64_t N, int64_t F, double eps);                       \
  template <typename T>                                                                          \
  void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,    \
                          const T* inv_std, const T* gamma, int64_t N, int64_t F);               \
  template <typename T>                                                                          \
  void batchnorm_inference(T* y, const T* x, const T* running_mean, const T* running_var,        \
                           const T* gamma, const T* beta, int64_t N, int64_t F, double eps);     \
  }
GRADWATCH_DECLARE_BATCHNORM_KERNELS(avx2)
GRADWATCH_DECLARE_BATCHNORM_KERNELS(avx512)
#undef GRADWATCH_DECLARE_BATCHNORM_KERNELS

// Training mode normalises by the batch variance, which is zero for a single sample.
static void require_sizes(int64_t N, int64_t F, bool training) {
  if (training && N < 2) {
    throw std::invalid_argument(
        "batch norm in training mode needs N >= 2 samples (the variance of one sample is zero), "
        "got N = " + std::to_string(N));
  }
  if (N < 1) throw std::invalid_argument("batch norm needs N >= 1, got N = " + std::to_string(N));
  if (F < 1) throw std::invalid_argument("batch norm needs F >= 1, got F = " + std::to_string(F));
}

static void require_eps(double eps) {
  if (!(std::isfinite(eps) && eps > 0)) {
    throw std::invalid_argument("eps must be finite and > 0, got " + std::to_string(eps));
  }
}

template <typename T>
void batchnorm_forward(T* y, T* mean, T* var, T* inv_std, const T* x, const T* gamma,
                       const T* beta, int64_t N, int64_t F, double eps) {
  require_sizes(N, F, true);
  require_eps(eps);
  GRADWATCH_DISPATCH(batchnorm_forward, y, mean, var, inv_std, x, gamma, beta, N, F, eps);
}

template <typename T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                        const T* inv_std, const T* gamma, int64_t N, int64_t F) {
  require_sizes(N, F, true);
  GRADWATCH_DISPATCH(batchnorm_backward, dx, dgamma, dbeta, dy, x, mean, inv_std, gamma, N, F);
}

// O(F): not worth a SIMD variant. Computed in double, like the forward's inv_std.
template <typename T>
void batchnorm_inv_std(T* inv_std, const T* var, int64_t F, double eps) {
  require_sizes(1, F, false);
  require_eps(eps);
  for (int64_t f = 0; f < F; ++f) inv_std[f] = T(1 / std::sqrt(double(var[f]) + eps));
}

template <typename T>
void batchnorm_inference(T* y, const T* x, const T* running_mean, const T* running_var,
                         const T* gamma, const T* beta, int64_t N, int64_t F, double eps) {
  require_sizes(N, F, false);
  require_eps(eps);
  GRADWATCH_DISPATCH(batchnorm_inference, y, x, running_mean, running_var, gamma, beta, N, F,
                     eps);
}

#define GRADWATCH_INSTANTIATE_BATCHNORM(T)                                                       \
  template void batchnorm_forward<T>(T*, T*, T*, T*, const T*, const T*, const T*, int64_t,     \
                                     int64_t, double);                                           \
  template void batchnorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,       \
                                      const T*, int64_t, int64_t);                               \
  template void batchnorm_inv_std<T>(T*, const T*, int64_t, double);                            \
  template void batchnorm_inference<T>(T*, const T*, const T*, const T*, const T*, const T*,    \
                                       int64_t, int64_t, double);
GRADWATCH_INSTANTIATE_BATCHNORM(float)
GRADWATCH_INSTANTIATE_BATCHNORM(double)
#undef GRADWATCH_INSTANTIATE_BATCHNORM

}  // namespace gradwatch
