#include "gradwatch/blas.hpp"

#include <cblas.h>

#include <limits>
#include <stdexcept>

namespace gradwatch {

void check_blas_size(int64_t value, const char* what) {
  if (value < 0 || value > std::numeric_limits<int>::max()) {
    throw std::invalid_argument(std::string(what) + " does not fit OpenBLAS's 32-bit integers");
  }
}

template <>
void gemm<float>(bool transpose_a, bool transpose_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
                    transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(M),
                    static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B,
                    static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

template <>
void gemm<double>(bool transpose_a, bool transpose_b, int64_t M, int64_t N, int64_t K, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
                    transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(M),
                    static_cast<int>(N), static_cast<int>(K), alpha, A, static_cast<int>(lda), B,
                    static_cast<int>(ldb), beta, C, static_cast<int>(ldc));
}

std::string blas_version() {
  std::string config = scipy_openblas_get_config();
  return config;
}

std::string blas_core_name() { return scipy_openblas_get_corename(); }

}  // namespace gradwatch
