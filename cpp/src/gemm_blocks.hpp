// GEMMs as independent blocks of rows or columns, each one single-threaded OpenBLAS call on one
// of our OpenMP threads: used by the network's step and by the dense layer ops.
//
// Why. One thread pool: OpenBLAS's own (pthreads) pool and our OpenMP team must never compete
// for the same cores. After a parallel region libgomp's threads spin for a while (its default
// GOMP_SPINCOUNT, measured 4-8 ms of CPU on these machines) and OpenBLAS's threads spin for
// ~0.1 s after a call; a threaded OpenBLAS GEMM next to one of our parallel regions therefore
// ran with three busy threads on two cores (dense forward at 256 x 1024 x 1024: 4x the bare
// GEMM). Blocks fixed by the shapes alone also make every result independent of the thread
// count: each element of C is computed by the same single-threaded call whichever thread runs it.
// Dims: C (M, N) = op(A) (M, K) @ op(B) (K, N).
#pragma once

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mutex>

#include "gradwatch/blas.hpp"
#include "gradwatch/threads.hpp"
#include "step_profile.hpp"

namespace gradwatch {

// A GEMM of M x N x K multiply-adds is split in up to kMaxGemmBlocks blocks of rows or columns
// (the larger output dimension), halving while each block keeps kGemmBlockWork multiply-adds
// and kGemmMinSplit rows or columns; GEMMs of fewer than kGemmFourBlockWork multiply-adds stop
// at 2 blocks. Each block packs the operand it shares with the others again (OpenBLAS's copy
// routines: 17% of the CPU samples of 784-256x5-10 + batch norm, batch 128, with 4 blocks).
// On 2 cores, measured on 784-1024-1024-10, batch 256 (GEMMs of 2e8 multiply-adds): 4 blocks
// beat 8 (16.6 against 17.4 ms a step) and 2 (18.5 ms), whose halves finish unevenly; on the
// smaller GEMMs of 784-100x4-10, batch 100 and 784-256x5-10, batch 128 (at most 2.6e7), 2 blocks
// beat 4 by 11% a step (old and new builds alternated, 6 rounds of 500 steps, smallest totals:
// 383 against 430 us, 1885 against 2127 us).
constexpr int64_t kMaxGemmBlocks = 4;
constexpr int64_t kGemmBlockWork = int64_t(1) << 17;
constexpr int64_t kGemmFourBlockWork = int64_t(1) << 26;
constexpr int64_t kGemmMinSplit = 16;

struct GemmPlan {
  bool split_rows;
  int64_t align, units, blocks;  // units: the split dimension in multiples of align (rounded up)
  // The first row or column of block b (b = blocks: the end, clamped to the dimension by the
  // caller): the units shared out as evenly as they go, so that two threads taking blocks in
  // turn finish together (100 rows in 4 blocks: 24, 24, 24, 28, not 28, 28, 28, 16).
  int64_t begin(int64_t block) const { return align * (block * units / blocks); }
};

inline GemmPlan plan_gemm(int64_t M, int64_t N, int64_t K) {
  const bool split_rows = M >= N;
  const int64_t dim = split_rows ? M : N;
  const int64_t work = M * N * K;
  const int64_t most = work >= kGemmFourBlockWork ? kMaxGemmBlocks : 2;
  int64_t blocks = 1;
  while (blocks < most && work / (2 * blocks) >= kGemmBlockWork &&
         dim / (2 * blocks) >= kGemmMinSplit) {
    blocks *= 2;
  }
  // Column blocks start on 64-byte lines of float (no line is written by two blocks); row
  // blocks are multiples of 4 rows, as even as that allows.
  const int64_t align = split_rows ? 4 : 16;
  const int64_t units = (dim + align - 1) / align;
  return {split_rows, align, units, std::min(blocks, units)};
}

// The caller's own kernels a job may use (see GemmJob). C: (M, N) with row stride ldc.
template <typename T>
using SmallGemmKernel = void (*)(T* C, const T* A, const T* B, int64_t M, int64_t N, int64_t K,
                                 int64_t lda, int64_t ldb, int64_t ldc, bool accumulate);
template <typename T>
using SumOfSquaresKernel = void (*)(double* sum, const T* C, int64_t M, int64_t N, int64_t ldc);

// C = op(A) @ op(B) + beta C in plan.blocks independent single-threaded calls; with bias, each
// block of C first gets the bias rows (beta must be 1). Optional, both null by default:
// small_gemm replaces OpenBLAS for blocks with neither operand transposed that have at most
// small_gemm_rows rows or that OpenBLAS would allocate for (gemm_allocates; a training step
// allocates nothing) (it may read past the end of B: only for a padded B); sum_of_squares sets
// sumsq[block] to the sum of squares of the block of C, computed while it is in cache, and then,
// with nonfinite non-null, nonfinite[block] to the count of the block's non-finite entries (only
// searched when that sum is not finite: for telemetry, whose C may be overwritten later).
// op(A): (M, K)  op(B): (K, N)  C: (M, N)  bias: (N) or null  sumsq, nonfinite: (plan.blocks)
// or null
template <typename T>
struct GemmJob {
  bool transpose_a, transpose_b;
  int64_t M, N, K;
  const T* A;
  int64_t lda;
  const T* B;
  int64_t ldb;
  T beta;
  T* C;
  int64_t ldc;
  const T* bias;
  GemmPlan plan;
  SmallGemmKernel<T> small_gemm;
  int64_t small_gemm_rows;
  SumOfSquaresKernel<T> sum_of_squares;
  double* sumsq;
  int64_t* nonfinite;

