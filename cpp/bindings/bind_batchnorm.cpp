// _core.batchnorm_{forward,backward,inference}_{f32,f64}; gradwatch/batchnorm.py validates first,
// except for the sign of a variance, checked here (see require_nonnegative).
#include <string>
#include <vector>

#include "bindings.hpp"
#include "gradwatch/batchnorm.hpp"

namespace gradwatch {

// Checks a (F) parameter or statistic against x's feature count.
template <typename T>
static void require_features(const Array<T>& a, py::ssize_t F, const char* name) {
  require_ndim(a, 1, name);
  require_dim(a, 0, F, name);
}

// Raises ValueError at the first negative value of a variance, named as NumPy prints it; NaN
// passes (and propagates to the outputs of its feature, as NaN in x does). One loop over F
// values here costs a tenth of the NumPy reduction that would check it in Python.
// variance: (F)
template <typename T>
static void require_nonnegative(const Array<T>& variance, const char* name) {
  const T* values = variance.data();
  for (py::ssize_t f = 0; f < variance.shape(0); ++f) {
    if (values[f] < 0) {
      const std::string value = py::str(variance[py::int_(f)]);
      throw py::value_error(std::string(name) + " must be >= 0 (a variance), got " + value +
                            " at feature " + std::to_string(f));
    }
  }
}

// x, y: (N, F)  gamma, beta, mean, var: (F)
template <typename T>
static py::tuple forward(const Array<T>& x, const Array<T>& gamma, const Array<T>& beta,
                         double eps) {
  require_ndim(x, 2, "x");
  const py::ssize_t N = x.shape(0), F = x.shape(1);
  require_features(gamma, F, "gamma");
  require_features(beta, F, "beta");
  Array<T> y = empty_array<T>({N, F});
  Array<T> mean = empty_array<T>({F});
  Array<T> var = empty_array<T>({F});
  std::vector<T> inv_std(static_cast<size_t>(F));
  T* y_ptr = y.mutable_data();
  T* mean_ptr = mean.mutable_data();
  T* var_ptr = var.mutable_data();
  const T* x_ptr = x.data();
  const T* gamma_ptr = gamma.data();
  const T* beta_ptr = beta.data();
  {
    py::gil_scoped_release release;
    batchnorm_forward<T>(y_ptr, mean_ptr, var_ptr, inv_std.data(), x_ptr, gamma_ptr, beta_ptr,
                         N, F, eps);
  }
  return py::make_tuple(y, mean, var);
}

// grad_y, x, grad_x: (N, F)  gamma, mean, var, grad_gamma, grad_beta: (F)
template <typename T>
static py::tuple backward(const Array<T>& grad_y, const Array<T>& x, const Array<T>& gamma,
                          const Array<T>& mean, const Array<T>& var, double eps) {
  require_ndim(x, 2, "x");
  const py::ssize_t N = x.shape(0), F = x.shape(1);
  require_ndim(grad_y, 2, "grad_y");
  require_dim(grad_y, 0, N, "grad_y");
  require_dim(grad_y, 1, F, "grad_y");
  require_features(gamma, F, "gamma");
  require_features(mean, F, "batch_mean");
  require_features(var, F, "batch_var");
  require_nonnegative(var, "batch_var");
  Array<T> grad_x = empty_array<T>({N, F});
  Array<T> grad_gamma = empty_array<T>({F});
  Array<T> grad_beta = empty_array<T>({F});
  std::vector<T> inv_std(static_cast<size_t>(F));
  T* grad_x_ptr = grad_x.mutable_data();
  T* grad_gamma_ptr = grad_gamma.mutable_data();
  T* grad_beta_ptr = grad_beta.mutable_data();
  const T* grad_y_ptr = grad_y.data();
  const T* x_ptr = x.data();
  const T* gamma_ptr = gamma.data();
  const T* mean_ptr = mean.data();
  const T* var_ptr = var.data();
  {
    py::gil_scoped_release release;
    batchnorm_inv_std<T>(inv_std.data(), var_ptr, F, eps);
    batchnorm_backward<T>(grad_x_ptr, grad_gamma_ptr, grad_beta_ptr, grad_y_ptr, x_ptr, mean_ptr,
                          inv_std.data(), gamma_ptr, N, F);
  }
  return py::make_tuple(grad_x, grad_gamma, grad_beta);
}

// x, y: (N, F)  gamma, beta, running_mean, running_var: (F)
template <typename T>
static Array<T> inference(const Array<T>& x, const Array<T>& gamma, const Array<T>& beta,
                          const Array<T>& running_mean, const Array<T>& running_var, double eps) {
  require_ndim(x, 2, "x");
  const py::ssize_t N = x.shape(0), F = x.shape(1);
  require_features(gamma, F, "gamma");
  require_features(beta, F, "beta");
  require_features(running_mean, F, "running_mean");
  require_features(running_var, F, "running_var");
  require_nonnegative(running_var, "running_var");
  Array<T> y = empty_array<T>({N, F});
  T* y_ptr = y.mutable_data();
  const T* x_ptr = x.data();
  const T* gamma_ptr = gamma.data();
  const T* beta_ptr = beta.data();
  const T* mean_ptr = running_mean.data();
  const T* var_ptr = running_var.data();
  {
    py::gil_scoped_release release;
    batchnorm_inference<T>(y_ptr, x_ptr, mean_ptr, var_ptr, gamma_ptr, beta_ptr, N, F, eps);
  }
  return y;
}

template <typename T>
static void register_dtype(py::module_& m, const std::string& suffix) {
  m.def(("batchnorm_forward_" + suffix).c_str(), &forward<T>, py::arg("x").noconvert(),
        py::arg("gamma").noconvert(), py::arg("beta").noconvert(), py::arg("eps"));
  m.def(("batchnorm_backward_" + suffix).c_str(), &backward<T>, py::arg("grad_y").noconvert(),
        py::arg("x").noconvert(), py::arg("gamma").noconvert(),
        py::arg("batch_mean").noconvert(), py::arg("batch_var").noconvert(), py::arg("eps"));
  m.def(("batchnorm_inference_" + suffix).c_str(), &inference<T>, py::arg("x").noconvert(),
        py::arg("gamma").noconvert(), py::arg("beta").noconvert(),
        py::arg("running_mean").noconvert(), py::arg("running_var").noconvert(),
        py::arg("eps"));
}

void register_batchnorm(py::module_& m) {
  register_dtype<float>(m, "f32");
  register_dtype<double>(m, "f64");
}

}  // namespace gradwatch
