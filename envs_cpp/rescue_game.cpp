#include "rescue_game.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace cpfast {
namespace {

constexpr double kEps = 1e-9;
constexpr double kIgnitionProb = 0.01;
constexpr double kIgnitionIntensity = 0.1;
constexpr double kGrowth = 0.02;
constexpr double kBurnRate = 0.05;
constexpr double kDestroyPenalty = 2.0;
constexpr int32_t kRebuildSteps = 20;
constexpr int kViewRadius = 2;
constexpr int kCells = RescueGame::kGrid * RescueGame::kGrid;
constexpr double kPowerGrid[3] = {0.1, 0.2, 0.3};
constexpr double kSpeedGrid[3] = {0.5, 0.75, 1.0};
constexpr int kActionDir[5][2] = {{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}};
// Largest attribute set_state accepts: far beyond the zero-shot ranges, and its normalised
// observation stays finite in float32.
constexpr double kMaxAttr = 1e3;

}  // namespace

void RescueGame::Configure(const EnvOptions& options) {
  team_.Configure(options, "rescue");
}

void RescueGame::Seed(uint64_t world_seed, uint64_t composition_seed) {
  world_rng_.seed(world_seed);
  composition_rng_.seed(composition_seed);
}

void RescueGame::DrawComposition() {
  int cell[kAgents];
  const int row = team_.Draw(team_size_counter_, eval_episode_, 9, composition_rng_, agent_alive_, cell);
  if (row >= 0) {
    std::memcpy(agent_attr_, team_.Row(row, kAgents, 2), sizeof(agent_attr_));
  } else {
    for (int i = 0; i < kAgents; ++i) {  // e outer, s inner
      agent_attr_[i][0] = kPowerGrid[cell[i] / 3];
      agent_attr_[i][1] = kSpeedGrid[cell[i] % 3];
    }
  }
}

bool RescueGame::CellHasIntactBuilding(int x, int y) const {
  for (int b = 0; b < kBuildings; ++b)
    if (!bld_destroyed_[b] && bld_cell_[b][0] == x && bld_cell_[b][1] == y) return true;
  return false;
}

void RescueGame::Reset(const ObsSlot& out) {
  DrawComposition();
  bool taken[kCells] = {};
  for (int b = 0; b < kBuildings; ++b) {
    int c;
    do {
      c = world_rng_.randint(kCells);
    } while (taken[c]);
    taken[c] = true;
    bld_cell_[b][0] = c % kGrid;
    bld_cell_[b][1] = c / kGrid;
  }
  for (int b = 0; b < kBuildings; ++b) {
    bld_health_[b] = 0.5 + 0.5 * world_rng_.uniform();
    bld_burning_[b] = world_rng_.uniform() < 0.25;
    bld_intensity_[b] = bld_burning_[b] ? 0.1 + 0.4 * world_rng_.uniform() : 0.0;
    bld_destroyed_[b] = 0;
    bld_timer_[b] = 0;
  }
  for (int i = 0; i < kAgents; ++i) {
    agent_acc_[i] = 0.0;
    agent_cell_[i][0] = agent_cell_[i][1] = 0;
    if (!agent_alive_[i]) continue;
    const int c = world_rng_.randint(kCells);
    agent_cell_[i][0] = c % kGrid;
    agent_cell_[i][1] = c / kGrid;
  }
  episode_step_ = 0;
  dynamic_state_ = 0;
  WriteObservation(out);
}

void RescueGame::Move(const int32_t* actions) {
  for (int i = 0; i < kAgents; ++i) {
    if (!agent_alive_[i]) continue;
    double acc = agent_acc_[i] + agent_attr_[i][1];
    const int a = actions[i];
    if (a != 0 && acc >= 1.0 - kEps) {
      const int x = agent_cell_[i][0] + kActionDir[a][0];
      const int y = agent_cell_[i][1] + kActionDir[a][1];
      if (x >= 0 && x < kGrid && y >= 0 && y < kGrid) {
        agent_cell_[i][0] = x;
        agent_cell_[i][1] = y;
        acc -= 1.0;
      }
    }
    agent_acc_[i] = std::min(acc, 1.0);
  }
}

