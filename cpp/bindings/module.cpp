#include <pybind11/pybind11.h>

#include "bindings.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "gradwatch's compiled core (private: use the gradwatch package)";
  gradwatch::register_runtime(m);
  gradwatch::register_activations(m);
  gradwatch::register_dense(m);
  gradwatch::register_batchnorm(m);
  gradwatch::register_loss(m);
  gradwatch::register_init(m);
  gradwatch::register_optim(m);
  gradwatch::register_network(m);
}
