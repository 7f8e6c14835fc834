// GEMM from OpenBLAS (the scipy-openblas32 build), for float and double, row-major.
#pragma once

#include <cstdint>
#include <string>

namespace gradwatch {

// C = alpha * op(A) @ op(B) + beta * C, all row-major.
// op(A): (M, K)  op(B): (K, N)  C: (M, N); lda/ldb/ldc are the row strides of A, B, C as stored.
// Sizes must fit OpenBLAS's 32-bit integers; check_blas_size throws otherwise.
template <typename T>
void gemm(bool transpose_a, bool transpose_b, int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Throws std::invalid_argument when a dimension does not fit a 32-bit BLAS integer.
void check_blas_size(int64_t value, const char* what);

std::string blas_version();
std::string blas_core_name();

}  // namespace gradwatch
