// Dense (fully connected) layers: y = x @ W + b, with W stored (fan_in, fan_out).
// N = batch, I = fan_in, O = fan_out. Arrays are row-major and contiguous.
// The GEMMs run in OpenBLAS (gradwatch::gemm), as blocks fixed by the shapes, each one
// single-threaded call on one of our OpenMP threads; the bias gradient is our own kernel and
// sums rows in a fixed order. So every result is bitwise the same for any thread count.
#pragma once

#include <cstdint>

namespace gradwatch {

// Throws std::invalid_argument unless 1 <= N, I, O and each fits OpenBLAS's 32-bit integers.
void check_dense_sizes(int64_t N, int64_t I, int64_t O);

// y = x @ W + b; b may be null (a layer without bias).
// y: (N, O)  x: (N, I)  W: (I, O)  b: (O) or null
template <typename T>
void dense_forward(T* y, const T* x, const T* W, const T* b, int64_t N, int64_t I, int64_t O);

// dx = dy @ W^T, dW = x^T @ dy, db = dy summed over the batch; all overwritten.
// dx may be null (the first layer needs no input gradient), and so may db (no bias); W is read
// only for dx.
// dx: (N, I) or null  dW: (I, O)  db: (O) or null  dy: (N, O)  x: (N, I)  W: (I, O)
template <typename T>
void dense_backward(T* dx, T* dW, T* db, const T* dy, const T* x, const T* W, int64_t N,
                    int64_t I, int64_t O);

}  // namespace gradwatch
