// One register_<concern> per binding file, and the helpers they share.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace gradwatch {

namespace py = pybind11;

void register_runtime(py::module_& m);
void register_activations(py::module_& m);
void register_dense(py::module_& m);
void register_batchnorm(py::module_& m);
void register_loss(py::module_& m);
void register_init(py::module_& m);
void register_optim(py::module_& m);
void register_network(py::module_& m);

// The bindings take exactly this array type with .noconvert(): no silent copies or casts.
template <typename T>
using Array = py::array_t<T, py::array::c_style>;

// Throws std::invalid_argument (ValueError in Python) unless `a` has the given rank.
template <typename T>
void require_ndim(const Array<T>& a, py::ssize_t ndim, const char* name) {
  if (a.ndim() != ndim) {
    throw std::invalid_argument(std::string(name) + " must have " + std::to_string(ndim) +
                                " dimensions, got " + std::to_string(a.ndim()));
  }
}

// Throws std::invalid_argument unless dimension `axis` of `a` equals `expected`.
template <typename T>
void require_dim(const Array<T>& a, py::ssize_t axis, py::ssize_t expected, const char* name) {
  if (a.shape(axis) != expected) {
    throw std::invalid_argument(std::string(name) + ": dimension " + std::to_string(axis) +
                                " must be " + std::to_string(expected) + ", got " +
                                std::to_string(a.shape(axis)));
  }
}

// A new C-contiguous array of the given shape, uninitialised.
template <typename T>
Array<T> empty_array(std::initializer_list<py::ssize_t> shape) {
  return Array<T>(std::vector<py::ssize_t>(shape));
}

}  // namespace gradwatch
