#define GW_ISA avx2
#include "dense_kernels.hpp"

namespace gradwatch {
namespace avx2 {
template void column_sum<float>(float*, const float*, int64_t, int64_t);
template void column_sum<double>(double*, const double*, int64_t, int64_t);
}  // namespace avx2
}  // namespace gradwatch
