#include "resource_collection.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace cpfast {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kDt = 0.1;
constexpr double kVelocityKeep = 1.0 - 0.25;  // damping 0.25
constexpr double kContactForce = 100.0;
constexpr double kContactMargin = 1e-3;
constexpr double kAgentSize = 0.04;
constexpr double kViewRadius = 0.2;
constexpr double kLandmarkSize[ResourceCollection::kLandmarks] = {0.08, 0.05, 0.05, 0.05,
                                                                  0.05, 0.05, 0.05, 0.03};
// One-hot type index of each landmark over {home, type 1, type 2, type 3, invader}.
constexpr int kLandmarkType[ResourceCollection::kLandmarks] = {0, 1, 2, 3, 1, 2, 3, 4};
constexpr double kGrid[3] = {0.1, 0.5, 0.9};
constexpr double kSpeedGrid[3] = {0.3, 0.5, 0.7};
constexpr double kActionDir[5][2] = {{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}};

// A pair whose gap exceeds this many contact margins gets exp(-gap/k) == 0 exactly in
// float64 (exp underflows below -745.2), so skipping it changes no bit of the result.
constexpr double kNoContactGap = 746.0 * kContactMargin;
// set_state accepts positions and velocities within +-kStateBound and attributes (speeds) up to
// kMaxAttr, and Integrate keeps positions within the bound: every product and square stays finite
// in float64 and every observation in float32. Play never comes near either limit.
constexpr double kStateBound = 1e6;
constexpr double kMaxAttr = 1e3;

// log(1 + e^x), the reference's np.logaddexp(0, x).
inline double LogAddExp0(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }

inline double Distance(const double* a, const double* b) {
  const double dx = a[0] - b[0], dy = a[1] - b[1];
  return std::sqrt(dx * dx + dy * dy);
}

// Engine collision test: centres within size_a + size_b + 0.01.
inline bool Within(const double* a, double size_a, const double* b, double size_b) {
  return Distance(a, b) <= size_a + size_b + 0.01;
}

inline double Clip(double x, double lo, double hi) { return std::min(std::max(x, lo), hi); }

// Force of the hard wall on an entity of radius r at p (docs/environments.md, RC §6.2).
inline void AddWallForce(const double* p, double r, bool horizontal, double axis_pos, double* force) {
  const int prll = horizontal ? 0 : 1;
  const int perp = horizontal ? 1 : 0;
  constexpr double kEnd0 = -1.0, kEnd1 = 1.0, kHalfWidth = 0.5;
  double theta, dist_min;
  if (p[prll] < kEnd0 - r || p[prll] > kEnd1 + r) return;
  if (p[prll] < kEnd0 || p[prll] > kEnd1) {
    const double past_end = p[prll] < kEnd0 ? p[prll] - kEnd0 : p[prll] - kEnd1;
    theta = std::asin(past_end / r);
    dist_min = std::cos(theta) * r + kHalfWidth;
  } else {
    theta = 0.0;
    dist_min = r + kHalfWidth;
  }
  const double delta = p[perp] - axis_pos;
  const double dist = std::fabs(delta);
  if (dist == 0.0) return;  // centre on the wall's axis: no direction to push (0/0 otherwise)
  const double penetration = LogAddExp0(-(dist - dist_min) / kContactMargin) * kContactMargin;
  const double magnitude = kContactForce * delta / dist * penetration;
  force[perp] += std::cos(theta) * magnitude;
  force[prll] += std::sin(theta) * std::fabs(magnitude);
}

}  // namespace

void ResourceCollection::Configure(const EnvOptions& options) {
  team_.Configure(options, "resource_collection");
}

void ResourceCollection::Seed(uint64_t world_seed, uint64_t composition_seed) {
  world_rng_.seed(world_seed);
  composition_rng_.seed(composition_seed);
}

void ResourceCollection::DrawComposition() {
  int cell[kAgents];
  const int row = team_.Draw(team_size_counter_, eval_episode_, 81, composition_rng_, agent_alive_, cell);
  for (int i = 0; i < kAgents; ++i) {
    if (row >= 0) {
      std::memcpy(agent_attr_[i], team_.Row(row, kAgents, 4) + i * 4, sizeof(agent_attr_[i]));
    } else {  // p1 outermost, s innermost
      agent_attr_[i][0] = kGrid[cell[i] / 27];
      agent_attr_[i][1] = kGrid[(cell[i] / 9) % 3];
      agent_attr_[i][2] = kGrid[(cell[i] / 3) % 3];
      agent_attr_[i][3] = kSpeedGrid[cell[i] % 3];
    }
  }
}

