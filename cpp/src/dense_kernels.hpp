// The pass beside the dense layer's GEMMs: the bias gradient (column sum).
// Compiled once per ISA: see gradwatch/cpu_dispatch.hpp. Dims: N = batch, O = fan_out.
#pragma once

#ifndef GW_ISA
#error "define GW_ISA (the ISA namespace) before including dense_kernels.hpp"
#endif

#include <algorithm>
#include <cstdint>

namespace gradwatch {
namespace GW_ISA {

// Rows summed into one partial sum. Fixed, so the order of every addition in column_sum is a
// function of N and O alone.
constexpr int64_t kColumnSumRowChunk = 64;
// Columns per block: the running sums and one chunk's partial sums of a block (16 KiB in
// double) stay in L1.
constexpr int64_t kColumnSumColumnBlock = 1024;

// s[0:width] = the sum of rows [0, rows) of a (row stride O), adding rows strictly in order.
// s: (width)  a: (rows, O), of which the first width columns are read
template <typename T>
void sum_block_rows(T* s, const T* a, int64_t rows, int64_t width, int64_t O) {
  // Starting from the first row, not from zero, keeps a sum of -0.0 at -0.0 as in NumPy.
#pragma omp simd
  for (int64_t col = 0; col < width; ++col) s[col] = a[col];
  int64_t row = 1;
  // Four rows per sweep: the same left-to-right additions as one row at a time, with a
  // quarter of the loads and stores of the running sums.
  for (; row + 4 <= rows; row += 4) {
    const T* r0 = a + row * O;
    const T* r1 = r0 + O;
    const T* r2 = r1 + O;
    const T* r3 = r2 + O;
#pragma omp simd
    for (int64_t col = 0; col < width; ++col) {
      s[col] = s[col] + r0[col] + r1[col] + r2[col] + r3[col];
    }
  }
  for (; row < rows; ++row) {
    const T* r = a + row * O;
#pragma omp simd
    for (int64_t col = 0; col < width; ++col) s[col] = s[col] + r[col];
  }
}

// sums[col_begin:col_end] = a[row_begin:row_end, col_begin:col_end].sum(0), adding rows strictly
// in order, one column block at a time (the network's column sums of a tile).
// sums: (O)  a: (N, O)
template <typename T>
void sum_rows(T* sums, const T* a, int64_t row_begin, int64_t row_end, int64_t col_begin,
              int64_t col_end, int64_t O) {
  for (int64_t col0 = col_begin; col0 < col_end; col0 += kColumnSumColumnBlock) {
    const int64_t width = std::min(kColumnSumColumnBlock, col_end - col0);
    sum_block_rows(sums + col0, a + row_begin * O + col0, row_end - row_begin, width, O);
  }
}

// sums = a.sum(0): each chunk of kColumnSumRowChunk rows is summed in order from its first
// row, then the chunk sums are added in chunk order, one column block at a time. One thread:
// the dense backward runs it as one task beside its GEMM blocks (a pass over a is a small part
// of the GEMMs' time), so it never needs a team of its own.
// sums: (O)  a: (N, O)
template <typename T>
void column_sum(T* sums, const T* a, int64_t N, int64_t O) {
  T partial[kColumnSumColumnBlock];
  for (int64_t col0 = 0; col0 < O; col0 += kColumnSumColumnBlock) {
    const int64_t width = std::min(kColumnSumColumnBlock, O - col0);
    T* s = sums + col0;
    sum_block_rows(s, a + col0, std::min(N, kColumnSumRowChunk), width, O);
    for (int64_t row0 = kColumnSumRowChunk; row0 < N; row0 += kColumnSumRowChunk) {
      sum_block_rows(partial, a + row0 * O + col0, std::min(kColumnSumRowChunk, N - row0), width,
                     O);
#pragma omp simd
      for (int64_t col = 0; col < width; ++col) s[col] = s[col] + partial[col];
    }
  }
}

}  // namespace GW_ISA
}  // namespace gradwatch
