// The optimiser kernels compiled for AVX-512 (F, BW, DQ, VL).
#define GW_ISA avx512
#include "optim_kernels.hpp"

namespace gradwatch {
namespace avx512 {
GRADWATCH_INSTANTIATE_OPTIM_KERNELS(float)
GRADWATCH_INSTANTIATE_OPTIM_KERNELS(double)
}  // namespace avx512
}  // namespace gradwatch
