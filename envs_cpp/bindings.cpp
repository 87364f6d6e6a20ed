// pybind11 module cpfast._envs: one registration line per environment class.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "batched_runner.h"
#include "rescue_game.h"
#include "resource_collection.h"
#include "starcraft_micro.h"

namespace py = pybind11;
using namespace cpfast;

namespace {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF64: return "float64";
    case DType::kI8: return "int8";
    case DType::kI32: return "int32";
    case DType::kU64: return "uint64";
  }
  return "?";
}

py::dtype NumpyDType(DType t) { return py::dtype(DTypeName(t)); }

// A numpy view of a runner buffer; `owner` keeps the runner alive while the view exists.
template <class T>
py::array View(std::vector<T>& buffer, std::vector<py::ssize_t> shape, py::handle owner) {
  return py::array_t<T>(shape, buffer.data(), owner);
}

template <class Runner>
py::dict ObsViews(ObsBuffers& b, py::handle owner) {
  constexpr EnvDims d = Runner::kDims;
  const py::ssize_t n = static_cast<py::ssize_t>(b.agent_present.size() / d.max_agents);
  py::dict out;
  out["entities"] = View(b.entities, {n, d.max_entities, d.feat_dim}, owner);
  out["attributes"] = View(b.attributes, {n, d.max_agents, d.attr_dim}, owner);
  out["agent_present"] = View(b.agent_present, {n, d.max_agents}, owner);
  out["entity_present"] = View(b.entity_present, {n, d.max_entities}, owner);
  out["obs_mask"] = View(b.obs_mask, {n, d.max_agents, d.max_entities}, owner);
  out["full_mask"] = View(b.full_mask, {n, d.max_agents, d.max_entities}, owner);
  out["avail_actions"] = View(b.avail_actions, {n, d.max_agents, d.n_actions}, owner);
  return out;
}

// Env i's state fields plus the runner's own per-env state (a null pointer for the probe).
template <class Env>
StateFields RunnerStateFields(Env& env, double* running_return) {
  StateFields fields = env.State();
  // Far beyond any return, and small enough that the float32 episode_return stays finite.
  constexpr double kMax = 1e30;
  fields.push_back({"running_return", DType::kF64, {}, running_return, -kMax, kMax});
  return fields;
}

// Runs f() holding the runner's mutex, waiting for it with the GIL released: a thread that
// waited holding the GIL would deadlock with the holder when that one needs the GIL (get_state).
// f runs without the GIL; take it back inside f (py::gil_scoped_acquire) to touch Python objects.
template <class Runner, class F>
void WithRunnerLock(Runner& r, F&& f) {
  py::gil_scoped_release release;
  std::lock_guard<std::mutex> lock(r.mutex());
  f();
}

template <class Runner>
void CheckEnvIndex(Runner& r, int i) {
  if (i < 0 || i >= r.num_envs()) throw py::index_error("env index " + std::to_string(i) + " out of range");
}

// Writes the arrays of `state` into env i's state fields, all checked before any is written.
// Called holding the runner's lock and the GIL.
template <class Runner>
void WriteState(Runner& r, int i, py::dict state) {
  StateFields fields = RunnerStateFields(r.env(i), &r.RunningReturn(i));
  std::vector<std::pair<const StateField*, py::array>> updates;
  for (auto item : state) {
    const std::string key = py::str(item.first);
    const StateField* field = nullptr;
    for (const auto& f : fields)
      if (f.name == key) field = &f;
    if (!field) throw std::invalid_argument("unknown state key '" + key + "'");
    if (!py::isinstance<py::array>(item.second))
      throw std::invalid_argument("state key '" + key + "' must be a numpy array");
    py::array a = py::reinterpret_borrow<py::array>(item.second);
    if (!a.dtype().is(NumpyDType(field->dtype)) || a.size() != ElementCount(*field) ||
        !(a.flags() & py::array::c_style))
      throw std::invalid_argument("state key '" + key + "' must be a contiguous " + DTypeName(field->dtype) +
                                  " array of the documented shape");
    updates.emplace_back(field, a);
  }
  for (auto& [field, a] : updates) std::memcpy(field->data, a.data(), a.nbytes());
}

// Calls f(pointer) with the data of a C-contiguous [num_envs, max_agents] int32 or int64 array.
template <class Runner, class F>
void WithActions(Runner& r, py::array actions, F&& f) {
  if (actions.ndim() != 2 || actions.shape(0) != r.num_envs() || actions.shape(1) != Runner::kDims.max_agents ||
      !(actions.flags() & py::array::c_style))
    throw std::invalid_argument("actions must be a contiguous [num_envs, max_agents] array");
  if (actions.dtype().is(py::dtype::of<int32_t>())) {
    f(static_cast<const int32_t*>(actions.data()));
  } else if (actions.dtype().is(py::dtype::of<int64_t>())) {
    f(static_cast<const int64_t*>(actions.data()));
  } else {
    throw std::invalid_argument("actions must be int32 or int64");
  }
}

