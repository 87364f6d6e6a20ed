// Generic batched runner: owns N environments of one class, their batch buffers and a
// thread pool, and steps all N in one call with same-step auto-reset.
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "env_api.h"
#include "rng.h"
#include "thread_pool.h"

namespace cpfast {

// One observation set ([N, ...] arrays of the common interface).
struct ObsBuffers {
  std::vector<float> entities, attributes;
  std::vector<uint8_t> agent_present, entity_present, obs_mask, full_mask, avail_actions;

  void Allocate(int n, const EnvDims& d) {
    entities.assign(static_cast<size_t>(n) * d.max_entities * d.feat_dim, 0.0f);
    attributes.assign(static_cast<size_t>(n) * d.max_agents * d.attr_dim, 0.0f);
    agent_present.assign(static_cast<size_t>(n) * d.max_agents, 0);
    entity_present.assign(static_cast<size_t>(n) * d.max_entities, 0);
    obs_mask.assign(static_cast<size_t>(n) * d.max_agents * d.max_entities, 0);
    full_mask.assign(obs_mask.size(), 0);
    avail_actions.assign(static_cast<size_t>(n) * d.max_agents * d.n_actions, 0);
  }

  ObsSlot At(int i, const EnvDims& d) {
    const size_t a = d.max_agents, e = d.max_entities;
    return {entities.data() + i * e * d.feat_dim,   attributes.data() + i * a * d.attr_dim,
            agent_present.data() + i * a,           entity_present.data() + i * e,
            obs_mask.data() + i * a * e,            full_mask.data() + i * a * e,
            avail_actions.data() + i * a * d.n_actions};
  }

  void CopyEnv(int i, ObsBuffers& dst, const EnvDims& d) {
    const ObsSlot s = At(i, d), t = dst.At(i, d);
    const size_t a = d.max_agents, e = d.max_entities;
    std::memcpy(t.entities, s.entities, sizeof(float) * e * d.feat_dim);
    std::memcpy(t.attributes, s.attributes, sizeof(float) * a * d.attr_dim);
    std::memcpy(t.agent_present, s.agent_present, a);
    std::memcpy(t.entity_present, s.entity_present, e);
    std::memcpy(t.obs_mask, s.obs_mask, a * e);
    std::memcpy(t.full_mask, s.full_mask, a * e);
    std::memcpy(t.avail_actions, s.avail_actions, a * d.n_actions);
  }
};

struct RunnerConfig {
  int num_envs = 1;
  uint64_t seed = 0;
  int num_threads = 1;
  bool eval = false;       // evaluation seeding (docs/interface.md §5.3)
  uint64_t eval_seed = 0;  // E; also used for explicit episode_seeds in training mode
  std::string composition;
  std::vector<double> zero_shot_table;  // [rows, N_A, D_c], owned here
  int zero_shot_rows = 0;
  std::map<std::string, double> params;  // named options (EnvOptions::params)
};

template <class Env>
class BatchedRunner {
 public:
  static constexpr EnvDims kDims = Env::kDims;
  static constexpr int kInfoCount = EnvInfoKeys<Env>::kCount;

  explicit BatchedRunner(const RunnerConfig& config)
      : config_(config), envs_(config.num_envs), pool_(config.num_threads) {
    if (config.num_envs < 1) throw std::invalid_argument("num_envs must be at least 1");
    const int n = config.num_envs;
    obs.Allocate(n, kDims);
    final_obs.Allocate(n, kDims);
    reward.assign(n, 0.0f);
    terminated.assign(n, 0);
    truncated.assign(n, 0);
    agent_rewards.assign(static_cast<size_t>(n) * kDims.max_agents, 0.0f);
    info.assign(static_cast<size_t>(n) * kInfoCount, 0);
    episode_step.assign(n, 0);
    episode_return.assign(n, 0.0f);
    episode_length.assign(n, 0);
    running_return_.assign(n, 0.0);
    episodes_started_.assign(n, 0);
    EnvOptions options;
    options.composition = config_.composition;
    options.zero_shot_table = config_.zero_shot_table.empty() ? nullptr : config_.zero_shot_table.data();
    options.zero_shot_rows = config_.zero_shot_rows;
    options.params = config_.params;
    // An environment without kOptions takes none: reject any given rather than ignore it.
    if (EnvOptionSpecs<Env>::kCount == 0) ResolveOptions(options, nullptr, 0, "this environment", nullptr);
    for (int i = 0; i < n; ++i) {
      envs_[i].Configure(options);
      envs_[i].Seed(derive_seed(config.seed, i, 0), derive_seed(config.seed, i, 1));
    }
  }

  int num_envs() const { return config_.num_envs; }
  // Held by every binding that reads or writes runner state (step, reset, get_state,
  // set_state): the runner is not reentrant (its pool runs one ParallelFor at a time and the
  // envs share the batch buffers), so calls from several Python threads run one at a time.
  std::mutex& mutex() { return mutex_; }
  int num_threads() const { return pool_.num_threads(); }
  Env& env(int i) { return envs_.at(i); }

  // Resets the given envs (all when ids is null); episode_seeds, when given, are the
  // evaluation episode indices k of those envs' new episodes.
  void Reset(const int32_t* ids, int n_ids, const int64_t* episode_seeds) {
    auto body = [&](int begin, int end) {
      for (int k = begin; k < end; ++k) {
        const int i = ids ? ids[k] : k;
        ResetEnv(i, episode_seeds ? episode_seeds[k] : -1);
        reward[i] = 0.0f;
        terminated[i] = truncated[i] = 0;
        std::memset(agent_rewards.data() + static_cast<size_t>(i) * kDims.max_agents, 0,
                    sizeof(float) * kDims.max_agents);
        for (int c = 0; c < kInfoCount; ++c) info[static_cast<size_t>(i) * kInfoCount + c] = 0;
        episode_return[i] = 0.0f;
        episode_length[i] = 0;
      }
    };
    pool_.ParallelFor(ids ? n_ids : config_.num_envs, body);
  }