void ResourceCollection::PlaceResource(int j, bool respawn) {
  // Reset checks resources 1..j-2 (the preceding one is skipped, a reference quirk);
  // a respawn checks every alive resource, its own old position included.
  for (;;) {
    const double theta = 2.0 * kPi * world_rng_.uniform();
    const double r = 0.4 + 0.55 * world_rng_.uniform();
    const double cand[2] = {Clip(r * std::cos(theta), -0.95, 0.95), Clip(r * std::sin(theta), -0.95, 0.95)};
    bool too_close = false;
    const int last = respawn ? 6 : j - 2;
    for (int k = 1; k <= last && !too_close; ++k)
      too_close = (!respawn || lm_alive_[k]) && Distance(cand, lm_pos_[k]) < 0.1;
    if (!too_close) {
      lm_pos_[j][0] = cand[0];
      lm_pos_[j][1] = cand[1];
      return;
    }
  }
}

void ResourceCollection::PlaceInvader() {
  const double theta = 2.0 * kPi * world_rng_.uniform();
  lm_pos_[kInvader][0] = Clip(1.42 * std::cos(theta), -0.99, 0.99);
  lm_pos_[kInvader][1] = Clip(1.42 * std::sin(theta), -0.99, 0.99);
}

void ResourceCollection::Reset(const ObsSlot& out) {
  DrawComposition();
  int team_size = 0;
  for (int i = 0; i < kAgents; ++i) team_size += agent_alive_[i];
  for (int i = 0; i < kAgents; ++i) {
    agent_vel_[i][0] = agent_vel_[i][1] = 0.0;
    agent_hold_[i] = 0;
    agent_at_[i] = -1;
    if (agent_alive_[i]) {
      const double angle = 2.0 * kPi * i / team_size;
      agent_pos_[i][0] = 0.12 * std::cos(angle);
      agent_pos_[i][1] = 0.12 * std::sin(angle);
    } else {
      agent_pos_[i][0] = agent_pos_[i][1] = 0.0;
    }
  }
  lm_pos_[0][0] = lm_pos_[0][1] = 0.0;
  for (int j = 1; j <= 6; ++j) {
    PlaceResource(j, false);
    lm_alive_[j] = 1;
  }
  PlaceInvader();  // alive flag and timer carry over from the last episode (reference quirk)
  episode_step_ = 0;
  WriteObservation(out, kAllAgentRows);
}

void ResourceCollection::ApplyForces(const int32_t* actions, double force[kAgents][2]) const {
  constexpr int kEntities = kAgents + kLandmarks;
  const double* pos[kEntities];
  double size[kEntities];
  bool alive[kEntities];
  for (int i = 0; i < kAgents; ++i) {
    pos[i] = agent_pos_[i];
    size[i] = kAgentSize;
    alive[i] = agent_alive_[i];
    // Action force u * accel, accel = 5 s; absent slots feel nothing.
    const int action = alive[i] ? actions[i] : 0;
    const double accel = 5.0 * agent_attr_[i][3];
    force[i][0] = kActionDir[action][0] * accel;
    force[i][1] = kActionDir[action][1] * accel;
  }
  for (int l = 0; l < kLandmarks; ++l) {
    pos[kAgents + l] = lm_pos_[l];
    size[kAgents + l] = kLandmarkSize[l];
    alive[kAgents + l] = lm_alive_[l];
  }
  // Pairs (a, b), a < b; only agents move, so pairs of landmarks exert nothing.
  for (int a = 0; a < kAgents; ++a) {
    if (!alive[a]) continue;
    for (int b = a + 1; b < kEntities; ++b) {
      if (!alive[b]) continue;
      const double dx = pos[a][0] - pos[b][0], dy = pos[a][1] - pos[b][1];
      const double dist_min = size[a] + size[b];
      const double reach = dist_min + kNoContactGap;
      if (dx * dx + dy * dy > reach * reach) continue;
      const double dist = std::sqrt(dx * dx + dy * dy);
      // Coincident centres (an agent exactly on home, a resource or another agent): the
      // contact direction is undefined, so no contact force (dx / dist would be 0/0).
      if (dist == 0.0) continue;
      const double penetration = LogAddExp0(-(dist - dist_min) / kContactMargin) * kContactMargin;
      const double fx = kContactForce * dx / dist * penetration;
      const double fy = kContactForce * dy / dist * penetration;
      force[a][0] += fx;
      force[a][1] += fy;
      if (b < kAgents) {
        force[b][0] -= fx;
        force[b][1] -= fy;
      }
    }
    AddWallForce(pos[a], kAgentSize, true, 1.4, force[a]);
    AddWallForce(pos[a], kAgentSize, true, -1.4, force[a]);
    AddWallForce(pos[a], kAgentSize, false, 1.4, force[a]);
    AddWallForce(pos[a], kAgentSize, false, -1.4, force[a]);
  }
}