  void run_block(int64_t block) const {
    const int64_t dim = plan.split_rows ? M : N;
    const int64_t lo = plan.begin(block);
    const int64_t hi = std::min(dim, plan.begin(block + 1));
    const T* a = A;
    const T* b = B;
    T* c = C;
    int64_t m = M, n = N, col0 = 0;
    if (plan.split_rows) {
      a = transpose_a ? A + lo : A + lo * lda;
      c = C + lo * ldc;
      m = hi - lo;
    } else {
      b = transpose_b ? B + lo * ldb : B + lo;
      c = C + lo;
      n = hi - lo;
      col0 = lo;
    }
    if (bias != nullptr) {
      for (int64_t r = 0; r < m; ++r) {
        std::memcpy(c + r * ldc, bias + col0, static_cast<size_t>(n) * sizeof(T));
      }
    }
    if (small_gemm != nullptr && !transpose_a && !transpose_b &&
        (m <= small_gemm_rows || gemm_allocates<T>(false, false, m, n, K))) {
      small_gemm(c, a, b, m, n, K, lda, ldb, ldc, beta != T(0));
    } else {
      gemm<T>(transpose_a, transpose_b, m, n, K, T(1), a, lda, b, ldb, beta, c, ldc);
    }
    if (sum_of_squares == nullptr) return;
    sum_of_squares(sumsq + block, c, m, n, ldc);
    if (nonfinite == nullptr || std::isfinite(sumsq[block])) return;
    int64_t count = 0;
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < n; ++j) count += std::isfinite(c[r * ldc + j]) ? 0 : 1;
    }
    nonfinite[block] = count;
  }
};

// A job over contiguous operands (row strides from the shapes), without the optional kernels.
template <typename T>
GemmJob<T> gemm_job(bool transpose_a, bool transpose_b, int64_t M, int64_t N, int64_t K,
                    const T* A, const T* B, T beta, T* C, const T* bias) {
  const int64_t lda = transpose_a ? M : K;
  const int64_t ldb = transpose_b ? K : N;
  return {transpose_a, transpose_b, M,       N,       K,      A,       lda,    B,
          ldb,         beta,        C,       N,       bias,   plan_gemm(M, N, K),
          nullptr,     0,           nullptr, nullptr, nullptr};
}

