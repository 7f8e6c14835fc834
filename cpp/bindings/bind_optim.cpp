#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "gradwatch/optim.hpp"

namespace gradwatch {

namespace {

const char* kind_name(OptimizerKind kind) {
  switch (kind) {
    case OptimizerKind::sgd:
      return "sgd";
    case OptimizerKind::adagrad:
      return "adagrad";
    case OptimizerKind::rmsprop:
      return "rmsprop";
    case OptimizerKind::adam:
      return "adam";
    case OptimizerKind::adamw:
      return "adamw";
    case OptimizerKind::lars:
      return "lars";
  }
  return "unknown";
}

OptimizerKind kind_from_name(const std::string& name) {
  for (OptimizerKind kind : {OptimizerKind::sgd, OptimizerKind::adagrad, OptimizerKind::rmsprop,
                             OptimizerKind::adam, OptimizerKind::adamw, OptimizerKind::lars}) {
    if (name == kind_name(kind)) return kind;
  }
  throw std::invalid_argument("unknown optimizer kind '" + name +
                              "'; valid: sgd, adagrad, rmsprop, adam, adamw, lars");
}

const char* role_text(ParamRole role) {
  switch (role) {
    case ParamRole::weight:
      return "weight";
    case ParamRole::bias:
      return "bias";
    case ParamRole::bn_gamma:
      return "bn_gamma";
    case ParamRole::bn_beta:
      return "bn_beta";
  }
  return "unknown";
}

std::vector<ParamRole> roles_from_names(const std::vector<std::string>& names) {
  std::vector<ParamRole> roles;
  roles.reserve(names.size());
  for (const std::string& name : names) {
    bool found = false;
    for (ParamRole role :
         {ParamRole::weight, ParamRole::bias, ParamRole::bn_gamma, ParamRole::bn_beta}) {
      if (name == role_text(role)) {
        roles.push_back(role);
        found = true;
      }
    }
    if (!found) {
      throw std::invalid_argument("unknown parameter role '" + name +
                                  "'; valid: weight, bias, bn_gamma, bn_beta");
    }
  }
  return roles;
}

// The options as a dict of plain Python values (kind and lars_mode as strings).
py::dict options_to_dict(const OptimizerOptions& o) {
  py::dict d;
  d["kind"] = kind_name(o.kind);
  d["lr"] = o.lr;
  d["momentum"] = o.momentum;
  d["dampening"] = o.dampening;
  d["weight_decay"] = o.weight_decay;
  d["nesterov"] = o.nesterov;
  d["beta1"] = o.beta1;
  d["beta2"] = o.beta2;
  d["eps"] = o.eps;
  d["alpha"] = o.alpha;
  d["centered"] = o.centered;
  d["lr_decay"] = o.lr_decay;
  d["initial_accumulator_value"] = o.initial_accumulator_value;
  d["trust_coefficient"] = o.trust_coefficient;
  d["lars_mode"] = o.lars_mode == LarsMode::scale ? "scale" : "clip";
  d["lars_exclude_bias_and_bn"] = o.lars_exclude_bias_and_bn;
  return d;
}

// Options from such a dict; absent keys keep PyTorch's defaults, unknown keys are an error.
// Validated (std::invalid_argument naming the field).
OptimizerOptions options_from_dict(const py::dict& d) {
  OptimizerOptions o;
  for (const auto& item : d) {
    const std::string key = py::cast<std::string>(item.first);
    const py::handle value = item.second;
    if (key == "kind") {
      o.kind = kind_from_name(py::cast<std::string>(value));
    } else if (key == "lars_mode") {
      const std::string mode = py::cast<std::string>(value);
      if (mode != "scale" && mode != "clip") {
        throw std::invalid_argument("unknown lars_mode '" + mode + "'; valid: scale, clip");
      }
      o.lars_mode = mode == "scale" ? LarsMode::scale : LarsMode::clip;
    } else if (key == "nesterov") {
      o.nesterov = py::cast<bool>(value);
    } else if (key == "centered") {
      o.centered = py::cast<bool>(value);
    } else if (key == "lars_exclude_bias_and_bn") {
      o.lars_exclude_bias_and_bn = py::cast<bool>(value);
    } else {
      double* field = key == "lr"                          ? &o.lr
                      : key == "momentum"                  ? &o.momentum
                      : key == "dampening"                 ? &o.dampening
                      : key == "weight_decay"              ? &o.weight_decay
                      : key == "beta1"                     ? &o.beta1
                      : key == "beta2"                     ? &o.beta2
                      : key == "eps"                       ? &o.eps
                      : key == "alpha"                     ? &o.alpha
                      : key == "lr_decay"                  ? &o.lr_decay
                      : key == "initial_accumulator_value" ? &o.initial_accumulator_value
                      : key == "trust_coefficient"         ? &o.trust_coefficient
                                                           : nullptr;
      if (field == nullptr) throw std::invalid_argument("unknown optimizer option '" + key + "'");
      *field = py::cast<double>(value);
    }
  }
  validate_optimizer_options(o);
  return o;
}

// params, grads: P arrays with params[p].size() == grads[p].size(); roles: P names.
template <typename T>
void step(Optimizer<T>& optimizer, std::vector<Array<T>>& params,
          const std::vector<Array<T>>& grads, const std::vector<std::string>& role_names,
          double grad_scale, double clip_value) {
  const size_t count = params.size();
  if (grads.size() != count || role_names.size() != count) {
    throw std::invalid_argument("params, grads and roles must have the same length, got " +
                                std::to_string(count) + ", " + std::to_string(grads.size()) +
                                " and " + std::to_string(role_names.size()));
  }
  const std::vector<ParamRole> roles = roles_from_names(role_names);
  std::vector<T*> param_ptrs(count);
  std::vector<const T*> grad_ptrs(count);
  std::vector<int64_t> sizes(count);
  for (size_t p = 0; p < count; ++p) {
    if (grads[p].size() != params[p].size()) {
      throw std::invalid_argument("grads[" + std::to_string(p) + "] has " +
                                  std::to_string(grads[p].size()) + " elements, params[" +
                                  std::to_string(p) + "] has " + std::to_string(params[p].size()));
    }
    param_ptrs[p] = params[p].mutable_data();  // throws for a read-only array
    grad_ptrs[p] = grads[p].data();
    sizes[p] = static_cast<int64_t>(params[p].size());
  }
  py::gil_scoped_release release;
  optimizer.step(param_ptrs.data(), grad_ptrs.data(), sizes.data(), roles.data(),
                 static_cast<int64_t>(count), static_cast<T>(grad_scale),
                 static_cast<T>(clip_value));
}

// {"step": int, "sizes": [int], "roles": [str], "buffers": {name: [ndarray copy per tensor]}}
template <typename T>
py::dict state(const Optimizer<T>& optimizer) {
  py::dict d;
  d["step"] = optimizer.step_count();
  py::list sizes, roles;
  for (int64_t p = 0; p < optimizer.tensor_count(); ++p) {
    sizes.append(optimizer.sizes()[static_cast<size_t>(p)]);
    roles.append(role_text(optimizer.roles()[static_cast<size_t>(p)]));
  }
  d["sizes"] = sizes;
  d["roles"] = roles;
  py::dict buffers;
  for (size_t b = 0; b < optimizer.buffer_names().size(); ++b) {
    py::list per_tensor;
    for (int64_t p = 0; p < optimizer.tensor_count(); ++p) {
      const py::ssize_t size = static_cast<py::ssize_t>(optimizer.sizes()[static_cast<size_t>(p)]);
      Array<T> copy = empty_array<T>({size});
      const T* source = optimizer.buffer(static_cast<int64_t>(b), p);
      std::copy(source, source + size, copy.mutable_data());
      per_tensor.append(copy);
    }
    buffers[py::str(optimizer.buffer_names()[b])] = per_tensor;
  }
  d["buffers"] = buffers;
  return d;
}

// buffers: {name: [P arrays, buffers[name][p].size() == sizes[p]]} with exactly the names the
// options need.
template <typename T>
void load_state(Optimizer<T>& optimizer, const py::dict& options_dict, int64_t step_count,
                const std::vector<int64_t>& sizes, const std::vector<std::string>& role_names,
                const std::map<std::string, std::vector<Array<T>>>& buffers) {
  const OptimizerOptions options = options_from_dict(options_dict);
  const size_t count = sizes.size();
  if (role_names.size() != count) {
    throw std::invalid_argument("sizes and roles must have the same length, got " +
                                std::to_string(count) + " and " +
                                std::to_string(role_names.size()));
  }
  const std::vector<ParamRole> roles = roles_from_names(role_names);
  const std::vector<std::string> names =
      step_count > 0 ? optimizer_buffer_names(options) : std::vector<std::string>{};
  for (const auto& item : buffers) {
    if (std::find(names.begin(), names.end(), item.first) == names.end()) {
      throw std::invalid_argument("unexpected state buffer '" + item.first + "'");
    }
  }
  std::vector<const T*> pointers;
  for (const std::string& name : names) {
    const auto found = buffers.find(name);
    if (found == buffers.end()) {
      throw std::invalid_argument("missing state buffer '" + name + "'");
    }
    if (found->second.size() != count) {
      throw std::invalid_argument("state buffer '" + name + "' must have " + std::to_string(count) +
                                  " arrays, got " + std::to_string(found->second.size()));
    }
    for (size_t p = 0; p < count; ++p) {
      const Array<T>& values = found->second[p];
      if (static_cast<int64_t>(values.size()) != sizes[p]) {
        throw std::invalid_argument("state buffer '" + name + "' of tensor " + std::to_string(p) +
                                    " must have " + std::to_string(sizes[p]) + " elements, got " +
                                    std::to_string(values.size()));
      }
      pointers.push_back(values.data());
    }
  }
  optimizer.load_state(options, step_count, sizes.data(), roles.data(), static_cast<int64_t>(count),
                       pointers.data());
}

template <typename T>
void register_dtype(py::module_& m, const char* name) {
  py::class_<Optimizer<T>>(m, name)
      .def(py::init(
               [](const py::dict& options) { return Optimizer<T>(options_from_dict(options)); }),
           py::arg("options"))
      .def("options", [](const Optimizer<T>& o) { return options_to_dict(o.options()); })
      .def_property(
          "lr", [](const Optimizer<T>& o) { return o.options().lr; },
          [](Optimizer<T>& o, double lr) {
            if (!(lr >= 0) || !std::isfinite(lr)) {
              throw std::invalid_argument("lr must be finite and >= 0");
            }
            o.options().lr = lr;
          })
      .def_property_readonly("step_count", &Optimizer<T>::step_count)
      .def("step", &step<T>, py::arg("params").noconvert(), py::arg("grads").noconvert(),
           py::arg("roles"), py::arg("grad_scale") = 1.0, py::arg("clip_value") = 0.0)
      .def("state", &state<T>)
      .def("load_state", &load_state<T>, py::arg("options"), py::arg("step"), py::arg("sizes"),
           py::arg("roles"), py::arg("buffers").noconvert());
}

}  // namespace

// optimizer_buffer_names(options): the state buffers per tensor, in order.
// Optimizer_f32 / Optimizer_f64 wrap Optimizer<float> / Optimizer<double>; the network's bindings
// take these objects by reference.
void register_optim(py::module_& m) {
  m.def(
      "optimizer_buffer_names",
      [](const py::dict& options) { return optimizer_buffer_names(options_from_dict(options)); },
      py::arg("options"));
  register_dtype<float>(m, "Optimizer_f32");
  register_dtype<double>(m, "Optimizer_f64");
}

}  // namespace gradwatch
