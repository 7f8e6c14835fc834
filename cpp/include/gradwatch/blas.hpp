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

// Whether gemm<T> with these arguments would allocate heap memory inside OpenBLAS. Its
// small-matrix kernels for AVX-512 cores (SkylakeX, Cooperlake, SapphireRapids; chosen for
// M N K <= 100^3) copy the last columns of a non-transposed product into a malloc'd buffer when
// N mod 16 (float) or N mod 8 (double) is in [1, 8] resp. [1, 4] (kernel/x86_64/
// [sd]gemm_small_kernel_nn_skylakex.c, in OpenBLAS's column-major view); a training step must
// allocate nothing, so the network computes those products itself.
template <typename T>
bool gemm_allocates(bool transpose_a, bool transpose_b, int64_t M, int64_t N, int64_t K);

std::string blas_version();
std::string blas_core_name();

}  // namespace gradwatch
