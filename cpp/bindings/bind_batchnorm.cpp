#include "bindings.hpp"

namespace gradwatch {

void register_batchnorm(py::module_& m) { (void)m; }

}  // namespace gradwatch
