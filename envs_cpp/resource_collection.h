// Resource Collection (docs/environments.md, Resource Collection), faithful to the reference
// particle engine, float64 physics, float32 outputs.
#pragma once
#include <cstdint>

#include "env_api.h"
#include "rng.h"
#include "team_composition.h"

namespace cpfast {

class ResourceCollection {
 public:
  static constexpr int kAgents = 6;
  static constexpr int kLandmarks = 8;  // home, resources 1..6, invader
  static constexpr int kInvader = 7;
  static constexpr EnvDims kDims{kAgents, kAgents + kLandmarks, 14, 14, 7, 4, 5, 145};

  static std::vector<std::string> Compositions() { return TeamDraw::Names(); }
  // The period of `dynamic`'s composition events.
  static void Facts(EnvFacts& facts) { facts["composition_event_period"] = {kCompositionEventPeriod}; }

  void Configure(const EnvOptions& options);
  void Seed(uint64_t world_seed, uint64_t composition_seed);
  // k >= 0: the next resets are evaluation episode k (zero-shot table row k mod rows);
  // k < 0: training, rows drawn from the composition stream.
  void SetEvalEpisode(int64_t k) { eval_episode_ = k; }
  void Reset(const ObsSlot& out);
  void Step(const int32_t* actions, const StepSlot& out);
  static constexpr unsigned kAllAgentRows = (1u << kAgents) - 1;
  // Writes every output of the current state except the agent rows not named in agent_rows
  // (a bit per slot): during a step those rows were written before the rewards.
  void WriteObservation(const ObsSlot& out, unsigned agent_rows = kAllAgentRows) const;
  int EpisodeStep() const { return episode_step_; }
  StateFields State();

 private:
  void DrawComposition();
  void PlaceResource(int j, bool respawn);
  void PlaceInvader();
  void ApplyForces(const int32_t* actions, double force[kAgents][2]) const;
  void Integrate(const double force[kAgents][2]);
  double AgentReward(int i);
  void KillInvader();
  void PostStep();
  int CompositionEvent();  // returns the slot that joined or left
  void WriteAgentRow(int i, float* row) const;
  void WriteLandmarkRows(float* entities) const;

  // World state (the keys of the conformance records).
  double agent_pos_[kAgents][2] = {};
  double agent_vel_[kAgents][2] = {};
  int8_t agent_alive_[kAgents] = {};
  int8_t agent_hold_[kAgents] = {};
  int8_t agent_at_[kAgents] = {};
  double agent_attr_[kAgents][4] = {};
  double lm_pos_[kLandmarks][2] = {};
  int8_t lm_alive_[kLandmarks] = {1, 1, 1, 1, 1, 1, 1, 1};
  int32_t invader_timer_ = 0;
  // Episode bookkeeping.
  int32_t team_size_counter_ = 4;
  int32_t episode_step_ = 0;
  Rng world_rng_;
  Rng composition_rng_;

  TeamDraw team_;
  int64_t eval_episode_ = -1;
};

}  // namespace cpfast
