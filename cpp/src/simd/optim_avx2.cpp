// The optimiser kernels compiled for AVX2 + FMA.
#define GW_ISA avx2
#include "optim_kernels.hpp"

namespace gradwatch {
namespace avx2 {
GRADWATCH_INSTANTIATE_OPTIM_KERNELS(float)
GRADWATCH_INSTANTIATE_OPTIM_KERNELS(double)
}  // namespace avx2
}  // namespace gradwatch