double RescueGame::Extinguish(int32_t* n_extinguished) {
  double reward = 0.0;
  for (int b = 0; b < kBuildings; ++b) {
    if (!bld_burning_[b]) continue;
    double power = 0.0;
    for (int i = 0; i < kAgents; ++i)
      if (agent_alive_[i] && agent_cell_[i][0] == bld_cell_[b][0] && agent_cell_[i][1] == bld_cell_[b][1])
        power += agent_attr_[i][0];
    if (power <= 0.0) continue;
    bld_intensity_[b] -= power;
    if (bld_intensity_[b] <= kEps) {
      bld_burning_[b] = 0;
      bld_intensity_[b] = 0.0;
      reward += 1.0 + 0.5 * bld_health_[b];
      ++*n_extinguished;
    }
  }
  return reward;
}

void RescueGame::Ignite() {
  for (int b = 0; b < kBuildings; ++b) {
    if (bld_destroyed_[b] || bld_burning_[b]) continue;
    if (world_rng_.uniform() < kIgnitionProb) {
      bld_burning_[b] = 1;
      bld_intensity_[b] = kIgnitionIntensity;
    }
  }
}

void RescueGame::GrowAndBurn() {
  for (int b = 0; b < kBuildings; ++b) {
    if (!bld_burning_[b]) continue;
    bld_intensity_[b] = std::min(1.0, bld_intensity_[b] + kGrowth);
    bld_health_[b] = std::max(0.0, bld_health_[b] - kBurnRate * bld_intensity_[b]);
  }
}

int RescueGame::DestroyAndRebuild() {
  int destroyed = 0;
  for (int b = 0; b < kBuildings; ++b) {
    if (bld_destroyed_[b]) {
      if (--bld_timer_[b] > 0) continue;
      int x, y;
      do {
        const int c = world_rng_.randint(kCells);
        x = c % kGrid;
        y = c / kGrid;
      } while (CellHasIntactBuilding(x, y));
      bld_cell_[b][0] = x;
      bld_cell_[b][1] = y;
      bld_destroyed_[b] = 0;
      bld_timer_[b] = 0;
      bld_health_[b] = 1.0;
      bld_burning_[b] = 0;
      bld_intensity_[b] = 0.0;
    } else if (bld_health_[b] <= kEps) {
      bld_destroyed_[b] = 1;
      bld_burning_[b] = 0;
      bld_intensity_[b] = 0.0;
      bld_health_[b] = 0.0;
      bld_timer_[b] = kRebuildSteps;
      ++destroyed;
    }
  }
  return destroyed;
}

void RescueGame::CompositionEvent() {
  const auto [join, slot] = TeamDraw::ChooseEvent(agent_alive_, composition_rng_);
  if (join) {
    agent_attr_[slot][0] = 0.05 + 0.30 * composition_rng_.uniform();
    agent_attr_[slot][1] = 0.4 + 0.6 * composition_rng_.uniform();
    const int c = composition_rng_.randint(kCells);
    agent_cell_[slot][0] = c % kGrid;
    agent_cell_[slot][1] = c / kGrid;
    agent_acc_[slot] = 0.0;
    agent_alive_[slot] = 1;
  } else {
    agent_alive_[slot] = 0;
    agent_cell_[slot][0] = agent_cell_[slot][1] = 0;
    agent_acc_[slot] = 0.0;
  }
  ++dynamic_state_;
}

void RescueGame::Step(const int32_t* actions, const StepSlot& out) {
  int32_t n_extinguished = 0;
  Move(actions);
  const double extinguish_reward = Extinguish(&n_extinguished);
  Ignite();
  GrowAndBurn();
  const int n_destroyed = DestroyAndRebuild();
  ++episode_step_;
  if (team_.EventDue(episode_step_, kDims.episode_limit))
    CompositionEvent();
  *out.reward = static_cast<float>(extinguish_reward - kDestroyPenalty * n_destroyed);
  *out.terminated = 0;
  *out.truncated = episode_step_ >= kDims.episode_limit;
  out.info[0] = n_extinguished;
  out.info[1] = n_destroyed;
  WriteObservation(out.obs);
}

