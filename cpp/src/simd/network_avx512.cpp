// The network's fused passes compiled for AVX-512.
#define GW_ISA avx512
#include "network_kernels.hpp"

namespace gradwatch {
namespace avx512 {
GRADWATCH_INSTANTIATE_NETWORK_KERNELS(float)
GRADWATCH_INSTANTIATE_NETWORK_KERNELS(double)
}  // namespace avx512
}  // namespace gradwatch
