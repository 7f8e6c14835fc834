#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "gradwatch/activations.hpp"

namespace gradwatch {

// A new array of the same shape as `like` (any rank, 0-d included), uninitialised.
template <typename T>
static Array<T> empty_like(const Array<T>& like) {
  return Array<T>(std::vector<py::ssize_t>(like.shape(), like.shape() + like.ndim()));
}

static std::string shape_string(const py::array& a) {
  std::string text = "(";
  for (py::ssize_t axis = 0; axis < a.ndim(); ++axis) {
    if (axis > 0) text += ", ";
    text += std::to_string(a.shape(axis));
  }
  return text + (a.ndim() == 1 ? ",)" : ")");
}

template <typename T>
static void require_same_shape(const Array<T>& a, const char* a_name, const Array<T>& b,
                               const char* b_name) {
  const bool same = a.ndim() == b.ndim() && std::equal(a.shape(), a.shape() + a.ndim(), b.shape());
  if (!same) {
    throw std::invalid_argument(std::string(a_name) + " and " + b_name +
                                " must have the same shape, got " + a_name + " " +
                                shape_string(a) + " and " + b_name + " " + shape_string(b));
  }
}

template <typename T>
static Array<T> forward(const Array<T>& x, Activation kind, double alpha) {
  Array<T> y = empty_like(x);
  const T* x_data = x.data();
  T* y_data = y.mutable_data();
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    activation_forward(y_data, x_data, n, kind, alpha);
  }
  return y;
}

template <typename T>
static Array<T> derivative(const Array<T>& x, Activation kind, double alpha) {
  Array<T> dydx = empty_like(x);
  const T* x_data = x.data();
  T* dydx_data = dydx.mutable_data();
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    activation_derivative(dydx_data, x_data, n, kind, alpha);
  }
  return dydx;
}

template <typename T>
static Array<T> backward(const Array<T>& grad_y, const Array<T>& x, Activation kind,
                         double alpha) {
  require_same_shape(grad_y, "grad_y", x, "x");
  Array<T> grad_x = empty_like(x);
  const T* grad_y_data = grad_y.data();
  const T* x_data = x.data();
  T* grad_x_data = grad_x.mutable_data();
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    activation_backward(grad_x_data, grad_y_data, x_data, n, kind, alpha);
  }
  return grad_x;
}

template <typename T>
static Array<T> backward_from_output(const Array<T>& grad_y, const Array<T>& y, Activation kind,
                                     double alpha) {
  require_same_shape(grad_y, "grad_y", y, "y");
  Array<T> grad_x = empty_like(y);
  const T* grad_y_data = grad_y.data();
  const T* y_data = y.data();
  T* grad_x_data = grad_x.mutable_data();
  const int64_t n = y.size();
  {
    py::gil_scoped_release release;
    activation_backward_from_output(grad_x_data, grad_y_data, y_data, n, kind, alpha);
  }
  return grad_x;
}

template <typename T>
static Array<T> vecmath(const Array<T>& x, VecmathFunction function) {
  Array<T> y = empty_like(x);
  const T* x_data = x.data();
  T* y_data = y.mutable_data();
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    vecmath_evaluate(y_data, x_data, n, function);
  }
  return y;
}

template <typename T>
static void register_dtype(py::module_& m, const std::string& suffix) {
  m.def(("activation_forward" + suffix).c_str(), &forward<T>, py::arg("x").noconvert(),
        py::arg("kind"), py::arg("alpha"));
  m.def(("activation_derivative" + suffix).c_str(), &derivative<T>, py::arg("x").noconvert(),
        py::arg("kind"), py::arg("alpha"));
  m.def(("activation_backward" + suffix).c_str(), &backward<T>, py::arg("grad_y").noconvert(),
        py::arg("x").noconvert(), py::arg("kind"), py::arg("alpha"));
  m.def(("activation_backward_from_output" + suffix).c_str(), &backward_from_output<T>,
        py::arg("grad_y").noconvert(), py::arg("y").noconvert(), py::arg("kind"),
        py::arg("alpha"));
  m.def(("vecmath" + suffix).c_str(), &vecmath<T>, py::arg("x").noconvert(),
        py::arg("function"));
}

void register_activations(py::module_& m) {
  py::enum_<Activation>(m, "Activation")
      .value("identity", Activation::identity)
      .value("sigmoid", Activation::sigmoid)
      .value("tanh", Activation::tanh)
      .value("relu", Activation::relu)
      .value("leaky_relu", Activation::leaky_relu)
      .value("elu", Activation::elu)
      .value("selu", Activation::selu)
      .value("gelu", Activation::gelu)
      .value("gelu_tanh", Activation::gelu_tanh)
      .value("silu", Activation::silu)
      .value("softplus", Activation::softplus);
  py::enum_<VecmathFunction>(m, "VecmathFunction")
      .value("exp", VecmathFunction::exp)
      .value("expm1", VecmathFunction::expm1)
      .value("log", VecmathFunction::log)
      .value("log1p", VecmathFunction::log1p)
      .value("log1p_unit", VecmathFunction::log1p_unit)
      .value("tanh", VecmathFunction::tanh)
      .value("erf", VecmathFunction::erf)
      .value("erfc", VecmathFunction::erfc);
  register_dtype<float>(m, "_f32");
  register_dtype<double>(m, "_f64");
}

}  // namespace gradwatch
