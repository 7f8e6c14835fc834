#include "bindings.hpp"

namespace gradwatch {

void register_init(py::module_& m) { (void)m; }

}  // namespace gradwatch
