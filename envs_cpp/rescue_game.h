// Rescue Game (docs/environments.md, Rescue Game): a 10 x 10 grid of burning buildings and
// heterogeneous fire-fighters. float64 state, float32 outputs.
#pragma once
#include <cstdint>

#include "env_api.h"
#include "rng.h"
#include "team_composition.h"

namespace cpfast {

class RescueGame {
 public:
  static constexpr int kAgents = 6;
  static constexpr int kBuildings = 8;
  static constexpr int kGrid = 10;
  static constexpr EnvDims kDims{kAgents, kAgents + kBuildings, 5, 3, 5, 2, 5, 100};
  // Per-step event counters written to StepSlot::info, in this order (docs/interface.md §6).
  static constexpr const char* kInfoKeys[] = {"n_extinguished", "n_destroyed"};
  // Team reward only: the runner leaves info["agent_rewards"] out.
  static constexpr bool kAgentRewards = false;

  static std::vector<std::string> Compositions() { return TeamDraw::Names(); }
  // The period of `dynamic`'s composition events.
  static void Facts(EnvFacts& facts) { facts["composition_event_period"] = {kCompositionEventPeriod}; }

  void Configure(const EnvOptions& options);
  void Seed(uint64_t world_seed, uint64_t composition_seed);
  void SetEvalEpisode(int64_t k) { eval_episode_ = k; }
  void Reset(const ObsSlot& out);
  void Step(const int32_t* actions, const StepSlot& out);
  void WriteObservation(const ObsSlot& out) const;
  int EpisodeStep() const { return episode_step_; }
  StateFields State();

 private:
  void DrawComposition();
  void Move(const int32_t* actions);
  double Extinguish(int32_t* n_extinguished);
  void Ignite();
  void GrowAndBurn();
  int DestroyAndRebuild();
  void CompositionEvent();
  bool CellHasIntactBuilding(int x, int y) const;

  // World state.
  int32_t agent_cell_[kAgents][2] = {};
  double agent_acc_[kAgents] = {};
  int8_t agent_alive_[kAgents] = {};
  double agent_attr_[kAgents][2] = {};  // raw extinguish power e, speed s
  int32_t bld_cell_[kBuildings][2] = {};
  double bld_health_[kBuildings] = {};
  double bld_intensity_[kBuildings] = {};
  int8_t bld_burning_[kBuildings] = {};
  int8_t bld_destroyed_[kBuildings] = {};
  int32_t bld_timer_[kBuildings] = {};
  // Episode bookkeeping.
  int32_t team_size_counter_ = 4;
  int32_t episode_step_ = 0;
  int32_t dynamic_state_ = 0;  // composition events applied in this episode (dynamic only)
  Rng world_rng_;
  Rng composition_rng_;

  TeamDraw team_;
  int64_t eval_episode_ = -1;
};

}  // namespace cpfast
