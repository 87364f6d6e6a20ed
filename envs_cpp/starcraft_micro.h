// StarCraft micromanagement simulator for REFIL's 3-8sz and 3-8MMM scenarios
// (docs/environments.md, StarCraft). Float64 simulation, float32 outputs.
#pragma once
#include <array>
#include <cstdint>

#include "env_api.h"
#include "rng.h"

namespace cpfast {

namespace sc2 {

enum UnitType : int8_t { kNone = -1, kMarine = 0, kMarauder = 1, kMedivac = 2, kStalker = 3, kZealot = 4 };
constexpr int kNumTypes = 5;

enum Order : int8_t { kIdle = 0, kMove = 1, kAttackUnit = 2, kHealUnit = 3, kAttackMove = 4 };

enum class Scenario { kSz, kMMM };

// Unit data of docs/environments.md, StarCraft §4, per loop where it matters.
struct UnitStats {
  double hp, shield, armour;
  bool armored, air;
  double radius, speed;  // speed in map units per loop
  double damage, bonus_vs_armored;
  int hits;
  double range, period;  // edge-to-edge range; period in loops
  bool hits_ground, hits_air;
  bool healer;
  double cooldown_norm;   // REFIL's feature normaliser (loops)
  int refil_ally_id, stock_id;
};

extern const UnitStats kStats[kNumTypes];

constexpr int kMaxPerSide = 8;
constexpr int kUnits = 2 * kMaxPerSide;  // allies 0..7, enemies 8..15
constexpr double kMapSize = 32.0;
constexpr int kLoopsPerStep = 8;
constexpr int kMaxCompositions = 66;

// One scenario's layout and compositions (StarCraft §2, §9).
struct ScenarioInfo {
  int n_types;                 // types of this scenario, in spec order
  int8_t types[3];             // spec order (sz: Stalker, Zealot; MMM: Marine, Marauder, Medivac)
  int8_t one_hot[kNumTypes];   // type-one-hot column (sorted stock ids), -1 if absent
  int n_compositions;
  int8_t counts[kMaxCompositions][3];  // per spec-order type
  double max_reward;
  bool protoss;
};

const ScenarioInfo& GetScenario(Scenario s);

}  // namespace sc2

template <sc2::Scenario S>
class StarCraftMicro {
 public:
  static constexpr bool kMMM = S == sc2::Scenario::kMMM;
  static constexpr int kAgents = sc2::kMaxPerSide;
  static constexpr int kActions = kMMM ? 22 : 14;
  static constexpr int kTypeDim = kMMM ? 3 : 2;
  static constexpr int kHealthDim = kMMM ? 1 : 2;
  // tag 16 | avail (n_actions - 2) | type | health(, shield) | energy, cooldown | position 4
  static constexpr int kColAvail = 16;
  static constexpr int kColType = kColAvail + kActions - 2;
  static constexpr int kColHealth = kColType + kTypeDim;
  static constexpr int kColEnergy = kColHealth + kHealthDim;
  static constexpr int kColPos = kColEnergy + 2;
  static constexpr int kFeat = kColPos + 4;
  // The *calibrate* parameters (docs/environments.md, StarCraft §3, §6, §7, §4 weapons) as
  // make_env options; the defaults are the documented values. Fitted by
  // cpfast.envs.sc2_calibration (StarCraft §12).
  static constexpr EnvOptionSpec kOptions[] = {
      {"enemy_scan", 5.0, 0.0, 32.0, false},            // acquisition scan: max(weapon range, this), edge to edge
      {"enemy_leash", 2.0, 0.0, 32.0, false},           // an enemy drops a target beyond scan + leash
      {"separation_firmness", 0.5, 0.0, 1.0, false},    // push per tick, fraction of the overlap
      {"spawn_gap", 0.1, 0.0, 4.0, false},              // gap between neighbours of a spawn spiral
      {"failed_order", 0.0, 0.0, 1.0, true},            // attack on a target it cannot hit: 0 idle, 1 keep order
      {"enemy_medivac_speed", 2.75, 0.1, 10.0, false},  // enemy (stock) Medivac speed, per game second
      {"damage_scale", 1.0, 0.1, 10.0, false},          // multiplies every weapon's damage and bonus
      {"cooldown_scale", 1.0, 0.1, 10.0, false},        // multiplies every weapon's period
  };
  static constexpr EnvDims kDims{kAgents, sc2::kUnits, kFeat, kFeat, kFeat, kTypeDim, kActions, 150};
  // Outcome of the step that ended an episode (SMAC's battle_won; exactly one of the three is 1
  // there, all 0 on other steps): a time-out is a draw, as is mutual annihilation in 3-8sz.
  static constexpr const char* kInfoKeys[] = {"battle_won", "battle_draw", "battle_lost", "timeout",
                                              "composition_index"};
  static constexpr OutcomeFlag kOutcomes[] = {
      {"battle_won", "win_rate"}, {"battle_draw", "draw_rate"}, {"battle_lost", "loss_rate"}};
  // "train" draws a composition per reset; "<k>" fixes the k-th of the scenario's list (§9).
  static std::vector<std::string> Compositions();

