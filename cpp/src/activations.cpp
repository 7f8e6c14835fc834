// The public activation functions: argument checks, then the kernel for the SIMD level in use.
#define GW_ISA baseline
#include "activations_kernels.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "gradwatch/cpu_dispatch.hpp"

namespace gradwatch {

// The same kernels compiled for other ISAs, instantiated in cpp/src/simd/activations_*.cpp.
namespace avx2 {
template <typename T> void activation_forward_kernel(T*, const T*, int64_t, Activation, T);
template <typename T>
void activation_backward_kernel(T*, const T*, const T*, int64_t, Activation, T);
template <typename T>
void activation_backward_from_output_kernel(T*, const T*, const T*, int64_t, Activation, T);
template <typename T> void vecmath_kernel(T*, const T*, int64_t, VecmathFunction);
}  // namespace avx2
namespace avx512 {
template <typename T> void activation_forward_kernel(T*, const T*, int64_t, Activation, T);
template <typename T>
void activation_backward_kernel(T*, const T*, const T*, int64_t, Activation, T);
template <typename T>
void activation_backward_from_output_kernel(T*, const T*, const T*, int64_t, Activation, T);
template <typename T> void vecmath_kernel(T*, const T*, int64_t, VecmathFunction);
}  // namespace avx512

const char* activation_name(Activation kind) {
  switch (kind) {
    case Activation::identity: return "identity";
    case Activation::sigmoid: return "sigmoid";
    case Activation::tanh: return "tanh";
    case Activation::relu: return "relu";
    case Activation::leaky_relu: return "leaky_relu";
    case Activation::elu: return "elu";
    case Activation::selu: return "selu";
    case Activation::gelu: return "gelu";
    case Activation::gelu_tanh: return "gelu_tanh";
    case Activation::silu: return "silu";
    case Activation::softplus: return "softplus";
  }
  return "unknown";
}

bool activation_takes_alpha(Activation kind) {
  return kind == Activation::leaky_relu || kind == Activation::elu;
}

bool activation_has_backward_from_output(Activation kind) {
  return baseline::has_backward_from_output(kind);
}

static void check_arguments(int64_t n, Activation kind, double alpha) {
  const int code = static_cast<int>(kind);
  if (code < 0 || code >= kActivationCount) {
    throw std::invalid_argument("unknown activation kind " + std::to_string(code));
  }
  if (n < 0) throw std::invalid_argument("n must be >= 0, got " + std::to_string(n));
  if (!std::isfinite(alpha)) throw std::invalid_argument("alpha must be finite");
}

template <typename T>
void activation_forward(T* y, const T* x, int64_t n, Activation kind, double alpha) {
  check_arguments(n, kind, alpha);
  GRADWATCH_DISPATCH(activation_forward_kernel<T>, y, x, n, kind, static_cast<T>(alpha));
}

template <typename T>
void activation_derivative(T* dydx, const T* x, int64_t n, Activation kind, double alpha) {
  check_arguments(n, kind, alpha);
  const T* no_dy = nullptr;
  GRADWATCH_DISPATCH(activation_backward_kernel<T>, dydx, no_dy, x, n, kind,
                     static_cast<T>(alpha));
}

template <typename T>
void activation_backward(T* dx, const T* dy, const T* x, int64_t n, Activation kind,
                         double alpha) {
  check_arguments(n, kind, alpha);
  if (dy == nullptr && n > 0) throw std::invalid_argument("dy must not be null");
  GRADWATCH_DISPATCH(activation_backward_kernel<T>, dx, dy, x, n, kind, static_cast<T>(alpha));
}

template <typename T>
void activation_backward_from_output(T* dx, const T* dy, const T* y, int64_t n, Activation kind,
                                     double alpha) {
  check_arguments(n, kind, alpha);
  if (!activation_has_backward_from_output(kind)) {
    throw std::invalid_argument(
        std::string("backward from the output is not available for ") + activation_name(kind) +
        "; it is for identity, sigmoid, tanh, relu, leaky_relu, elu and selu");
  }
  if (activation_takes_alpha(kind) && !(alpha > 0)) {
    throw std::invalid_argument(std::string("backward from the output of ") +
                                activation_name(kind) + " needs alpha > 0, got " +
                                std::to_string(alpha));
  }
  GRADWATCH_DISPATCH(activation_backward_from_output_kernel<T>, dx, dy, y, n, kind,
                     static_cast<T>(alpha));
}

template <typename T>
void vecmath_evaluate(T* y, const T* x, int64_t n, VecmathFunction function) {
  const int code = static_cast<int>(function);
  if (code < 0 || code > static_cast<int>(VecmathFunction::erfc)) {
    throw std::invalid_argument("unknown vecmath function " + std::to_string(code));
  }
  if (n < 0) throw std::invalid_argument("n must be >= 0, got " + std::to_string(n));
  GRADWATCH_DISPATCH(vecmath_kernel<T>, y, x, n, function);
}

#define GW_INSTANTIATE_ACTIVATIONS(T)                                                          \
  namespace baseline {                                                                         \
  template void activation_forward_kernel<T>(T*, const T*, int64_t, Activation, T);            \
  template void activation_backward_kernel<T>(T*, const T*, const T*, int64_t, Activation, T); \
  template void activation_backward_from_output_kernel<T>(T*, const T*, const T*, int64_t,     \
                                                          Activation, T);                      \
  template void vecmath_kernel<T>(T*, const T*, int64_t, VecmathFunction);                     \
  }                                                                                            \
  template void activation_forward<T>(T*, const T*, int64_t, Activation, double);              \
  template void activation_derivative<T>(T*, const T*, int64_t, Activation, double);           \
  template void activation_backward<T>(T*, const T*, const T*, int64_t, Activation, double);   \
  template void activation_backward_from_output<T>(T*, const T*, const T*, int64_t, Activation, \
                                                   double);                                    \
  template void vecmath_evaluate<T>(T*, const T*, int64_t, VecmathFunction);

GW_INSTANTIATE_ACTIVATIONS(float)
GW_INSTANTIATE_ACTIVATIONS(double)
#undef GW_INSTANTIATE_ACTIVATIONS

}  // namespace gradwatch
