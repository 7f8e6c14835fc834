// The activation kernels compiled for AVX2 (CMake adds the ISA flags to simd/*_avx2.cpp).
#define GW_ISA avx2
#include "activations_kernels.hpp"

namespace gradwatch {
namespace avx2 {

#define GW_INSTANTIATE_ACTIVATION_KERNELS(T)                                                   \
  template void activation_forward_kernel<T>(T*, const T*, int64_t, Activation, T);            \
  template void activation_backward_kernel<T>(T*, const T*, const T*, int64_t, Activation, T); \
  template void activation_backward_from_output_kernel<T>(T*, const T*, const T*, int64_t,     \
                                                          Activation, T);                      \
  template void vecmath_kernel<T>(T*, const T*, int64_t, VecmathFunction);

GW_INSTANTIATE_ACTIVATION_KERNELS(float)
GW_INSTANTIATE_ACTIVATION_KERNELS(double)
#undef GW_INSTANTIATE_ACTIVATION_KERNELS

}  // namespace avx2
}  // namespace gradwatch