  // Feature columns of an entity row, the game's unit ids and maximum health and shield per type
  // (index = unit_type), the reward normaliser and the number of compositions (StarCraft §2-§9).
  static void Facts(EnvFacts& facts);

  void Configure(const EnvOptions& options);
  void Seed(uint64_t world_seed, uint64_t composition_seed);
  void SetEvalEpisode(int64_t) {}
  int EpisodeStep() const { return episode_step_; }
  void Reset(const ObsSlot& out);
  void Step(const int32_t* actions, const StepSlot& out);
  void WriteObservation(const ObsSlot& out) const;
  StateFields State();

  // A step in two halves, so that the real game can advance the world in between (its units
  // written in with set_state's fields): BeginStep keeps what the reward needs of the state
  // before the step; FinishStep counts the step and scores it (StarCraft §8).
  struct StepStart {
    double enemy_health_shield[sc2::kMaxPerSide];
    bool enemy_alive[sc2::kMaxPerSide];
  };
  StepStart BeginStep() const;
  void FinishStep(const StepStart& start, const StepSlot& out);

 private:
  struct Work;  // per-step working set (starcraft_micro.cpp)
  void Spawn();
  void SetAllyOrders(const int32_t* actions);
  void LoadWork(Work& w) const;
  void Tick(Work& w);
  void EnemyAcquire(const Work& w, int u);
  void DesiredVelocity(const Work& w, int u, double v[2], bool& firing) const;
  void ApplyHits(Work& w, int attacker, int target);
  bool Alive(int u) const { return u >= 0 && type_[u] >= 0 && alive_[u]; }
  bool CanHit(int attacker, int target) const;
  double Speed(int u) const {  // per loop; the enemy's stock Medivac may differ (option)
    return u >= sc2::kMaxPerSide && type_[u] == sc2::kMedivac ? enemy_medivac_speed_ : sc2::kStats[type_[u]].speed;
  }
  void AvailActions(int a, const double* d2, uint8_t* row) const;  // d2: a's squared distances to all units

  // World state (get_state/set_state keys).
  int8_t type_[sc2::kUnits] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
  int8_t alive_[sc2::kUnits] = {};
  int8_t tag_[sc2::kUnits] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
  double pos_[sc2::kUnits][2] = {};
  double health_[sc2::kUnits] = {};
  double shield_[sc2::kUnits] = {};
  double energy_[sc2::kUnits] = {};
  double cooldown_[sc2::kUnits] = {};
  int32_t since_damage_[sc2::kUnits] = {};
  int8_t order_[sc2::kUnits] = {};
  int8_t order_target_[sc2::kUnits] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1};
  double order_point_[sc2::kUnits][2] = {};
  int32_t composition_index_ = 0;
  int32_t episode_step_ = 0;
  int8_t jitter_ = 1;  // cooldown jitter on (1) or off (0, for analytic tests)
  Rng world_rng_;
  Rng composition_rng_;

  int fixed_composition_ = -1;  // -1: sample per reset
  // Option values (kOptions), fixed at Configure; not part of the state.
  double enemy_scan_ = 5.0, enemy_leash_ = 2.0, firmness_ = 0.5, spawn_gap_ = 0.1;
  bool failed_order_keep_ = false;
  double enemy_medivac_speed_ = 2.75 / 16, damage_scale_ = 1.0, cooldown_scale_ = 1.0;
};

using StarCraftSz = StarCraftMicro<sc2::Scenario::kSz>;
using StarCraftMMM = StarCraftMicro<sc2::Scenario::kMMM>;

}  // namespace cpfast