template <class Env>
void BindRunner(py::module_& m, const char* name) {
  using Runner = BatchedRunner<Env>;
  py::class_<Runner> cls(m, name);
  cls
      .def(py::init([](int num_envs, uint64_t seed, int num_threads, const std::string& composition,
                       py::object zero_shot_table, py::object eval_seed, std::map<std::string, double> params) {
             RunnerConfig config;
             config.num_envs = num_envs;
             config.seed = seed;
             config.num_threads = num_threads;
             config.composition = composition;
             config.eval = !eval_seed.is_none();
             config.eval_seed = config.eval ? eval_seed.cast<uint64_t>() : seed;
             if (!zero_shot_table.is_none()) {
               auto table = zero_shot_table.cast<py::array_t<double, py::array::c_style>>();
               constexpr EnvDims d = Env::kDims;
               if (table.ndim() != 3 || table.shape(1) != d.max_agents || table.shape(2) != d.attr_dim)
                 throw std::invalid_argument("zero_shot_table must have shape [rows, max_agents, attr_dim]");
               config.zero_shot_table.assign(table.data(), table.data() + table.size());
               config.zero_shot_rows = static_cast<int>(table.shape(0));
             }
             config.params = std::move(params);
             return new Runner(config);
           }),
           py::arg("num_envs"), py::arg("seed"), py::arg("num_threads"), py::arg("composition"),
           py::arg("zero_shot_table") = py::none(), py::arg("eval_seed") = py::none(),
           py::arg("params") = std::map<std::string, double>())
      .def_property_readonly_static("options",
                                    [](py::object) {
                                      // name -> (default, lo, hi, integer) of the env's kOptions
                                      py::dict out;
                                      const EnvOptionSpec* specs = EnvOptionSpecs<Env>::Get();
                                      for (int k = 0; k < EnvOptionSpecs<Env>::kCount; ++k)
                                        out[specs[k].name] = py::make_tuple(specs[k].default_value, specs[k].lo,
                                                                            specs[k].hi, specs[k].integer);
                                      return out;
                                    })
      .def_property_readonly_static("compositions",
                                    [](py::object) { return py::tuple(py::cast(Env::Compositions())); })
      .def_property_readonly_static("outcomes",
                                    [](py::object) {
                                      // info key -> rate name of the env's kOutcomes (none for most envs)
                                      py::dict out;
                                      const OutcomeFlag* flags = EnvOutcomes<Env>::Get();
                                      for (int k = 0; k < EnvOutcomes<Env>::kCount; ++k)
                                        out[flags[k].info_key] = flags[k].rate;
                                      return out;
                                    })
      .def_property_readonly_static("facts",
                                    [](py::object) {
                                      // name -> tuple of numbers (EnvFactsOf: none for most envs)
                                      py::dict out;
                                      for (const auto& [name, values] : EnvFactsOf<Env>::Get())
                                        out[name.c_str()] = py::tuple(py::cast(values));
                                      return out;
                                    })
      .def_property_readonly_static("dims",
                                    [](py::object) {
                                      constexpr EnvDims d = Env::kDims;
                                      py::dict out;
                                      out["max_agents"] = d.max_agents;
                                      out["max_entities"] = d.max_entities;
                                      out["feat_dim"] = d.feat_dim;
                                      out["agent_feat_dim"] = d.agent_feat_dim;
                                      out["other_feat_dim"] = d.other_feat_dim;
                                      out["attr_dim"] = d.attr_dim;
                                      out["n_actions"] = d.n_actions;
                                      out["episode_limit"] = d.episode_limit;
                                      return out;
                                    })
      .def_property_readonly("num_envs", &Runner::num_envs)
      .def_property_readonly("num_threads", &Runner::num_threads)
      .def("buffers",
           [](py::object self) {
             Runner& r = self.cast<Runner&>();
             const py::ssize_t n = r.num_envs();
             const py::ssize_t a = Runner::kDims.max_agents;
             py::dict out;
             out["obs"] = ObsViews<Runner>(r.obs, self);
             out["final"] = ObsViews<Runner>(r.final_obs, self);
             out["reward"] = View(r.reward, {n}, self);
             out["terminated"] = View(r.terminated, {n}, self);
             out["truncated"] = View(r.truncated, {n}, self);
             if (EnvHasAgentRewards<Env>::value) out["agent_rewards"] = View(r.agent_rewards, {n, a}, self);
             // Per-step counters of this environment (docs/interface.md §6), one [N] array per key.
             py::dict info;
             for (int c = 0; c < Runner::kInfoCount; ++c)
               info[EnvInfoKeys<Env>::Name(c)] = py::array_t<int32_t>(
                   {n}, {static_cast<py::ssize_t>(sizeof(int32_t) * Runner::kInfoCount)}, r.info.data() + c, self);
             out["info"] = info;
             out["episode_step"] = View(r.episode_step, {n}, self);
             out["episode_return"] = View(r.episode_return, {n}, self);
             out["episode_length"] = View(r.episode_length, {n}, self);
             return out;
           })
      .def("reset",
           [](Runner& r, py::object env_ids, py::object episode_seeds) {
             py::array_t<int32_t, py::array::c_style | py::array::forcecast> ids;
             py::array_t<int64_t, py::array::c_style | py::array::forcecast> seeds;
             const int32_t* ids_ptr = nullptr;
             const int64_t* seeds_ptr = nullptr;
             int n_ids = r.num_envs();
             if (!env_ids.is_none()) {
               ids = env_ids.cast<decltype(ids)>();
               ids_ptr = ids.data();
               n_ids = static_cast<int>(ids.size());
             }
             if (!episode_seeds.is_none()) {
               seeds = episode_seeds.cast<decltype(seeds)>();
               if (static_cast<int>(seeds.size()) != n_ids)
                 throw std::invalid_argument("episode_seeds must have one entry per reset env");
               seeds_ptr = seeds.data();
             }
             WithRunnerLock(r, [&] { r.Reset(ids_ptr, n_ids, seeds_ptr); });
           },
           py::arg("env_ids") = py::none(), py::arg("episode_seeds") = py::none())
      // actions: C-contiguous int32 or int64 [num_envs, max_agents]; values are checked here.
      .def("step",
           [](Runner& r, py::array actions) {
             WithActions(r, actions, [&](auto* data) { WithRunnerLock(r, [&] { r.Step(data); }); });
           },
           py::arg("actions"))
      // step's checks of actions without stepping (a backend that plays them elsewhere).
      .def("check_actions",
           [](Runner& r, py::array actions) {
             WithActions(r, actions, [&](auto* data) { WithRunnerLock(r, [&] { r.CheckActions(data); }); });
           },
           py::arg("actions"))
      .def_static("state_fields",
                  []() {
                    Env probe;
                    py::list out;
                    for (const StateField& f : RunnerStateFields(probe, nullptr))
                      out.append(py::make_tuple(f.name, DTypeName(f.dtype), f.shape, f.lo, f.hi));
                    return out;
                  })
      .def("get_state",
           [](Runner& r, int i) {
             CheckEnvIndex(r, i);
             py::dict out;
             WithRunnerLock(r, [&] {
               py::gil_scoped_acquire gil;
               for (const StateField& f : RunnerStateFields(r.env(i), &r.RunningReturn(i))) {
                 py::array a(NumpyDType(f.dtype), f.shape);
                 std::memcpy(a.mutable_data(), f.data, ElementCount(f) * ElementSize(f.dtype));
                 out[f.name.c_str()] = a;
               }
             });
             return out;
           })
      // Expects arrays already converted to the exact dtype and shape (the Python layer
      // validates values); checks everything before changing anything.
      .def("set_state", [](Runner& r, int i, py::dict state) {
        CheckEnvIndex(r, i);
        WithRunnerLock(r, [&] {
          py::gil_scoped_acquire gil;
          WriteState(r, i, state);
          r.RefreshObservation(i);
        });
      });
  if constexpr (EnvScoresExternalSteps<Env>::value) {
    // Env i's step with its world advanced elsewhere: `state` (as set_state takes it) is the
    // world after the step; the env scores the step and the runner auto-resets as in step.
    cls.def("step_external", [](Runner& r, int i, py::dict state) {
      CheckEnvIndex(r, i);
      WithRunnerLock(r, [&] {
        py::gil_scoped_acquire gil;
        r.StepExternal(i, [&] { WriteState(r, i, state); });
      });
    });
  }
}

}  // namespace

PYBIND11_MODULE(_envs, m) {
  m.doc() = "cpfast C++ environments and their batched runner";
  m.def("derive_seed", &derive_seed, "seed derivation of docs/interface.md §5.3", py::arg("a"), py::arg("b"), py::arg("c"));
  m.def("uniform_stream",
        [](uint64_t seed, int64_t n) {
          py::array_t<double> out(n);
          Rng rng(seed);
          double* p = out.mutable_data();
          for (int64_t k = 0; k < n; ++k) p[k] = rng.uniform();
          return out;
        },
        "first n uniform() draws of the stream seeded with `seed`", py::arg("seed"), py::arg("n"));
  BindRunner<ResourceCollection>(m, "ResourceCollection");
  BindRunner<RescueGame>(m, "RescueGame");
  BindRunner<StarCraftSz>(m, "StarCraft3to8sz");
  BindRunner<StarCraftMMM>(m, "StarCraft3to8MMM");
}
