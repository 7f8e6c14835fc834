#include "gradwatch/cpu_dispatch.hpp"

#include <cstdlib>
#include <cstring>

namespace gradwatch {

SimdLevel detected_simd_level() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the wide registers (XGETBV).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma")) {
    return SimdLevel::avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::avx2;
#endif
  return SimdLevel::baseline;
}

static SimdLevel level_from_environment(SimdLevel detected) {
  const char* requested = std::getenv("GRADWATCH_SIMD");
  if (requested == nullptr || *requested == '\0') return detected;
  SimdLevel cap = detected;
  if (std::strcmp(requested, "baseline") == 0) cap = SimdLevel::baseline;
  else if (std::strcmp(requested, "avx2") == 0) cap = SimdLevel::avx2;
  else if (std::strcmp(requested, "avx512") == 0) cap = SimdLevel::avx512;
  return static_cast<int>(cap) < static_cast<int>(detected) ? cap : detected;
}

SimdLevel simd_level() {
  // A function-local static is initialised once, thread-safely, and never changes afterwards.
  static const SimdLevel level = level_from_environment(detected_simd_level());
  return level;
}

std::string simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::avx512: return "avx512";
    case SimdLevel::avx2: return "avx2";
    default: return "baseline";
  }
}

}  // namespace gradwatch
