// The batch-norm kernels compiled for AVX2 + FMA.
#define GW_ISA avx2
#include "batchnorm_kernels.hpp"

namespace gradwatch {
namespace avx2 {
GRADWATCH_INSTANTIATE_BATCHNORM_KERNELS(float)
GRADWATCH_INSTANTIATE_BATCHNORM_KERNELS(double)
}  // namespace avx2
}  // namespace gradwatch
