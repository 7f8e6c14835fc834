// The loss kernels compiled for AVX-512 (F, BW, DQ, VL).
#define GW_ISA avx512
#include "loss_kernels.hpp"

namespace gradwatch {
namespace avx512 {
GRADWATCH_INSTANTIATE_LOSS_KERNELS(float)
GRADWATCH_INSTANTIATE_LOSS_KERNELS(double)
}  // namespace avx512
}  // namespace gradwatch
