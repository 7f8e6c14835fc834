// The loss kernels compiled for AVX2 + FMA.
#define GW_ISA avx2
#include "loss_kernels.hpp"

namespace gradwatch {
namespace avx2 {
GRADWATCH_INSTANTIATE_LOSS_KERNELS(float)
GRADWATCH_INSTANTIATE_LOSS_KERNELS(double)
}  // namespace avx2
}  // namespace gradwatch
