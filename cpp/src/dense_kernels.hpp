// The passes around the dense layer's GEMMs: bias broadcast and the bias gradient (column sum).
// Compiled once per ISA: see gradwatch/cpu_dispatch.hpp. Dims: N = batch, O = fan_out.
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including dense_kernels.hpp"
#endif

#include <cstddef>
#include <cstdint>
#include <vector>

#include "gradwatch/threads.hpp"

namespace gradwatch {
namespace GW_ISA {

// Rows summed into one partial sum. Fixed, so the order of every addition in column_sum is a
// function of N and O alone: the result is bitwise the same for any thread count.
constexpr int64_t kColumnSumRowChunk = 64;
// Columns per block: the running sums of one block (16 KiB in double) stay in L1.
constexpr int64_t kColumnSumColumnBlock = 2048;

// Rows [row_begin, row_end) of y set to b.
// y: (N, O)  b: (O)
template <typename T>
void broadcast_row_range(T* y, const T* b, int64_t row_begin, int64_t row_end, int64_t O) {
  for (int64_t row = row_begin; row < row_end; ++row) {
    T* y_row = y + row * O;
#pragma omp simd
    for (int64_t col = 0; col < O; ++col) y_row[col] = b[col];
  }
}

// Every row of y set to b, the starting value for a GEMM with beta = 1.
// y: (N, O)  b: (O)
template <typename T>
void broadcast_rows(T* y, const T* b, int64_t N, int64_t O) {
  const int threads = threads_for(N * O);
  // Even a team of one costs a microsecond in libgomp, as much as a small layer's whole pass.
  if (threads == 1) {
    broadcast_row_range(y, b, 0, N, O);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t row = 0; row < N; ++row) broadcast_row_range(y, b, row, row + 1, O);
}

// sums[col_begin:col_end] = a[row_begin:row_end, col_begin:col_end].sum(0), adding rows strictly
// in order, one column block at a time.
// sums: (O)  a: (N, O)
template <typename T>
void sum_rows(T* sums, const T* a, int64_t row_begin, int64_t row_end, int64_t col_begin,
              int64_t col_end, int64_t O) {
  for (int64_t col0 = col_begin; col0 < col_end; col0 += kColumnSumColumnBlock) {
    const int64_t width =
        col_end - col0 < kColumnSumColumnBlock ? col_end - col0 : kColumnSumColumnBlock;
    T* s = sums + col0;
    const T* first = a + row_begin * O + col0;
    // Starting from the first row, not from zero, keeps a sum of -0.0 at -0.0 as in NumPy.
#pragma omp simd
    for (int64_t col = 0; col < width; ++col) s[col] = first[col];
    int64_t row = row_begin + 1;
    // Four rows per sweep: the same left-to-right additions as one row at a time, with a
    // quarter of the loads and stores of the running sums.
    for (; row + 4 <= row_end; row += 4) {
      const T* r0 = a + row * O + col0;
      const T* r1 = r0 + O;
      const T* r2 = r1 + O;
      const T* r3 = r2 + O;
#pragma omp simd
      for (int64_t col = 0; col < width; ++col) {
        s[col] = s[col] + r0[col] + r1[col] + r2[col] + r3[col];
      }
    }
    for (; row < row_end; ++row) {
      const T* r = a + row * O + col0;
#pragma omp simd
      for (int64_t col = 0; col < width; ++col) s[col] = s[col] + r[col];
    }
  }
}

// partial = the sum of rows [chunk * kColumnSumRowChunk, ...) of a, at most kColumnSumRowChunk.
// partial: (O)  a: (N, O)
template <typename T>
void sum_chunk(T* partial, const T* a, int64_t chunk, int64_t N, int64_t O) {
  const int64_t row_begin = chunk * kColumnSumRowChunk;
  const int64_t row_end = row_begin + kColumnSumRowChunk < N ? row_begin + kColumnSumRowChunk : N;
  sum_rows(partial, a, row_begin, row_end, 0, O, O);
}

// sums = a.sum(0): each chunk of kColumnSumRowChunk rows is summed in order, then the chunk
// sums are added in chunk order. Chunks run in parallel; which thread summed which chunk never
// changes an addition, so the result is the same for any thread count.
// sums: (O)  a: (N, O)
template <typename T>
void column_sum(T* sums, const T* a, int64_t N, int64_t O) {
  const int64_t chunks = (N + kColumnSumRowChunk - 1) / kColumnSumRowChunk;
  if (chunks == 1) {
    sum_rows(sums, a, 0, N, 0, O, O);
    return;
  }
  std::vector<T> partial(static_cast<std::size_t>(chunks * O));
  T* partial_data = partial.data();
  const int threads = threads_for(N * O);
  if (threads == 1) {  // no parallel region: see broadcast_rows
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      sum_chunk(partial_data + chunk * O, a, chunk, N, O);
    }
  } else {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      sum_chunk(partial_data + chunk * O, a, chunk, N, O);
    }
  }
  // The chunk sums are a 64th of the data: one thread adds them up.
  sum_rows(sums, partial_data, 0, chunks, 0, O, O);
}

}  // namespace GW_ISA
}  // namespace gradwatch
