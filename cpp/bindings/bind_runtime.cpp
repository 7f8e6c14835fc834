#include "bindings.hpp"
#include "gradwatch/blas.hpp"
#include "gradwatch/cpu_dispatch.hpp"
#include "gradwatch/threads.hpp"

namespace gradwatch {

static std::string compiler_name() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown";
#endif
}

void register_runtime(py::module_& m) {
  m.attr("__version__") = GRADWATCH_VERSION;
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.def("simd_level", [] { return simd_level_name(simd_level()); });
  m.def("detected_simd_level", [] { return simd_level_name(detected_simd_level()); });
  m.def("compiler", &compiler_name);
  m.def("openmp_version", &openmp_version);
  m.def("blas_version", &blas_version);
  m.def("blas_core_name", &blas_core_name);
}

}  // namespace gradwatch