void ResourceCollection::Integrate(const double force[kAgents][2]) {
  for (int i = 0; i < kAgents; ++i) {
    if (!agent_alive_[i]) continue;
    double* v = agent_vel_[i];
    const double max_speed = agent_attr_[i][3];
    v[0] = v[0] * kVelocityKeep + force[i][0] * kDt;
    v[1] = v[1] * kVelocityKeep + force[i][1] * kDt;
    const double speed = std::sqrt(v[0] * v[0] + v[1] * v[1]);
    if (speed > max_speed) {
      v[0] = v[0] / speed * max_speed;
      v[1] = v[1] / speed * max_speed;
    }
    for (int c = 0; c < 2; ++c) {
      agent_pos_[i][c] += v[c] * kDt;
      if (std::fabs(agent_pos_[i][c]) > kStateBound) agent_pos_[i][c] = std::copysign(kStateBound, agent_pos_[i][c]);
    }
  }
}

void ResourceCollection::KillInvader() {
  lm_alive_[kInvader] = 0;
  lm_pos_[kInvader][0] = lm_pos_[kInvader][1] = 0.0;
  invader_timer_ = world_rng_.randint(10) + 1;
}

double ResourceCollection::AgentReward(int i) {
  double r = 0.0;
  const double* p = agent_pos_[i];
  if (lm_alive_[kInvader] &&
      Within(lm_pos_[kInvader], kLandmarkSize[kInvader], lm_pos_[0], kLandmarkSize[0])) {
    r -= 4.0;  // the invader reached home; charged to the first agent evaluated
    KillInvader();
  }
  if (lm_alive_[kInvader] && Within(p, kAgentSize, lm_pos_[kInvader], kLandmarkSize[kInvader])) {
    r += 4.0;
    KillInvader();
    agent_at_[i] = 4;
    return r;
  }
  for (int j = 1; j <= 6; ++j) {
    if (lm_alive_[j] && agent_hold_[i] == 0 && Within(p, kAgentSize, lm_pos_[j], kLandmarkSize[j])) {
      const int type = kLandmarkType[j];
      lm_alive_[j] = 0;
      agent_hold_[i] = static_cast<int8_t>(type);
      agent_at_[i] = static_cast<int8_t>(type);
      return r + 10.0 * agent_attr_[i][type - 1];
    }
  }
  if (agent_hold_[i] != 0 && Within(p, kAgentSize, lm_pos_[0], kLandmarkSize[0])) {
    agent_hold_[i] = 0;
    agent_at_[i] = 0;
    return r + 1.0;
  }
  agent_at_[i] = -1;
  return r;
}

void ResourceCollection::PostStep() {
  for (int j = 1; j <= 6; ++j) {
    if (lm_alive_[j]) continue;
    lm_alive_[j] = 1;
    PlaceResource(j, true);
  }
  if (!lm_alive_[kInvader]) {
    if (invader_timer_ <= 0) {
      lm_alive_[kInvader] = 1;
      PlaceInvader();
    } else {
      --invader_timer_;
    }
  } else {
    double* p = lm_pos_[kInvader];
    const double norm = std::sqrt(p[0] * p[0] + p[1] * p[1]);
    if (norm > 0.0) {  // an invader exactly at the origin has no direction to move in
      p[0] -= 0.05 * p[0] / norm;
      p[1] -= 0.05 * p[1] / norm;
    }
  }
}

int ResourceCollection::CompositionEvent() {
  const auto [join, slot] = TeamDraw::ChooseEvent(agent_alive_, composition_rng_);
  if (join) {
    for (int k = 0; k < 3; ++k) agent_attr_[slot][k] = composition_rng_.uniform();
    agent_attr_[slot][3] = 0.2 + 0.6 * composition_rng_.uniform();
    const double theta = 2.0 * kPi * composition_rng_.uniform();
    agent_alive_[slot] = 1;
    agent_pos_[slot][0] = 0.12 * std::cos(theta);
    agent_pos_[slot][1] = 0.12 * std::sin(theta);
  } else {
    agent_alive_[slot] = 0;
    agent_pos_[slot][0] = agent_pos_[slot][1] = 0.0;  // a carried resource is lost
  }
  agent_vel_[slot][0] = agent_vel_[slot][1] = 0.0;
  agent_hold_[slot] = 0;
  agent_at_[slot] = -1;
  return slot;
}

