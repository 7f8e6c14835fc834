#include "gradwatch/blas.hpp"

#include <cblas.h>

#include <algorithm>
#include <cctype>
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

// The cores whose DYNAMIC_ARCH kernels include the allocating small-matrix GEMMs.
static bool core_has_small_matrix_kernels() {
  static const bool has = [] {
    std::string core = blas_core_name();
    std::transform(core.begin(), core.end(), core.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return core == "skylakex" || core == "cooperlake" || core == "sapphirerapids";
  }();
  return has;
}

template <typename T>
bool gemm_allocates(bool transpose_a, bool transpose_b, int64_t M, int64_t N, int64_t K) {
  constexpr int64_t kLanes = 64 / static_cast<int64_t>(sizeof(T));  // of one AVX-512 vector
  constexpr double kSmallMatrixWork = 100.0 * 100.0 * 100.0;
  if (transpose_a || transpose_b || !core_has_small_matrix_kernels()) return false;
  if (static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K) > kSmallMatrixWork) {
    return false;
  }
  const int64_t rest = N % kLanes;  // the columns after the kernel's full vectors
  return rest >= 1 && rest <= kLanes / 2;
}

template bool gemm_allocates<float>(bool, bool, int64_t, int64_t, int64_t);
template bool gemm_allocates<double>(bool, bool, int64_t, int64_t, int64_t);

std::string blas_version() {
  std::string config = scipy_openblas_get_config();
  return config;
}

std::string blas_core_name() { return scipy_openblas_get_corename(); }

}  // namespace gradwatch
