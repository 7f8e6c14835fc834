// _core.Network_f32 / Network_f64 and _core.LossKind; gradwatch/network.py validates first.
// A NonFiniteError of the core becomes gradwatch.errors.NonFiniteError (layer, tensor).
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings.hpp"
#include "gradwatch/network.hpp"
#include "gradwatch/optim.hpp"
#include "gradwatch/telemetry.hpp"

namespace gradwatch {

static const char* role_name(ParamRole role) {
  switch (role) {
    case ParamRole::weight: return "weight";
    case ParamRole::bias: return "bias";
    case ParamRole::bn_gamma: return "bn_gamma";
    case ParamRole::bn_beta: return "bn_beta";
  }
  return "unknown";
}

static py::tuple shape_of(const TensorInfo& info) {
  if (info.cols == 0) return py::tuple(py::make_tuple(info.rows));
  return py::tuple(py::make_tuple(info.rows, info.cols));
}

static NetworkSpec make_spec(const std::vector<int64_t>& widths,
                             const std::vector<Activation>& activations,
                             const std::vector<double>& alphas, const std::vector<bool>& batchnorm,
                             const std::vector<bool>& residual, const std::vector<double>& dropout,
                             LossKind loss, double bn_momentum, double bn_eps,
                             uint64_t dropout_seed) {
  const size_t hidden = activations.size();
  if (alphas.size() != hidden || batchnorm.size() != hidden || residual.size() != hidden ||
      dropout.size() != hidden) {
    throw std::invalid_argument(
        "activations, alphas, batchnorm, residual and dropout need one entry per hidden layer");
  }
  NetworkSpec spec;
  spec.widths = widths;
  for (size_t i = 0; i < hidden; ++i) {
    spec.hidden.push_back({activations[i], alphas[i], batchnorm[i], residual[i], dropout[i]});
  }
  spec.loss = loss;
  spec.bn_momentum = bn_momentum;
  spec.bn_eps = bn_eps;
  spec.dropout_seed = dropout_seed;
  return spec;
}

// The array `h` as Array<T>, neither copied nor converted (gradwatch/network.py has done that).
// The hot calls take py::handle rather than Array<T>: pybind11's caster for Array<T> creates an
// empty placeholder array on every call, a quarter of the cost of a batch-1 forward.
template <typename T>
static Array<T> borrow(py::handle h, const char* name) {
  if (!Array<T>::check_(h)) {
    throw py::type_error(std::string(name) + " must be a C-contiguous " +
                         py::str(py::dtype::of<T>()).cast<std::string>() + " array");
  }
  return py::reinterpret_borrow<Array<T>>(h);
}

// x: (N, D); returns N. x stays alive with the caller's reference while the call runs.
template <typename T>
static int64_t batch_of(const Network<T>& net, const Array<T>& x) {
  require_ndim(x, 2, "x");
  require_dim(x, 1, net.spec().widths.front(), "x");
  return x.shape(0);
}

// y: int64 class indices (N) or targets (N, C) of the network's dtype.
template <typename T>
static Targets<T> targets_of(const Network<T>& net, py::handle y, int64_t N) {
  Targets<T> targets;
  if (Array<int64_t>::check_(y)) {
    const auto labels = py::reinterpret_borrow<Array<int64_t>>(y);
    require_ndim(labels, 1, "y");
    require_dim(labels, 0, N, "y");
    targets.labels = labels.data();
  } else {
    const Array<T> values = borrow<T>(y, "y");
    require_ndim(values, 2, "y");
    require_dim(values, 0, N, "y");
    require_dim(values, 1, net.spec().widths.back(), "y");
    targets.values = values.data();
  }
  return targets;
}

template <typename T>
static std::vector<Array<T>> split(const std::vector<TensorInfo>& infos, const std::vector<T>& flat) {
  std::vector<Array<T>> arrays;
  for (const TensorInfo& info : infos) {
    Array<T> a = info.cols == 0 ? empty_array<T>({info.rows}) : empty_array<T>({info.rows, info.cols});
    std::copy(flat.begin() + info.offset, flat.begin() + info.offset + info.size(), a.mutable_data());
    arrays.push_back(a);
  }
  return arrays;
}

template <typename T>
static std::vector<T> join(const std::vector<TensorInfo>& infos, const std::vector<Array<T>>& arrays,
                           int64_t total, const char* what) {
  if (arrays.size() != infos.size()) {
    throw std::invalid_argument(std::string(what) + ": expected " + std::to_string(infos.size()) +
                                " arrays, got " + std::to_string(arrays.size()));
  }
  std::vector<T> flat(static_cast<size_t>(total));
  for (size_t k = 0; k < infos.size(); ++k) {
    const TensorInfo& info = infos[k];
    if (arrays[k].size() != info.size()) {
      throw std::invalid_argument(info.name + ": expected " + std::to_string(info.size()) +
                                  " values, got " + std::to_string(arrays[k].size()));
    }
    std::copy(arrays[k].data(), arrays[k].data() + info.size(), flat.begin() + info.offset);
  }
  return flat;
}

template <typename T>
static py::tuple loss_and_gradients(Network<T>& net, const Array<T>& x, const Targets<T>& targets,
                                    int64_t N) {
  std::vector<T> grads(static_cast<size_t>(net.parameter_count()));
  const T* x_data = x.data();
  double loss;
  {
    py::gil_scoped_release release;
    loss = net.loss_and_gradients(x_data, targets, N);
    net.copy_gradients(grads.data());
  }
  return py::make_tuple(loss, split(net.parameter_info(), grads));
}

template <typename T>
static double loss(Network<T>& net, const Array<T>& x, const Targets<T>& targets, int64_t N) {
  const T* x_data = x.data();
  py::gil_scoped_release release;
  return net.loss(x_data, targets, N);
}

template <typename T>
static py::tuple train_step(Network<T>& net, const Array<T>& x, const Targets<T>& targets,
                            int64_t N, Optimizer<T>& optimizer, double clip_norm,
                            double clip_value) {
  const T* x_data = x.data();
  StepResult result;
  {
    py::gil_scoped_release release;
    result = net.train_step(x_data, targets, N, optimizer, clip_norm, clip_value);
  }
  return py::make_tuple(result.loss, result.grad_norm);
}

template <typename T>
static py::tuple evaluate(Network<T>& net, const Array<T>& x, const Targets<T>& targets,
                          int64_t N) {
  const T* x_data = x.data();
  Evaluation result;
  {
    py::gil_scoped_release release;
    result = net.evaluate(x_data, targets, N);
  }
  return py::make_tuple(result.loss, result.correct, result.total);
}

template <typename T>
static py::tuple telemetry_arrays(const Network<T>& net) {
  const int64_t L = static_cast<int64_t>(net.spec().widths.size()) - 1;
  // A step recorded by another thread between the two calls is left for the next read.
  const int64_t most = net.telemetry_size();
  std::vector<int64_t> steps(static_cast<size_t>(most)), nonfinite(static_cast<size_t>(most * L));
  std::vector<double> scalars(static_cast<size_t>(3 * most));
  std::vector<double> metrics(static_cast<size_t>(most * L * kLayerMetrics));
  std::vector<uint8_t> clipped(static_cast<size_t>(most));
  const int64_t n = net.copy_telemetry(steps.data(), scalars.data(), clipped.data(), metrics.data(),
                                       nonfinite.data(), most);
  const auto size = static_cast<py::ssize_t>(n);
  Array<int64_t> steps_out = empty_array<int64_t>({size});
  Array<double> scalars_out = empty_array<double>({size, 3});
  py::array_t<bool> clipped_out({size});
  Array<double> metrics_out =
      empty_array<double>({size, static_cast<py::ssize_t>(L), static_cast<py::ssize_t>(kLayerMetrics)});
  Array<int64_t> nonfinite_out = empty_array<int64_t>({size, static_cast<py::ssize_t>(L)});
  std::copy(steps.begin(), steps.begin() + n, steps_out.mutable_data());
  std::copy(scalars.begin(), scalars.begin() + 3 * n, scalars_out.mutable_data());
  bool* clipped_data = clipped_out.mutable_data();
  for (int64_t k = 0; k < n; ++k) clipped_data[k] = clipped[static_cast<size_t>(k)] != 0;
  std::copy(metrics.begin(), metrics.begin() + n * L * kLayerMetrics, metrics_out.mutable_data());
  std::copy(nonfinite.begin(), nonfinite.begin() + n * L, nonfinite_out.mutable_data());
  return py::make_tuple(steps_out, scalars_out, clipped_out, metrics_out, nonfinite_out);
}

template <typename T>
static py::tuple probe(Network<T>& net, const Array<T>& x, const Targets<T>& targets, int64_t N) {
  const int64_t L = static_cast<int64_t>(net.spec().widths.size()) - 1;
  Array<double> metrics =
      empty_array<double>({static_cast<py::ssize_t>(L), static_cast<py::ssize_t>(kLayerMetrics)});
  Array<int64_t> nonfinite = empty_array<int64_t>({static_cast<py::ssize_t>(L)});
  double* metrics_data = metrics.mutable_data();
  int64_t* nonfinite_data = nonfinite.mutable_data();
  const T* x_data = x.data();
  StepResult result;
  {
    py::gil_scoped_release release;
    result = net.probe(metrics_data, nonfinite_data, x_data, targets, N);
  }
  return py::make_tuple(result.loss, result.grad_norm, metrics, nonfinite);
}

template <typename T>
static void register_dtype(py::module_& m, const char* name) {
  using Net = Network<T>;
  py::class_<Net>(m, name)
      .def(py::init([](const std::vector<int64_t>& widths, const std::vector<Activation>& activations,
                       const std::vector<double>& alphas, const std::vector<bool>& batchnorm,
                       const std::vector<bool>& residual, const std::vector<double>& dropout,
                       LossKind loss, double bn_momentum, double bn_eps, uint64_t dropout_seed) {
             return new Net(make_spec(widths, activations, alphas, batchnorm, residual, dropout,
                                      loss, bn_momentum, bn_eps, dropout_seed));
           }),
           py::arg("widths"), py::arg("activations"), py::arg("alphas"), py::arg("batchnorm"),
           py::arg("residual"), py::arg("dropout"), py::arg("loss"), py::arg("bn_momentum"),
           py::arg("bn_eps"), py::arg("dropout_seed"))
      // [(name, shape, role)] in the optimiser's order.
      .def("parameter_info",
           [](const Net& net) {
             py::list out;
             for (const TensorInfo& info : net.parameter_info()) {
               out.append(py::make_tuple(info.name, shape_of(info), role_name(info.role)));
             }
             return out;
           })
      .def("buffer_info",
           [](const Net& net) {
             py::list out;
             for (const TensorInfo& info : net.buffer_info()) {
               out.append(py::make_tuple(info.name, shape_of(info)));
             }
             return out;
           })
      .def("parameters",
           [](const Net& net) {
             std::vector<T> flat(static_cast<size_t>(net.parameter_count()));
             net.copy_parameters(flat.data());
             return split(net.parameter_info(), flat);
           })
      .def("buffers",
           [](const Net& net) {
             std::vector<T> flat(static_cast<size_t>(net.buffer_count()));
             net.copy_buffers(flat.data());
             return split(net.buffer_info(), flat);
           })
      .def("load",
           [](Net& net, const std::vector<Array<T>>& params, const std::vector<Array<T>>& buffers) {
             const std::vector<T> p = join(net.parameter_info(), params, net.parameter_count(), "params");
             const std::vector<T> b = join(net.buffer_info(), buffers, net.buffer_count(), "buffers");
             py::gil_scoped_release release;
             net.load(p.data(), b.data());
           },
           py::arg("params"), py::arg("buffers"))
      .def("exchange_parameter", &Net::exchange_parameter, py::arg("index"), py::arg("value"))
      .def("forward",
           [](Net& net, py::handle x_handle, bool training) {
             const Array<T> x = borrow<T>(x_handle, "x");
             const int64_t N = batch_of(net, x);
             Array<T> logits = empty_array<T>({static_cast<py::ssize_t>(N),
                                               static_cast<py::ssize_t>(net.spec().widths.back())});
             T* out = logits.mutable_data();
             const T* x_data = x.data();
             {
               py::gil_scoped_release release;
               net.forward(out, x_data, N, training);
             }
             return logits;
           },
           py::arg("x"), py::arg("training"))
      .def("loss_and_gradients",
           [](Net& net, py::handle x_handle, py::handle y) {
             const Array<T> x = borrow<T>(x_handle, "x");
             const int64_t N = batch_of(net, x);
             return loss_and_gradients(net, x, targets_of(net, y, N), N);
           },
           py::arg("x"), py::arg("y"))
      .def("loss",
           [](Net& net, py::handle x_handle, py::handle y) {
             const Array<T> x = borrow<T>(x_handle, "x");
             const int64_t N = batch_of(net, x);
             return loss(net, x, targets_of(net, y, N), N);
           },
           py::arg("x"), py::arg("y"))
      .def("train_step",
           [](Net& net, py::handle x_handle, py::handle y, Optimizer<T>& optimizer,
              double clip_norm, double clip_value) {
             const Array<T> x = borrow<T>(x_handle, "x");
             const int64_t N = batch_of(net, x);
             return train_step(net, x, targets_of(net, y, N), N, optimizer, clip_norm,
                               clip_value);
           },
           py::arg("x"), py::arg("y"), py::arg("optimizer"), py::arg("clip_norm"),
           py::arg("clip_value"))
      .def("evaluate",
           [](Net& net, py::handle x_handle, py::handle y) {
             const Array<T> x = borrow<T>(x_handle, "x");
             const int64_t N = batch_of(net, x);
             return evaluate(net, x, targets_of(net, y, N), N);
           },
           py::arg("x"), py::arg("y"))
      .def("dropout_mask",
           [](const Net& net, int64_t layer, int64_t N) {
             if (layer < 0 || layer + 1 >= static_cast<int64_t>(net.spec().widths.size()) - 1) {
               throw std::invalid_argument("layer " + std::to_string(layer) +
                                           " is not a hidden layer");
             }
             if (N < 1) throw std::invalid_argument("N must be >= 1, got " + std::to_string(N));
             const int64_t O = net.spec().widths[layer + 1];
             Array<uint8_t> mask = empty_array<uint8_t>({static_cast<py::ssize_t>(N),
                                                         static_cast<py::ssize_t>(O)});
             net.dropout_mask(mask.mutable_data(), layer, N);
             return mask;
           },
           py::arg("layer"), py::arg("N"))
      .def_property("dropout_step", &Net::dropout_step, &Net::set_dropout_step)
      .def("set_telemetry",
           [](Net& net, bool enabled, int64_t every, int64_t capacity) {
             net.set_telemetry({enabled, every, capacity});
           },
           py::arg("enabled"), py::arg("every"), py::arg("capacity"))
      .def("telemetry_options",
           [](const Net& net) {
             const TelemetryOptions o = net.telemetry_options();
             return py::make_tuple(o.enabled, o.every, o.capacity);
           })
      .def("clear_telemetry", &Net::clear_telemetry)
      .def("telemetry_size", &Net::telemetry_size)
      .def_property_readonly("step_count", &Net::step_count)
      // (steps (n) int64, scalars (n, 3) loss lr grad_norm, clipped (n) bool,
      //  metrics (n, L, M), nonfinite (n, L) int64), oldest first.
      .def("telemetry", [](const Net& net) { return telemetry_arrays(net); })
      // (loss, grad_norm, metrics (L, M), nonfinite (L) int64)
      .def("probe",
           [](Net& net, py::handle x_handle, py::handle y) {
             const Array<T> x = borrow<T>(x_handle, "x");
             const int64_t N = batch_of(net, x);
             return probe(net, x, targets_of(net, y, N), N);
           },
           py::arg("x"), py::arg("y"))
      // Private, for bench/bench_train.py (see Network::set_profiling and step_profile.hpp).
      .def("_set_profiling", &Net::set_profiling, py::arg("on"))
      .def("_profile",
           [](const Net& net) {
             const StepProfile p = net.profile();
             py::dict out;
             out["steps"] = p.steps;
             out["total_ns"] = p.total_ns;
             out["gemm_ns"] = p.gemm_ns;
             out["own_ns"] = p.own_ns;
             out["tail_ns"] = p.tail_ns;
             return out;
           })
      .def("_workspace_allocations", &Net::workspace_allocations);
}

void register_network(py::module_& m) {
  py::enum_<LossKind>(m, "LossKind")
      .value("softmax_cross_entropy", LossKind::softmax_cross_entropy)
      .value("binary_cross_entropy_with_logits", LossKind::binary_cross_entropy_with_logits)
      .value("mse", LossKind::mse);
  m.def("telemetry_metrics", [] {
    py::list names;
    for (int k = 0; k < kLayerMetrics; ++k) names.append(layer_metric_name(static_cast<LayerMetric>(k)));
    return py::tuple(names);
  });
  register_dtype<float>(m, "Network_f32");
  register_dtype<double>(m, "Network_f64");
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const NonFiniteError& e) {
      py::object type = py::module_::import("gradwatch.errors").attr("NonFiniteError");
      py::object instance = type(e.what(), e.layer(), e.tensor());
      PyErr_SetObject(type.ptr(), instance.ptr());
    }
  });
}

}  // namespace gradwatch