void ResourceCollection::Step(const int32_t* actions, const StepSlot& out) {
  double force[kAgents][2];
  ApplyForces(actions, force);
  Integrate(force);
  const int d = kDims.feat_dim;
  float team_reward = 0.0f;
  for (int i = 0; i < kAgents; ++i) {
    // The row shows hold/at before this agent's reward: one step late (reference quirk).
    WriteAgentRow(i, out.obs.entities + i * d);
    const double r = agent_alive_[i] ? AgentReward(i) : 0.0;
    out.agent_rewards[i] = static_cast<float>(r);
    team_reward += static_cast<float>(r);
  }
  PostStep();
  ++episode_step_;
  unsigned rewritten_rows = 0;
  if (team_.EventDue(episode_step_, kDims.episode_limit))
    rewritten_rows = 1u << CompositionEvent();
  *out.reward = team_reward;
  *out.terminated = 0;
  *out.truncated = episode_step_ >= kDims.episode_limit;
  WriteObservation(out.obs, rewritten_rows);
}

void ResourceCollection::WriteAgentRow(int i, float* row) const {
  std::memset(row, 0, sizeof(float) * kDims.feat_dim);
  row[0] = static_cast<float>(agent_vel_[i][0]);
  row[1] = static_cast<float>(agent_vel_[i][1]);
  row[2] = static_cast<float>(agent_pos_[i][0]);
  row[3] = static_cast<float>(agent_pos_[i][1]);
  row[4 + agent_hold_[i]] = 1.0f;
  row[8 + agent_at_[i] + 1] = 1.0f;
}

void ResourceCollection::WriteLandmarkRows(float* entities) const {
  const int d = kDims.feat_dim;
  for (int l = 0; l < kLandmarks; ++l) {
    float* row = entities + (kAgents + l) * d;
    std::memset(row, 0, sizeof(float) * d);
    row[0] = static_cast<float>(lm_pos_[l][0]);
    row[1] = static_cast<float>(lm_pos_[l][1]);
    row[2 + kLandmarkType[l]] = 1.0f;
  }
}

void ResourceCollection::WriteObservation(const ObsSlot& out, unsigned agent_rows) const {
  constexpr int kEntities = kAgents + kLandmarks;
  const int d = kDims.feat_dim;
  for (int i = 0; i < kAgents; ++i)
    if (agent_rows & (1u << i)) WriteAgentRow(i, out.entities + i * d);
  WriteLandmarkRows(out.entities);
  for (int i = 0; i < kAgents; ++i)
    for (int c = 0; c < 4; ++c) out.attributes[i * 4 + c] = static_cast<float>(agent_attr_[i][c]);
  for (int i = 0; i < kAgents; ++i) out.entity_present[i] = out.agent_present[i] = agent_alive_[i];
  for (int l = 0; l < kLandmarks; ++l) out.entity_present[kAgents + l] = lm_alive_[l];
  for (int i = 0; i < kAgents; ++i) {
    uint8_t* obs = out.obs_mask + i * kEntities;
    uint8_t* full = out.full_mask + i * kEntities;
    uint8_t* avail = out.avail_actions + i * kDims.n_actions;
    const bool present = agent_alive_[i];
    for (int j = 0; j < kAgents; ++j)
      obs[j] = present && agent_alive_[j] && Distance(agent_pos_[i], agent_pos_[j]) <= kViewRadius;
    for (int l = 0; l < kLandmarks; ++l)
      obs[kAgents + l] =
          present && lm_alive_[l] && Distance(agent_pos_[i], lm_pos_[l]) <= kViewRadius + kLandmarkSize[l];
    for (int j = 0; j < kEntities; ++j) full[j] = present && out.entity_present[j];
    avail[0] = 1;
    for (int a = 1; a < kDims.n_actions; ++a) avail[a] = present;
  }
}

StateFields ResourceCollection::State() {
  return {
      {"agent_pos", DType::kF64, {kAgents, 2}, agent_pos_, -kStateBound, kStateBound},
      {"agent_vel", DType::kF64, {kAgents, 2}, agent_vel_, -kStateBound, kStateBound},
      {"agent_alive", DType::kI8, {kAgents}, agent_alive_, 0, 1},
      {"agent_hold", DType::kI8, {kAgents}, agent_hold_, 0, 3},
      {"agent_at", DType::kI8, {kAgents}, agent_at_, -1, 4},
      {"agent_attr", DType::kF64, {kAgents, 4}, agent_attr_, 0, kMaxAttr},
      {"lm_pos", DType::kF64, {kLandmarks, 2}, lm_pos_, -kStateBound, kStateBound},
      {"lm_alive", DType::kI8, {kLandmarks}, lm_alive_, 0, 1},
      {"invader_timer", DType::kI32, {}, &invader_timer_, 0, 10},
      {"team_size_counter", DType::kI32, {}, &team_size_counter_, 2, 4},
      {"episode_step", DType::kI32, {}, &episode_step_, 0, kDims.episode_limit - 1},
      {"world_rng", DType::kU64, {4}, world_rng_.s, 0, 0},
      {"composition_rng", DType::kU64, {4}, composition_rng_.s, 0, 0},
  };
}

}  // namespace cpfast