// The blocks of one or two GEMMs and one more small task, shared out dynamically (every task
// writes its own outputs, so the schedule changes no result); with second_pass non-null, each
// block of the second GEMM is followed on the same thread by (*second_pass)(block), a pass over
// the part of C that block wrote, while it is in that core's cache. Orphaned: inside a parallel
// region of several threads it is a worksharing loop, else a plain loop (not an orphaned
// dynamic loop, for which libgomp allocates a work share on every call). Timed as the network's
// GEMM phase when its step profile is on, less the calling thread's time in the passes (own).
template <typename T, typename SecondPass, typename Extra>
void run_gemms(const GemmJob<T>& first, const GemmJob<T>* second, const SecondPass* second_pass,
               const Extra& extra) {
  const int64_t first_blocks = first.plan.blocks;
  const int64_t gemm_tasks = first_blocks + (second != nullptr ? second->plan.blocks : 0);
  const FusedPhaseTimer timer(&StepProfile::gemm_ns, &StepProfile::own_ns);
  const auto run_task = [&](int64_t task) {
    if (task < first_blocks) {
      first.run_block(task);
    } else if (task < gemm_tasks) {
      second->run_block(task - first_blocks);
      if (second_pass == nullptr) return;
      const PhaseTimer pass_timer(&StepProfile::own_ns);
      (*second_pass)(task - first_blocks);
    } else {
      extra();
    }
  };
  if (omp_get_num_threads() == 1) {
    for (int64_t task = 0; task <= gemm_tasks; ++task) run_task(task);
    return;
  }
#pragma omp for schedule(dynamic, 1)
  for (int64_t task = 0; task <= gemm_tasks; ++task) run_task(task);
}

struct NoPass {
  void operator()(int64_t) const {}
};

template <typename T, typename Extra>
void run_gemms(const GemmJob<T>& first, const GemmJob<T>* second, const Extra& extra) {
  run_gemms(first, second, static_cast<const NoPass*>(nullptr), extra);
}

// The blocks of one GEMM, each followed on the same thread by pass(block), a pass over the part
// of C the block wrote while it is in that core's cache, with no barrier between. The blocks go
// to the threads in order (static): the next layer's block b, on the same rows, runs on the same
// core. Timed as the GEMM phase, less the calling thread's time in the passes, which is own.
template <typename T, typename Pass>
void run_gemm_with_pass(const GemmJob<T>& job, const Pass& pass) {
  const FusedPhaseTimer timer(&StepProfile::gemm_ns, &StepProfile::own_ns);
  const auto run_block = [&](int64_t block) {
    job.run_block(block);
    const PhaseTimer pass_timer(&StepProfile::own_ns);
    pass(block);
  };
  if (omp_get_num_threads() == 1) {
    for (int64_t block = 0; block < job.plan.blocks; ++block) run_block(block);
    return;
  }
#pragma omp for schedule(static)
  for (int64_t block = 0; block < job.plan.blocks; ++block) run_block(block);
}

// OpenBLAS runs single-threaded while any such scope is alive, in any thread (its thread count
// is process-wide); the count it had is restored when the last one ends.
class BlasSingleThreaded {
 public:
  BlasSingleThreaded() {
    std::lock_guard<std::mutex> lock(mutex());
    if (depth()++ == 0) {
      saved() = scipy_openblas_get_num_threads();
      if (saved() != 1) scipy_openblas_set_num_threads(1);
    }
  }
  ~BlasSingleThreaded() {
    std::lock_guard<std::mutex> lock(mutex());
    if (--depth() == 0 && saved() != 1) scipy_openblas_set_num_threads(saved());
  }
  BlasSingleThreaded(const BlasSingleThreaded&) = delete;
  BlasSingleThreaded& operator=(const BlasSingleThreaded&) = delete;

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static int& depth() {
    static int d = 0;
    return d;
  }
  static int& saved() {
    static int s = 1;
    return s;
  }
};

// run_gemms in a team of its own, of at most one thread per GEMM block, with OpenBLAS
// single-threaded: for a caller outside any parallel region (the dense layer ops).
template <typename T, typename Extra>
void run_gemms_in_team(const GemmJob<T>& first, const GemmJob<T>* second, const Extra& extra) {
  const int64_t blocks = first.plan.blocks + (second != nullptr ? second->plan.blocks : 0);
  const int threads = static_cast<int>(std::min<int64_t>(get_num_threads(), blocks));
  BlasSingleThreaded single_threaded_blas;
  if (threads <= 1) {  // no team: even one of a single thread costs a microsecond
    run_gemms(first, second, extra);
    return;
  }
#pragma omp parallel num_threads(threads)
  run_gemms(first, second, extra);
}

}  // namespace gradwatch
