#include <cmath>
#include <limits>

#include "bindings.hpp"
#include "gradwatch/init.hpp"
#include "gradwatch/random.hpp"

namespace gradwatch {

namespace {

// fan_in, fan_out >= 1 and an (I, O) float64 array plus the orthogonal scratch stays addressable.
void check_fans(int64_t fan_in, int64_t fan_out) {
  if (fan_in < 1) throw std::invalid_argument("fan_in must be >= 1, got " + std::to_string(fan_in));
  if (fan_out < 1) {
    throw std::invalid_argument("fan_out must be >= 1, got " + std::to_string(fan_out));
  }
  constexpr int64_t kMaxElements = std::numeric_limits<int64_t>::max() / 64;
  if (fan_in > kMaxElements / fan_out) {
    throw std::invalid_argument("fan_in * fan_out = " + std::to_string(fan_in) + " * " +
                                std::to_string(fan_out) + " is too large");
  }
}

void check_scale(double value, const char* name) {
  if (!(std::isfinite(value) && value >= 0.0)) {
    throw std::invalid_argument(std::string(name) + " must be finite and >= 0");
  }
}

template <typename T>
using Init = void (*)(T*, double, uint64_t, int64_t, int64_t);

// Binds `name` as (fan_in, fan_out, scale, seed) -> new (fan_in, fan_out) array.
template <typename T>
void def_init(py::module_& m, const char* name, Init<T> kernel, const char* scale_name) {
  m.def(
      name,
      [kernel, scale_name](int64_t fan_in, int64_t fan_out, double scale, uint64_t seed) {
        check_fans(fan_in, fan_out);
        check_scale(scale, scale_name);
        Array<T> W = empty_array<T>({fan_in, fan_out});
        T* w = W.mutable_data();
        {
          py::gil_scoped_release release;
          kernel(w, scale, seed, fan_in, fan_out);
        }
        return W;
      },
      py::arg("fan_in"), py::arg("fan_out"), py::arg(scale_name), py::arg("seed"));
}

}  // namespace

void register_init(py::module_& m) {
  def_init<float>(m, "init_normal_f32", &init_normal<float>, "std");
  def_init<double>(m, "init_normal_f64", &init_normal<double>, "std");
  def_init<float>(m, "init_uniform_f32", &init_uniform<float>, "limit");
  def_init<double>(m, "init_uniform_f64", &init_uniform<double>, "limit");
  def_init<float>(m, "init_orthogonal_f32", &init_orthogonal<float>, "gain");
  def_init<double>(m, "init_orthogonal_f64", &init_orthogonal<double>, "gain");

  // Philox4x32-10 blocks, for the known-answer tests. counters: (N, 4)  key: (2)  -> (N, 4)
  m.def(
      "philox4x32_10",
      [](const Array<uint32_t>& counters, const Array<uint32_t>& key) {
        require_ndim(counters, 2, "counters");
        require_dim(counters, 1, 4, "counters");
        require_ndim(key, 1, "key");
        require_dim(key, 0, 2, "key");
        const py::ssize_t blocks = counters.shape(0);
        Array<uint32_t> out = empty_array<uint32_t>({blocks, 4});
        const uint32_t* c = counters.data();
        const std::array<uint32_t, 2> k = {key.data()[0], key.data()[1]};
        uint32_t* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          for (py::ssize_t b = 0; b < blocks; ++b) {
            const std::array<uint32_t, 4> x =
                philox4x32_10({c[4 * b], c[4 * b + 1], c[4 * b + 2], c[4 * b + 3]}, k);
            for (int w = 0; w < 4; ++w) o[4 * b + w] = x[w];
          }
        }
        return out;
      },
      py::arg("counters").noconvert(), py::arg("key").noconvert());
}

}  // namespace gradwatch
