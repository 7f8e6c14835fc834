#include <pybind11/stl.h>

#include <chrono>
#include <optional>
#include <tuple>
#include <vector>

#include "bindings.hpp"
#include "gradwatch/blas.hpp"
#include "gradwatch/dense.hpp"

namespace gradwatch {

// x: (N, I)  w: (I, O)  b: (O) or None  ->  y: (N, O)
template <typename T>
static Array<T> forward(const Array<T>& x, const Array<T>& w, const std::optional<Array<T>>& b) {
  require_ndim(x, 2, "x");
  require_ndim(w, 2, "w");
  const int64_t N = x.shape(0), I = x.shape(1), O = w.shape(1);
  require_dim(w, 0, I, "w");
  if (b) {
    require_ndim(*b, 1, "b");
    require_dim(*b, 0, O, "b");
  }
  check_dense_sizes(N, I, O);
  Array<T> y = empty_array<T>({N, O});
  T* y_data = y.mutable_data();
  const T* x_data = x.data();
  const T* w_data = w.data();
  const T* b_data = b ? b->data() : nullptr;
  {
    py::gil_scoped_release release;
    dense_forward<T>(y_data, x_data, w_data, b_data, N, I, O);
  }
  return y;
}

// grad_y: (N, O)  x: (N, I)  w: (I, O)  ->  grad_x: (N, I), grad_w: (I, O), grad_b: (O)
template <typename T>
static py::tuple backward(const Array<T>& grad_y, const Array<T>& x, const Array<T>& w) {
  require_ndim(grad_y, 2, "grad_y");
  require_ndim(x, 2, "x");
  require_ndim(w, 2, "w");
  const int64_t N = x.shape(0), I = x.shape(1), O = w.shape(1);
  require_dim(w, 0, I, "w");
  require_dim(grad_y, 0, N, "grad_y");
  require_dim(grad_y, 1, O, "grad_y");
  check_dense_sizes(N, I, O);
  Array<T> grad_x = empty_array<T>({N, I});
  Array<T> grad_w = empty_array<T>({I, O});
  Array<T> grad_b = empty_array<T>({O});
  T* gx = grad_x.mutable_data();
  T* gw = grad_w.mutable_data();
  T* gb = grad_b.mutable_data();
  const T* dy = grad_y.data();
  const T* x_data = x.data();
  const T* w_data = w.data();
  {
    py::gil_scoped_release release;
    dense_backward<T>(gx, gw, gb, dy, x_data, w_data, N, I, O);
  }
  return py::make_tuple(grad_x, grad_w, grad_b);
}

// The bare GEMM the dense layer calls, for the benchmark: op(a) @ op(b) into a new array.
// op(a): (M, K)  op(b): (K, N)  ->  (M, N)
template <typename T>
static Array<T> bare_gemm(const Array<T>& a, const Array<T>& b, bool transpose_a,
                          bool transpose_b) {
  require_ndim(a, 2, "a");
  require_ndim(b, 2, "b");
  const int64_t M = a.shape(transpose_a ? 1 : 0), K = a.shape(transpose_a ? 0 : 1);
  const int64_t N = b.shape(transpose_b ? 0 : 1);
  require_dim(b, transpose_b ? 1 : 0, K, "b");
  check_blas_size(M, "M");
  check_blas_size(N, "N");
  check_blas_size(K, "K");
  if (M < 1 || N < 1 || K < 1) throw std::invalid_argument("gemm sizes must be >= 1");
  Array<T> c = empty_array<T>({M, N});
  T* c_data = c.mutable_data();
  const T* a_data = a.data();
  const T* b_data = b.data();
  const int64_t lda = a.shape(1), ldb = b.shape(1);
  {
    py::gil_scoped_release release;
    gemm<T>(transpose_a, transpose_b, M, N, K, T(1), a_data, lda, b_data, ldb, T(0), c_data, N);
  }
  return c;
}

// Seconds per pass of a GEMM sequence, timed inside the core (no Python between GEMMs), for the
// training benchmark's split of a step into GEMM / own kernels / overhead. Each shape is
// (M, N, K, transpose_a, transpose_b); operands are allocated once, filled with small values.
template <typename T>
static double time_gemm_sequence(const std::vector<std::tuple<int64_t, int64_t, int64_t, bool, bool>>& shapes,
                                 int64_t repeats) {
  if (repeats < 1) throw std::invalid_argument("repeats must be >= 1");
  std::vector<std::vector<T>> a, b, c;
  for (const auto& [M, N, K, ta, tb] : shapes) {
    check_dense_sizes(M, N, K);
    a.emplace_back(static_cast<size_t>(M * K), T(0.01));
    b.emplace_back(static_cast<size_t>(K * N), T(0.01));
    c.emplace_back(static_cast<size_t>(M * N), T(0));
  }
  py::gil_scoped_release release;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < repeats; ++r) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      const auto& [M, N, K, ta, tb] = shapes[i];
      gemm<T>(ta, tb, M, N, K, T(1), a[i].data(), ta ? M : K, b[i].data(), tb ? K : N, T(0),
              c[i].data(), N);
    }
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / static_cast<double>(repeats);
}

template <typename T>
static void register_dtype(py::module_& m, const std::string& suffix) {
  m.def(("dense_forward" + suffix).c_str(), &forward<T>, py::arg("x").noconvert(),
        py::arg("w").noconvert(), py::arg("b").noconvert().none(true));
  m.def(("dense_backward" + suffix).c_str(), &backward<T>, py::arg("grad_y").noconvert(),
        py::arg("x").noconvert(), py::arg("w").noconvert());
  m.def(("gemm" + suffix).c_str(), &bare_gemm<T>, py::arg("a").noconvert(),
        py::arg("b").noconvert(), py::arg("transpose_a") = false, py::arg("transpose_b") = false);
  m.def(("time_gemm_sequence" + suffix).c_str(), &time_gemm_sequence<T>, py::arg("shapes"),
        py::arg("repeats"));
}

void register_dense(py::module_& m) {
  register_dtype<float>(m, "_f32");
  register_dtype<double>(m, "_f64");
}

}  // namespace gradwatch
