#include <vector>

#include "bindings.hpp"
#include "gradwatch/loss.hpp"

namespace gradwatch {

// A new uninitialised array with the shape of `like`.
template <typename T>
static Array<T> empty_like(const Array<T>& like) {
  return Array<T>(std::vector<py::ssize_t>(like.shape(), like.shape() + like.ndim()));
}

template <typename T, typename U>
static void require_same_shape(const Array<T>& a, const char* a_name, const Array<U>& b,
                               const char* b_name) {
  const std::vector<py::ssize_t> a_shape(a.shape(), a.shape() + a.ndim());
  const std::vector<py::ssize_t> b_shape(b.shape(), b.shape() + b.ndim());
  if (a_shape != b_shape) {
    throw std::invalid_argument(std::string(a_name) + " and " + b_name +
                                " must have the same shape");
  }
}

// x: (N, C) -> (N, C)
template <typename T, void (*kernel)(T*, const T*, int64_t, int64_t)>
static Array<T> rowwise(const Array<T>& x) {
  require_ndim(x, 2, "logits");
  auto y = empty_like(x);
  const T* x_ptr = x.data();
  T* y_ptr = y.mutable_data();
  const int64_t N = x.shape(0), C = x.shape(1);
  {
    py::gil_scoped_release release;
    kernel(y_ptr, x_ptr, N, C);
  }
  return y;
}

// logits: (N, C)  labels: (N) -> (loss, dlogits (N, C))
template <typename T>
static py::tuple cross_entropy_indices(const Array<T>& logits, const Array<int64_t>& labels) {
  require_ndim(logits, 2, "logits");
  require_ndim(labels, 1, "labels");
  require_dim(labels, 0, logits.shape(0), "labels");
  auto dlogits = empty_like(logits);
  const T* logits_ptr = logits.data();
  const int64_t* labels_ptr = labels.data();
  T* dlogits_ptr = dlogits.mutable_data();
  const int64_t N = logits.shape(0), C = logits.shape(1);
  double loss;
  {
    py::gil_scoped_release release;
    loss = softmax_cross_entropy(dlogits_ptr, logits_ptr, labels_ptr, N, C);
  }
  return py::make_tuple(loss, dlogits);
}

// logits, probs: (N, C) -> (loss, dlogits (N, C))
template <typename T>
static py::tuple cross_entropy_probs(const Array<T>& logits, const Array<T>& probs) {
  require_ndim(logits, 2, "logits");
  require_same_shape(logits, "logits", probs, "labels");
  auto dlogits = empty_like(logits);
  const T* logits_ptr = logits.data();
  const T* probs_ptr = probs.data();
  T* dlogits_ptr = dlogits.mutable_data();
  const int64_t N = logits.shape(0), C = logits.shape(1);
  double loss;
  {
    py::gil_scoped_release release;
    loss = softmax_cross_entropy(dlogits_ptr, logits_ptr, probs_ptr, N, C);
  }
  return py::make_tuple(loss, dlogits);
}

// x, target: any shape E -> (loss, dx (same shape))
template <typename T, double (*kernel)(T*, const T*, const T*, int64_t)>
static py::tuple elementwise_loss(const Array<T>& x, const Array<T>& target) {
  require_same_shape(x, "input", target, "target");
  auto dx = empty_like(x);
  const T* x_ptr = x.data();
  const T* target_ptr = target.data();
  T* dx_ptr = dx.mutable_data();
  const int64_t E = x.size();
  double loss;
  {
    py::gil_scoped_release release;
    loss = kernel(dx_ptr, x_ptr, target_ptr, E);
  }
  return py::make_tuple(loss, dx);
}

template <typename T>
static void register_dtype(py::module_& m) {
  m.def("softmax", &rowwise<T, &softmax<T>>, py::arg("logits").noconvert());
  m.def("log_softmax", &rowwise<T, &log_softmax<T>>, py::arg("logits").noconvert());
  m.def("softmax_cross_entropy", &cross_entropy_indices<T>, py::arg("logits").noconvert(),
        py::arg("labels").noconvert());
  m.def("softmax_cross_entropy", &cross_entropy_probs<T>, py::arg("logits").noconvert(),
        py::arg("labels").noconvert());
  m.def("binary_cross_entropy_with_logits",
        &elementwise_loss<T, &binary_cross_entropy_with_logits<T>>,
        py::arg("logits").noconvert(), py::arg("targets").noconvert());
  m.def("mse", &elementwise_loss<T, &mse<T>>, py::arg("pred").noconvert(),
        py::arg("target").noconvert());
}

// One overload per dtype (float32, float64); softmax_cross_entropy also per kind of labels
// (int64 class indices or probabilities of the logits' dtype).
void register_loss(py::module_& m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace gradwatch
