// The contract between an environment class and the generic batched runner.
//
// An environment is a plain class that owns one world. The runner hands it pointers into
// its preallocated batch buffers (one slot per env) and it writes its outputs there; it
// never allocates in Reset/Step. Each environment class provides:
//
//   static constexpr EnvDims kDims;                    // shapes of the common interface
//   void Configure(const EnvOptions&);                 // composition, zero-shot table
//   void Seed(uint64_t world_seed, uint64_t composition_seed);
//   void SetEvalEpisode(int64_t k);                   // k >= 0: evaluation episode k; -1: training
//   int EpisodeStep() const;                          // steps taken in the current episode
//   void Reset(const ObsSlot&);                        // reward-free first observation
//   void Step(const int32_t* actions, const StepSlot&);  // one step, outputs into the slot
//   void WriteObservation(const ObsSlot&);             // outputs of the current state
//   StateFields State();                               // named views of the full state
//
// Optionally, per-step integer info fields (interface.md §6), written by Step into
// StepSlot::info in this order and zeroed by the runner on an explicit reset:
//
//   static constexpr std::array<const char*, K> kInfoNames{...};
#pragma once
#include <array>
#include <cstdint>
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
  int32_t* info;          // [K] of the env's kInfoNames (none: K = 0)
};

struct EnvOptions {
  std::string composition;
  const double* zero_shot_table = nullptr;  // [rows, N_A, D_c]
  int zero_shot_rows = 0;
};

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

// The env's info field names: Env::kInfoNames when declared, else none.
template <class Env, class = void>
struct EnvInfoNames {
  static constexpr std::array<const char*, 0> value{};
};
template <class Env>
struct EnvInfoNames<Env, std::void_t<decltype(Env::kInfoNames)>> {
  static constexpr auto value = Env::kInfoNames;
};

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