void RescueGame::WriteObservation(const ObsSlot& out) const {
  constexpr int kEntities = kAgents + kBuildings;
  constexpr int d = kDims.feat_dim;
  constexpr int na = kDims.n_actions;
  std::memset(out.entities, 0, sizeof(float) * kEntities * d);
  std::memset(out.attributes, 0, sizeof(float) * kAgents * kDims.attr_dim);
  int32_t x[kEntities], y[kEntities];
  uint8_t present[kEntities];
  for (int i = 0; i < kAgents; ++i) {
    present[i] = static_cast<uint8_t>(agent_alive_[i]);
    x[i] = agent_cell_[i][0];
    y[i] = agent_cell_[i][1];
    if (!present[i]) continue;
    float* row = out.entities + i * d;
    row[0] = static_cast<float>(x[i] / 9.0);
    row[1] = static_cast<float>(y[i] / 9.0);
    row[2] = static_cast<float>(agent_acc_[i]);
    out.attributes[i * 2 + 0] = static_cast<float>((agent_attr_[i][0] - 0.05) / 0.30);
    out.attributes[i * 2 + 1] = static_cast<float>((agent_attr_[i][1] - 0.40) / 0.60);
  }
  for (int b = 0; b < kBuildings; ++b) {
    const int j = kAgents + b;
    present[j] = static_cast<uint8_t>(!bld_destroyed_[b]);
    x[j] = bld_cell_[b][0];
    y[j] = bld_cell_[b][1];
    if (!present[j]) continue;
    float* row = out.entities + j * d;
    row[0] = static_cast<float>(x[j] / 9.0);
    row[1] = static_cast<float>(y[j] / 9.0);
    row[2] = static_cast<float>(bld_health_[b]);
    row[3] = static_cast<float>(bld_burning_[b]);
    row[4] = static_cast<float>(bld_intensity_[b]);
  }
  std::memcpy(out.agent_present, present, kAgents);
  std::memcpy(out.entity_present, present, kEntities);
  for (int i = 0; i < kAgents; ++i) {
    uint8_t* obs = out.obs_mask + i * kEntities;
    uint8_t* full = out.full_mask + i * kEntities;
    uint8_t* avail = out.avail_actions + i * na;
    const uint8_t p = present[i];
    for (int j = 0; j < kEntities; ++j) {
      const uint8_t seen = p & present[j];
      full[j] = seen;
      obs[j] = seen & static_cast<uint8_t>(std::abs(x[i] - x[j]) <= kViewRadius && std::abs(y[i] - y[j]) <= kViewRadius);
    }
    avail[0] = 1;
    for (int a = 1; a < na; ++a) avail[a] = p;
  }
}

StateFields RescueGame::State() {
  return {
      {"agent_cell", DType::kI32, {kAgents, 2}, agent_cell_, 0, kGrid - 1},
      {"agent_acc", DType::kF64, {kAgents}, agent_acc_, 0, 1},
      {"agent_alive", DType::kI8, {kAgents}, agent_alive_, 0, 1},
      {"agent_attr", DType::kF64, {kAgents, 2}, agent_attr_, 0, kMaxAttr},
      {"bld_cell", DType::kI32, {kBuildings, 2}, bld_cell_, 0, kGrid - 1},
      {"bld_health", DType::kF64, {kBuildings}, bld_health_, 0, 1},
      {"bld_intensity", DType::kF64, {kBuildings}, bld_intensity_, 0, 1},
      {"bld_burning", DType::kI8, {kBuildings}, bld_burning_, 0, 1},
      {"bld_destroyed", DType::kI8, {kBuildings}, bld_destroyed_, 0, 1},
      {"bld_timer", DType::kI32, {kBuildings}, bld_timer_, 0, kRebuildSteps},
      {"team_size_counter", DType::kI32, {}, &team_size_counter_, 2, 4},
      {"episode_step", DType::kI32, {}, &episode_step_, 0, kDims.episode_limit - 1},
      {"dynamic_state", DType::kI32, {}, &dynamic_state_, 0, (kDims.episode_limit - 1) / 10},
      {"world_rng", DType::kU64, {4}, world_rng_.s, 0, 0},
      {"composition_rng", DType::kU64, {4}, composition_rng_.s, 0, 0},
  };
}

}  // namespace cpfast
