#include "gradwatch/threads.hpp"

#include <cblas.h>
#include <omp.h>

#include <atomic>
#include <stdexcept>

namespace gradwatch {

// The budget is process-wide configuration (like torch.set_num_threads), kept in one atomic so
// that kernels called from any Python thread see the same value; omp_set_num_threads alone
// would only reach the calling thread.
static std::atomic<int>& thread_budget() {
  static std::atomic<int> budget{omp_get_max_threads()};
  return budget;
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n must be >= 1, got " + std::to_string(n));
  thread_budget().store(n);
  omp_set_num_threads(n);  // keeps the calling thread's OpenMP default (and threadpoolctl) in step
  scipy_openblas_set_num_threads(n);
}

int get_num_threads() { return thread_budget().load(std::memory_order_relaxed); }

int openmp_version() { return _OPENMP; }

}  // namespace gradwatch