  // actions: [N, N_A] of an integer type. Every action is checked (range for all slots,
  // availability for present agents) before any environment changes; the first bad one
  // raises std::invalid_argument naming env, slot, action and the avail_actions row.
  template <class Action>
  void Step(const Action* actions) {
    const int n = config_.num_envs;
    constexpr int a = kDims.max_agents;
    CheckActions(actions);
    auto body = [&](int begin, int end) {
      int32_t env_actions[a];
      for (int i = begin; i < end; ++i) {
        for (int s = 0; s < a; ++s) env_actions[s] = static_cast<int32_t>(actions[static_cast<size_t>(i) * a + s]);
        StepEnv(i, env_actions);
      }
    };
    pool_.ParallelFor(n, body);
  }

  // The check Step makes, alone: for a backend that plays the actions elsewhere (the real game).
  template <class Action>
  void CheckActions(const Action* actions) const {
    // Serial: a few nanoseconds per action, and it keeps each step to one pool sync.
    for (int64_t k = 0; k < static_cast<int64_t>(config_.num_envs) * kDims.max_agents; ++k)
      if (!ActionValid(k, actions[k])) ThrowInvalidAction(k, static_cast<int64_t>(actions[k]));
  }

  // One step of env i whose world `advance()` moved outside the simulator (the real game's
  // units written into the env's state): the env scores it with its own rules, and the runner
  // keeps the books and auto-resets as after Step.
  template <class Advance>
  void StepExternal(int i, Advance&& advance) {
    static_assert(EnvScoresExternalSteps<Env>::value, "this environment cannot score external steps");
    Env& env = envs_.at(i);
    const auto start = env.BeginStep();
    advance();
    env.FinishStep(start, Slot(i));
    AfterStep(i);
  }

  // The return of env i's current episode so far: runner state that get_state/set_state carry
  // with the env's own, so a run resumed mid-episode reports the same episode_return.
  double& RunningReturn(int i) { return running_return_.at(i); }

  // Rewrites env i's observation from its (externally replaced) state.
  void RefreshObservation(int i) {
    envs_.at(i).WriteObservation(obs.At(i, kDims));
    episode_step[i] = envs_[i].EpisodeStep();
  }

  ObsBuffers obs, final_obs;
  std::vector<float> reward, agent_rewards, episode_return;
  std::vector<uint8_t> terminated, truncated;
  std::vector<int32_t> episode_step, episode_length;
  std::vector<int32_t> info;  // [N, kInfoCount]: the env's own per-step counters

 private:
  // k indexes the flat [N, N_A] action array.
  template <class Action>
  bool ActionValid(int64_t k, Action action) const {
    if (action < 0 || action >= static_cast<Action>(kDims.n_actions)) return false;
    return !obs.agent_present[k] || obs.avail_actions[k * kDims.n_actions + static_cast<int64_t>(action)];
  }

  [[noreturn]] void ThrowInvalidAction(int64_t k, int64_t action) const {
    std::string row;
    for (int c = 0; c < kDims.n_actions; ++c)
      row += (c ? ", " : "") + std::to_string(static_cast<int>(obs.avail_actions[k * kDims.n_actions + c]));
    const bool in_range = action >= 0 && action < kDims.n_actions;
    throw std::invalid_argument("env " + std::to_string(k / kDims.max_agents) + ", slot " +
                                std::to_string(k % kDims.max_agents) + ": action " + std::to_string(action) +
                                (in_range ? " is not available" : " is outside [0, " + std::to_string(kDims.n_actions) + ")") +
                                "; avail_actions row [" + row + "]");
  }

  void ResetEnv(int i, int64_t episode_index) {
    Env& env = envs_[i];
    if (config_.eval && episode_index < 0)
      episode_index = static_cast<int64_t>(i) + episodes_started_[i] * config_.num_envs;
    if (episode_index >= 0)
      env.Seed(derive_seed(config_.eval_seed, episode_index, 2), derive_seed(config_.eval_seed, episode_index, 3));
    env.SetEvalEpisode(episode_index);
    env.Reset(obs.At(i, kDims));
    ++episodes_started_[i];
    running_return_[i] = 0.0;
    episode_step[i] = 0;
  }

  StepSlot Slot(int i) {
    return {obs.At(i, kDims), &reward[i], &terminated[i], &truncated[i],
            agent_rewards.data() + static_cast<size_t>(i) * kDims.max_agents,
            info.data() + static_cast<size_t>(i) * kInfoCount};
  }

  void StepEnv(int i, const int32_t* actions) {
    envs_[i].Step(actions, Slot(i));
    AfterStep(i);
  }

  // Episode bookkeeping after env i's step; an ended episode keeps its final observation and
  // the env starts the next one at once.
  void AfterStep(int i) {
    running_return_[i] += reward[i];
    episode_step[i] = envs_[i].EpisodeStep();
    if (terminated[i] || truncated[i]) {
      episode_return[i] = static_cast<float>(running_return_[i]);
      episode_length[i] = episode_step[i];
      obs.CopyEnv(i, final_obs, kDims);
      ResetEnv(i, -1);
    } else {
      episode_return[i] = 0.0f;
      episode_length[i] = 0;
    }
  }

  std::mutex mutex_;
  RunnerConfig config_;
  std::vector<Env> envs_;
  ThreadPool pool_;
  std::vector<double> running_return_;
  std::vector<int64_t> episodes_started_;
};

}  // namespace cpfast
