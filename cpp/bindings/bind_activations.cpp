#include "bindings.hpp"

namespace gradwatch {

void register_activations(py::module_& m) { (void)m; }

}  // namespace gradwatch
