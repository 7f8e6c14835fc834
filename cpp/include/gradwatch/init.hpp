// Weight initialisation: W for y = x @ W + b, filled from the counter-based streams of
// gradwatch/random.hpp, so the same seed gives the same W on any thread count and SIMD level.
// Dims: I = fan_in, O = fan_out. W: (I, O) row-major; element (i, j) is stream value i * O + j.
// The float32 result is the float64 result rounded once.
#pragma once

#include <cstdint>

namespace gradwatch {

// W ~ N(0, std^2), stream normal_weights.
// W: (I, O)
template <typename T>
void init_normal(T* W, double std, uint64_t seed, int64_t I, int64_t O);

// W ~ U(-limit, limit), stream uniform_weights.
// W: (I, O)
template <typename T>
void init_uniform(T* W, double limit, uint64_t seed, int64_t I, int64_t O);

// W = gain * Q, Q Haar-distributed (Saxe et al. 2014): G ~ N(0, 1) of shape (I, O) from stream
// orthogonal_weights; A = G if I >= O, else G^T; A = Q R by Householder QR in double; the
// columns of Q are multiplied by sign(R_jj) (+1 when R_jj = 0), which makes Q Haar (Mezzadri
// 2007). Result: W^T W = gain^2 I_O when I >= O, W W^T = gain^2 I_I otherwise.
// Cost O(I O min(I, O)) flops, 2 I O doubles of scratch.
// W: (I, O)
template <typename T>
void init_orthogonal(T* W, double gain, uint64_t seed, int64_t I, int64_t O);

// Householder QR of a column-major (m, n) matrix, m >= n, in place (LAPACK dgeqr2 conventions):
// on return R is on and above the diagonal, the reflector v_j (v_j[j] = 1 implicit) below it,
// H_j = I - tau_j v_j v_j^T and A = H_0 ... H_{n-1} R. Every column sees the reflectors in the
// same order whatever the thread count, so the result is bitwise reproducible.
// A: (n columns of m)  tau: (n)
void householder_qr(double* A, double* tau, int64_t m, int64_t n);

// The thin Q (column-major (m, n)) of householder_qr's output, each column j multiplied by
// sign(R_jj) (+1 when R_jj = 0).
// Q: (n columns of m)  A: (n columns of m)  tau: (n)
void householder_q_sign_fixed(double* Q, const double* A, const double* tau, int64_t m, int64_t n);

}  // namespace gradwatch
