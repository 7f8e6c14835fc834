// Run-time choice of the instruction set for our own kernels.
//
// Each kernel file cpp/src/<concern>_kernels.hpp is compiled several times: once in namespace
// gradwatch::baseline (portable x86-64 / whatever the compiler targets by default) and once per
// ISA in cpp/src/simd/<concern>_<isa>.cpp, in namespace gradwatch::avx2 or gradwatch::avx512.
// The public kernel in cpp/src/<concern>.cpp calls the variant for simd_level().
// Everything a kernel file defines must live inside its GW_ISA namespace: an inline function
// shared between ISA variants would let the linker keep the AVX-512 copy for every caller.
#pragma once

#include <string>

namespace gradwatch {

enum class SimdLevel : int { baseline = 0, avx2 = 1, avx512 = 2 };

// The best level this CPU supports (AVX2 needs AVX2 + FMA + OS support for YMM state;
// AVX-512 needs F, BW, DQ, VL + OS support for ZMM state).
SimdLevel detected_simd_level();

// The level the kernels use: detected_simd_level(), capped by the environment variable
// GRADWATCH_SIMD=baseline|avx2|avx512, read once at first use and fixed afterwards.
SimdLevel simd_level();

std::string simd_level_name(SimdLevel level);

}  // namespace gradwatch

// Calls gradwatch::<isa>::function(args...) for the active level.
#define GRADWATCH_DISPATCH(function, ...)                                     \
  do {                                                                       \
    switch (::gradwatch::simd_level()) {                                     \
      case ::gradwatch::SimdLevel::avx512:                                   \
        ::gradwatch::avx512::function(__VA_ARGS__);                          \
        break;                                                               \
      case ::gradwatch::SimdLevel::avx2:                                     \
        ::gradwatch::avx2::function(__VA_ARGS__);                            \
        break;                                                               \
      default:                                                               \
        ::gradwatch::baseline::function(__VA_ARGS__);                        \
        break;                                                               \
    }                                                                        \
  } while (0)
