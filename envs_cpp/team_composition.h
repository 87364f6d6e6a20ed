// Who plays an episode of Resource Collection or Rescue (docs/environments.md): the one copy of
// the team-drawing rules both environments follow, so their compositions cannot drift apart.
//
//   train    teams of 2, 3, 4, 2, 3, ... agents (a counter each env carries in its state), each
//            slot's attributes a cell of the env's attribute grid, drawn uniformly;
//   n5, n6   5 or 6 agents, a row of the zero-shot table (evaluation episode k: row k mod rows;
//            training: a row drawn uniformly);
//   dynamic  4 agents from a table row, then after every kCompositionEventPeriod-th step but the
//            last one agent joins (the lowest free slot) or leaves (a present one, uniformly).
//
// The draws come from the env's composition stream in a fixed order, which the golden
// conformance trajectories pin down.
#pragma once
#include <cstdint>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "env_api.h"
#include "rng.h"

namespace cpfast {

enum class TeamComposition { kTrain, kN5, kN6, kDynamic };

inline constexpr const char* kTeamCompositionNames[] = {"train", "n5", "n6", "dynamic"};

// In `dynamic`, a composition event follows every this-many steps (not the episode's last).
constexpr int kCompositionEventPeriod = 10;

// A composition event: an agent joins `slot` (join) or the agent in `slot` leaves.
struct CompositionEvent {
  bool join;
  int slot;
};

class TeamDraw {
 public:
  // Parses options.composition; n5, n6 and dynamic need the zero-shot table.
  void Configure(const EnvOptions& options, const std::string& env_name) {
    const std::vector<std::string> names = Names();
    int k = 0;
    while (k < static_cast<int>(names.size()) && options.composition != names[k]) ++k;
    if (k == static_cast<int>(names.size())) {
      std::string expected;  // "train, n5, n6 or dynamic"
      for (size_t j = 0; j < names.size(); ++j)
        expected += (j == 0 ? "" : j + 1 == names.size() ? " or " : ", ") + names[j];
      throw std::invalid_argument("unknown composition '" + options.composition + "' for " + env_name +
                                  " (expected " + expected + ")");
    }
    kind_ = static_cast<TeamComposition>(k);
    if (kind_ != TeamComposition::kTrain && (options.zero_shot_table == nullptr || options.zero_shot_rows <= 0))
      throw std::invalid_argument("composition '" + options.composition + "' needs the zero-shot attribute table");
    table_ = options.zero_shot_table;
    table_rows_ = options.zero_shot_rows;
  }

  static std::vector<std::string> Names() {
    return {std::begin(kTeamCompositionNames), std::end(kTeamCompositionNames)};
  }

  // The team of a new episode of N slots: sets alive[s] and returns the zero-shot table
  // row the slots take their attributes from, or -1 (train), where slot s takes the attribute
  // grid's cell grid_cell[s] in [0, grid_cells). eval_episode >= 0: evaluation episode k.
  template <int N>
  int Draw(int32_t& train_size_counter, int64_t eval_episode, int grid_cells, Rng& rng, int8_t (&alive)[N],
           int (&grid_cell)[N]) const {
    int team_size, row = -1;
    if (kind_ == TeamComposition::kTrain) {
      if (++train_size_counter > 4) train_size_counter = 2;
      team_size = train_size_counter;
      for (int s = 0; s < N; ++s) grid_cell[s] = rng.randint(grid_cells);
    } else {
      team_size = kind_ == TeamComposition::kN5 ? 5 : kind_ == TeamComposition::kN6 ? 6 : 4;
      row = eval_episode >= 0 ? static_cast<int>(eval_episode % table_rows_) : rng.randint(table_rows_);
    }
    for (int s = 0; s < N; ++s) alive[s] = s < team_size;
    return row;
  }

  // Row `row` of the zero-shot table: [n_slots, attr_dim] attributes.
  const double* Row(int row, int n_slots, int attr_dim) const {
    return table_ + static_cast<int64_t>(row) * n_slots * attr_dim;
  }

  // Whether a composition event follows the step that brought the episode to `episode_step`.
  bool EventDue(int episode_step, int episode_limit) const {
    return kind_ == TeamComposition::kDynamic && episode_step % kCompositionEventPeriod == 0 &&
           episode_step < episode_limit;
  }

  // Joins below 5 present agents, leaves at 6, either with even odds at 5. The env then draws
  // the joiner's attributes and placement, or clears the leaver's slot.
  template <int N>
  static CompositionEvent ChooseEvent(const int8_t (&alive)[N], Rng& rng) {
    int present[N];
    int n = 0;
    for (int s = 0; s < N; ++s)
      if (alive[s]) present[n++] = s;
    const bool join = n == 5 ? rng.uniform() < 0.5 : n < 5;
    int slot = 0;
    if (join) {
      while (alive[slot]) ++slot;
    } else {
      slot = present[rng.randint(n)];
    }
    return {join, slot};
  }

 private:
  TeamComposition kind_ = TeamComposition::kTrain;
  const double* table_ = nullptr;
  int table_rows_ = 0;
};

}  // namespace cpfast
