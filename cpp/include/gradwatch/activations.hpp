// Elementwise activation functions: forward, derivative, backward from the input and, where
// cheaper, backward from the output, in float and double.
//
// Dims: n = number of elements (arrays of any shape, contiguous, seen flat).
// Outputs are overwritten. An output may be the very same array as an input (in place) but must
// not partially overlap one. Every kernel is parallel over blocks of elements; the blocks, not
// the threads, decide which elements share a vector, so results are bitwise identical for any
// thread count.
//
// Numerics: stable for every finite input (sigmoid through exp(-|x|), softplus as
// max(x, 0) + log1p(exp(-|x|)), gelu through erfc, gelu_tanh and silu through sigmoid), so
// nothing overflows to inf or cancels to NaN. NaN in gives NaN out in every function, also in
// derivatives where PyTorch would return a constant (relu'(NaN) is NaN here). At infinities the
// limits are returned (gelu(-inf) = 0, gelu'(+inf) = 1). At kinks PyTorch's choice:
// relu'(0) = 0, leaky_relu'(0) = alpha, elu'(0) = alpha, selu'(0) = scale * alpha.
#pragma once

#include <cstdint>

namespace gradwatch {

enum class Activation : int {
  identity,    // x
  sigmoid,     // 1 / (1 + exp(-x))
  tanh,        // tanh(x)
  relu,        // max(x, 0)
  leaky_relu,  // x for x > 0, alpha x otherwise (alpha: negative slope, default 0.01)
  elu,         // x for x > 0, alpha (exp(x) - 1) otherwise (default alpha 1)
  selu,        // scale * elu(x) with PyTorch's alpha and scale (Klambauer et al. 2017)
  gelu,        // x Phi(x) = x (1 + erf(x / sqrt 2)) / 2
  gelu_tanh,   // x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2
  silu,        // x sigmoid(x)
  softplus,    // log(1 + exp(x))
};

// Number of Activation values (they run from 0 to kActivationCount - 1).
constexpr int kActivationCount = 11;

// "leaky_relu" for Activation::leaky_relu, etc.
const char* activation_name(Activation kind);
// Whether alpha is a parameter of kind (leaky_relu, elu); the other kinds ignore it.
bool activation_takes_alpha(Activation kind);
// Whether activation_backward_from_output supports kind: identity, sigmoid, tanh, relu,
// leaky_relu, elu, selu (the kinds whose derivative is a function of the output).
bool activation_has_backward_from_output(Activation kind);

// y = f(x).
// y, x: (n)
// Throws std::invalid_argument for n < 0, an unknown kind or a non-finite alpha.
template <typename T>
void activation_forward(T* y, const T* x, int64_t n, Activation kind, double alpha);

// dydx = f'(x), elementwise.
// dydx, x: (n)
template <typename T>
void activation_derivative(T* dydx, const T* x, int64_t n, Activation kind, double alpha);

// dx = dy * f'(x) in one pass.
// dx, dy, x: (n)
template <typename T>
void activation_backward(T* dx, const T* dy, const T* x, int64_t n, Activation kind,
                         double alpha);

// dx = dy * f'(x) computed from the output y = f(x), for the kinds where that is cheaper
// (sigmoid: y (1 - y); tanh: (1 - y)(1 + y); relu, leaky_relu, elu, selu: from the sign of y
// and, for elu/selu, y + alpha (scale alpha); identity: 1).
// dx, dy, y: (n)
// Throws std::invalid_argument for other kinds, and for leaky_relu and elu with alpha <= 0
// (y no longer tells which side of 0 x was on).
template <typename T>
void activation_backward_from_output(T* dx, const T* dy, const T* y, int64_t n, Activation kind,
                                     double alpha);

// Testing hook for the vectorised math library of the kernels (cpp/src/vecmath.hpp): evaluates
// one of its functions elementwise with the SIMD level in use.
enum class VecmathFunction : int { exp, expm1, log, log1p, log1p_unit, tanh, erf, erfc };

// y: (n)  x: (n)
template <typename T>
void vecmath_evaluate(T* y, const T* x, int64_t n, VecmathFunction function);

}  // namespace gradwatch
