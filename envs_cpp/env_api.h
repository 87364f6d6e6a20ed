// The contract between an environment class and the generic batched runner.
//
// An environment is a plain class that owns one world. The runner hands it pointers into
// its preallocated batch buffers (one slot per env) and it writes its outputs there; it
// never allocates in Reset/Step. Each environment class provides:
//
//   static constexpr EnvDims kDims;                    // shapes of the common interface
//   static std::vector<std::string> Compositions();    // the composition names Configure accepts
//   void Configure(const EnvOptions&);                 // composition, zero-shot table
//   void Seed(uint64_t world_seed, uint64_t composition_seed);
//   void SetEvalEpisode(int64_t k);                   // k >= 0: evaluation episode k; -1: training
//   int EpisodeStep() const;                          // steps taken in the current episode
//   void Reset(const ObsSlot&);                        // reward-free first observation
//   void Step(const int32_t* actions, const StepSlot&);  // one step, outputs into the slot
//   void WriteObservation(const ObsSlot&);             // outputs of the current state
//   StateFields State();                               // named views of the full state
//
// and optionally:
//
//   static constexpr const char* kInfoKeys[] = {...};  // per-step int32 counters it writes to
//                                                      // StepSlot::info (exposed in info)
//   static constexpr bool kAgentRewards = false;       // no per-agent rewards: the runner leaves
//                                                      // info["agent_rewards"] out (default true)
//   static constexpr EnvOptionSpec kOptions[] = {...}; // named numeric options (make_env keyword
//                                                      // arguments), read in Configure with
//                                                      // ResolveOptions; none by default
//   static void Facts(EnvFacts&);                      // numbers Python reads instead of restating
//   static constexpr OutcomeFlag kOutcomes[] = {...};  // which kInfoKeys flag how an episode ended
//   StepStart BeginStep() const;                       // with FinishStep: scores a step whose world
//   void FinishStep(const StepStart&, const StepSlot&);  // was advanced outside (the real game)
#pragma once
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace cpfast {

struct EnvDims {
  int max_agents;      // N_A
  int max_entities;    // N_E (agent slots included)
  int feat_dim;        // D
  int agent_feat_dim;  // D_a
  int other_feat_dim;  // D_o
  int attr_dim;        // D_c
  int n_actions;
  int episode_limit;
};

struct ObsSlot {
  float* entities;          // [N_E, D]
  float* attributes;        // [N_A, D_c]
  uint8_t* agent_present;   // [N_A]
  uint8_t* entity_present;  // [N_E]
  uint8_t* obs_mask;        // [N_A, N_E]
  uint8_t* full_mask;       // [N_A, N_E]
  uint8_t* avail_actions;   // [N_A, n_actions]
};

struct StepSlot {
  ObsSlot obs;
  float* reward;          // []
  uint8_t* terminated;    // []
  uint8_t* truncated;     // []
  float* agent_rewards;   // [N_A]
  int32_t* info;          // [EnvInfoKeys<Env>::kCount]
};

// The optional kInfoKeys of an environment class (none by default).
template <class Env, class = void>
struct EnvInfoKeys {
  static constexpr int kCount = 0;
  static const char* Name(int) { return ""; }
};
template <class Env>
struct EnvInfoKeys<Env, std::void_t<decltype(Env::kInfoKeys)>> {
  static constexpr int kCount = static_cast<int>(std::size(Env::kInfoKeys));
  static const char* Name(int k) { return Env::kInfoKeys[k]; }
};

// The optional kAgentRewards of an environment class (true by default).
template <class Env, class = void>
struct EnvHasAgentRewards : std::true_type {};
template <class Env>
struct EnvHasAgentRewards<Env, std::void_t<decltype(Env::kAgentRewards)>>
    : std::integral_constant<bool, Env::kAgentRewards> {};

struct EnvOptions {
  std::string composition;
  const double* zero_shot_table = nullptr;  // [rows, N_A, D_c]
  int zero_shot_rows = 0;
  std::map<std::string, double> params;     // named options (kOptions); absent ones keep their defaults
};

// One named numeric option of an environment class: default and inclusive range.
struct EnvOptionSpec {
  const char* name;
  double default_value, lo, hi;
  bool integer;  // only whole numbers (flags, choices)
};

// The optional kOptions of an environment class (none by default).
template <class Env, class = void>
struct EnvOptionSpecs {
  static constexpr int kCount = 0;
  static const EnvOptionSpec* Get() { return nullptr; }
};
template <class Env>
struct EnvOptionSpecs<Env, std::void_t<decltype(Env::kOptions)>> {
  static constexpr int kCount = static_cast<int>(std::size(Env::kOptions));
  static const EnvOptionSpec* Get() { return Env::kOptions; }
};

// Facts about an environment that Python reads instead of restating them (feature columns, unit
// ids, reward scale...): name -> numbers, from an optional `static void Facts(EnvFacts&)`.
using EnvFacts = std::map<std::string, std::vector<double>>;
template <class Env, class = void>
struct EnvFactsOf {
  static EnvFacts Get() { return {}; }
};
template <class Env>
struct EnvFactsOf<Env, std::void_t<decltype(&Env::Facts)>> {
  static EnvFacts Get() {
    EnvFacts facts;
    Env::Facts(facts);
    return facts;
  }
};

// How an episode ended, for environments that say (StarCraft): on an episode's last step exactly
// one of its outcome flags is 1 in info (`info_key`, one of kInfoKeys); evaluation reports the
// fraction of episodes that ended so under `rate`.
struct OutcomeFlag {
  const char* info_key;
  const char* rate;
};
template <class Env, class = void>
struct EnvOutcomes {
  static constexpr int kCount = 0;
  static const OutcomeFlag* Get() { return nullptr; }
};
template <class Env>
struct EnvOutcomes<Env, std::void_t<decltype(Env::kOutcomes)>> {
  static constexpr int kCount = static_cast<int>(std::size(Env::kOutcomes));
  static const OutcomeFlag* Get() { return Env::kOutcomes; }
};

// Whether an environment can score a step whose world moved outside it (BeginStep/FinishStep):
// the real-game backend writes the game's units into the env and lets the env's own rules give
// the reward, the end of the episode and the outcome flags.
template <class Env, class = void>
struct EnvScoresExternalSteps : std::false_type {};
template <class Env>
struct EnvScoresExternalSteps<Env, std::void_t<decltype(&Env::BeginStep)>> : std::true_type {};

// Values of the n options in `specs` (defaults where not given) into `values`; an unknown name,
// a non-finite or out-of-range value, or a fraction for an integer option throws naming the option.
inline void ResolveOptions(const EnvOptions& options, const EnvOptionSpec* specs, int n, const std::string& env_name,
                           double* values) {
  for (const auto& [name, value] : options.params) {
    int k = 0;
    while (k < n && name != specs[k].name) ++k;
    if (k == n) {
      std::string known;
      for (int j = 0; j < n; ++j) known += (j ? ", " : "") + std::string(specs[j].name);
      throw std::invalid_argument("unknown option '" + name + "' for " + env_name +
                                  (n ? " (known options: " + known + ")" : " (it takes no options)"));
    }
    const EnvOptionSpec& s = specs[k];
    if (!(value >= s.lo && value <= s.hi) || (s.integer && value != static_cast<double>(static_cast<int64_t>(value)))) {
      char msg[256];
      std::snprintf(msg, sizeof(msg), "option %s=%.17g for %s must be %s in [%g, %g]", s.name, value, env_name.c_str(),
                    s.integer ? "an integer" : "a number", s.lo, s.hi);
      throw std::invalid_argument(msg);
    }
  }
  for (int k = 0; k < n; ++k) {
    const auto it = options.params.find(specs[k].name);
    values[k] = it == options.params.end() ? specs[k].default_value : it->second;
  }
}

// A named, typed view of one part of an environment's state, used by get_state/set_state.
enum class DType { kF64, kI8, kI32, kU64 };

struct StateField {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  void* data;
  double lo;  // inclusive range checked on set_state (ignored for kU64)
  double hi;
};
using StateFields = std::vector<StateField>;

inline int64_t ElementCount(const StateField& f) {
  int64_t n = 1;
  for (auto d : f.shape) n *= d;
  return n;
}

inline size_t ElementSize(DType t) {
  switch (t) {
    case DType::kF64: return 8;
    case DType::kI8: return 1;
    case DType::kI32: return 4;
    case DType::kU64: return 8;
  }
  return 0;
}

}  // namespace cpfast
