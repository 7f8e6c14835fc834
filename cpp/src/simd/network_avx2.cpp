// The network's fused passes compiled for AVX2 + FMA.
#define GW_ISA avx2
#include "network_kernels.hpp"

namespace gradwatch {
namespace avx2 {
GRADWATCH_INSTANTIATE_NETWORK_KERNELS(float)
GRADWATCH_INSTANTIATE_NETWORK_KERNELS(double)
}  // namespace avx2
}  // namespace gradwatch
