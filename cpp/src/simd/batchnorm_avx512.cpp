// The batch-norm kernels compiled for AVX-512 (F, BW, DQ, VL).
#define GW_ISA avx512
#include "batchnorm_kernels.hpp"

namespace gradwatch {
namespace avx512 {
GRADWATCH_INSTANTIATE_BATCHNORM_KERNELS(float)
GRADWATCH_INSTANTIATE_BATCHNORM_KERNELS(double)
}  // namespace avx512
}  // namespace gradwatch
