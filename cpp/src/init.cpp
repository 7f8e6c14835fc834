// Weight initialisation kernels. One variant (baseline ISA) on purpose, like random.cpp: the
// weights for a seed must be the same bits on every CPU; the time goes into libm (log, sin, cos)
// and, for orthogonal, into a memory-friendly Householder QR.
#include "gradwatch/init.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gradwatch/random.hpp"
#include "gradwatch/threads.hpp"

namespace gradwatch {

namespace {

// Reflectors applied together to each trailing column (the column stays in L1, the panel in L2).
constexpr int64_t kPanelWidth = 32;
// Columns of Q built together (each reflector is read once per group).
constexpr int64_t kQColumnGroup = 16;

// sum_i a[i] * b[i] with four partial sums in a fixed order: the same bits wherever it runs.
double dot(const double* a, const double* b, int64_t n) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < n; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

// column <- H_k column, H_k = I - tau v v^T with v = (1, reflector[k+1 .. m-1]) on rows k.. m-1.
void apply_reflector(double* column, const double* reflector, double tau, int64_t k, int64_t m) {
  if (tau == 0.0) return;
  const double s = tau * (column[k] + dot(reflector + k + 1, column + k + 1, m - k - 1));
  column[k] -= s;
  for (int64_t i = k + 1; i < m; ++i) column[i] -= s * reflector[i];
}

// Turns column[k..m-1] into beta e_k (beta = R_kk) and stores v below row k (LAPACK dlarfg).
void make_reflector(double* column, double* tau, int64_t k, int64_t m) {
  const double alpha = column[k];
  const double below = dot(column + k + 1, column + k + 1, m - k - 1);
  if (below == 0.0) {
    *tau = 0.0;
    return;
  }
  const double beta = -std::copysign(std::sqrt(alpha * alpha + below), alpha);
  *tau = (beta - alpha) / beta;
  const double scale = 1.0 / (alpha - beta);
  for (int64_t i = k + 1; i < m; ++i) column[i] *= scale;
  column[k] = beta;
}

}  // namespace

void householder_qr(double* A, double* tau, int64_t m, int64_t n) {
  for (int64_t p = 0; p < n; p += kPanelWidth) {
    const int64_t panel_end = std::min(p + kPanelWidth, n);
    // The panel, left-looking: column j gets reflectors p..j-1, then its own.
    for (int64_t j = p; j < panel_end; ++j) {
      for (int64_t k = p; k < j; ++k) apply_reflector(A + j * m, A + k * m, tau[k], k, m);
      make_reflector(A + j * m, tau + j, j, m);
    }
    // The trailing columns: independent of each other, each sees p..panel_end-1 in order.
    const int64_t trailing = n - panel_end;
#pragma omp parallel for num_threads(threads_for(trailing * (m - p) * (panel_end - p))) \
    schedule(static)
    for (int64_t j = panel_end; j < n; ++j) {
      for (int64_t k = p; k < panel_end; ++k) apply_reflector(A + j * m, A + k * m, tau[k], k, m);
    }
  }
}

void householder_q_sign_fixed(double* Q, const double* A, const double* tau, int64_t m,
                              int64_t n) {
  // Column j of Q is H_0 H_1 ... H_j e_j (H_k with k > j leaves e_j alone).
  const int64_t groups = (n + kQColumnGroup - 1) / kQColumnGroup;
#pragma omp parallel for num_threads(threads_for(m * n * kQColumnGroup)) \
    schedule(dynamic, 1)
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t first = g * kQColumnGroup;
    const int64_t last = std::min(first + kQColumnGroup, n);
    for (int64_t j = first; j < last; ++j) {
      std::fill(Q + j * m, Q + (j + 1) * m, 0.0);
      Q[j * m + j] = 1.0;
    }
    for (int64_t k = last - 1; k >= 0; --k) {
      for (int64_t j = std::max(first, k); j < last; ++j) {
        apply_reflector(Q + j * m, A + k * m, tau[k], k, m);
      }
    }
    for (int64_t j = first; j < last; ++j) {
      if (A[j * m + j] < 0.0) {
        for (int64_t i = 0; i < m; ++i) Q[j * m + i] = -Q[j * m + i];
      }
    }
  }
}

template <typename T>
void init_normal(T* W, double std, uint64_t seed, int64_t I, int64_t O) {
  fill_normal(W, I * O, std, seed, RandomStream::normal_weights);
}

template <typename T>
void init_uniform(T* W, double limit, uint64_t seed, int64_t I, int64_t O) {
  fill_uniform(W, I * O, limit, seed, RandomStream::uniform_weights);
}

template <typename T>
void init_orthogonal(T* W, double gain, uint64_t seed, int64_t I, int64_t O) {
  const int64_t m = std::max(I, O), n = std::min(I, O);
  // A: column-major (m, n) = G (I >= O, transposed on the way) or G^T (I < O: G's own storage).
  std::vector<double> A(static_cast<size_t>(m * n)), Q(static_cast<size_t>(m * n));
  if (I >= O) {
    fill_normal(Q.data(), m * n, 1.0, seed, RandomStream::orthogonal_weights);
    for (int64_t i = 0; i < I; ++i) {
      for (int64_t j = 0; j < O; ++j) A[j * m + i] = Q[i * O + j];
    }
  } else {
    fill_normal(A.data(), m * n, 1.0, seed, RandomStream::orthogonal_weights);
  }
  std::vector<double> tau(static_cast<size_t>(n));
  householder_qr(A.data(), tau.data(), m, n);
  householder_q_sign_fixed(Q.data(), A.data(), tau.data(), m, n);
  // W = gain Q (I >= O) or gain Q^T (I < O); Q column-major (m, n) is Q^T row-major.
  if (I >= O) {
    for (int64_t i = 0; i < I; ++i) {
      for (int64_t j = 0; j < O; ++j) W[i * O + j] = static_cast<T>(gain * Q[j * m + i]);
    }
  } else {
    for (int64_t e = 0; e < I * O; ++e) W[e] = static_cast<T>(gain * Q[e]);
  }
}

template void init_normal<float>(float*, double, uint64_t, int64_t, int64_t);
template void init_normal<double>(double*, double, uint64_t, int64_t, int64_t);
template void init_uniform<float>(float*, double, uint64_t, int64_t, int64_t);
template void init_uniform<double>(double*, double, uint64_t, int64_t, int64_t);
template void init_orthogonal<float>(float*, double, uint64_t, int64_t, int64_t);
template void init_orthogonal<double>(double*, double, uint64_t, int64_t, int64_t);

}  // namespace gradwatch
