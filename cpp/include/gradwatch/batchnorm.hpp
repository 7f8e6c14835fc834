// Batch normalisation (Ioffe & Szegedy 2015), training and inference mode, float and double.
// Dims: N = batch, F = features. Every (N, F) array is row-major; statistics are per feature,
// over the batch. Results are bitwise the same on any thread count.
#pragma once

#include <cstdint>

namespace gradwatch {

// Training-mode forward with the batch statistics:
//   mean = sum_n x / N,  var = sum_n (x - mean)^2 / N (biased, as used for normalising),
//   inv_std = 1 / sqrt(var + eps),  y = gamma * (x - mean) * inv_std + beta.
// inv_std is the cache batchnorm_backward reads. y may alias x.
// y, x: (N, F)  mean, var, inv_std, gamma, beta: (F)
// Throws std::invalid_argument unless N >= 2, F >= 1 and eps is finite and > 0.
template <typename T>
void batchnorm_forward(T* y, T* mean, T* var, T* inv_std, const T* x, const T* gamma,
                       const T* beta, int64_t N, int64_t F, double eps);

// Training-mode backward through the batch statistics, with x_hat = (x - mean) * inv_std:
//   dbeta = sum_n dy,  dgamma = sum_n dy * x_hat,
//   dx = gamma * inv_std * (dy - dbeta / N - x_hat * dgamma / N).
// Gradients are overwritten. dx may alias dy or x.
// dx, dy, x: (N, F)  dgamma, dbeta, mean, inv_std, gamma: (F)
// Throws std::invalid_argument unless N >= 2 and F >= 1.
template <typename T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* mean,
                        const T* inv_std, const T* gamma, int64_t N, int64_t F);

// The cache of batchnorm_forward from a saved variance: inv_std = 1 / sqrt(var + eps).
// inv_std, var: (F)
// Throws std::invalid_argument unless F >= 1 and eps is finite and > 0.
template <typename T>
void batchnorm_inv_std(T* inv_std, const T* var, int64_t F, double eps);

// Inference mode: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
// y may alias x.
// y, x: (N, F)  running_mean, running_var, gamma, beta: (F)
// Throws std::invalid_argument unless N >= 1, F >= 1 and eps is finite and > 0.
template <typename T>
void batchnorm_inference(T* y, const T* x, const T* running_mean, const T* running_var,
                         const T* gamma, const T* beta, int64_t N, int64_t F, double eps);

}  // namespace gradwatch
