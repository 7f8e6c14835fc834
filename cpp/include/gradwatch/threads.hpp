// One thread budget for our OpenMP kernels and OpenBLAS's own (pthreads) pool.
#pragma once

#include <cstdint>

namespace gradwatch {

// Sets both pools to n threads (n >= 1).
void set_num_threads(int n);
// The budget our kernels use (equal to OpenBLAS's after set_num_threads). Defaults to the
// number of cores OpenMP sees, which honours OMP_NUM_THREADS.
int get_num_threads();
// The OpenMP version the core was built with (yyyymm).
int openmp_version();

// Threads for a kernel touching `work` elements: 1 below a size where waking threads costs more
// than it saves, the budget otherwise.
inline int threads_for(int64_t work) {
  constexpr int64_t kMinWorkPerThread = 16384;
  if (work < 2 * kMinWorkPerThread) return 1;
  const int budget = get_num_threads();
  const int64_t useful = work / kMinWorkPerThread;
  return static_cast<int>(useful < budget ? useful : budget);
}

}  // namespace gradwatch
