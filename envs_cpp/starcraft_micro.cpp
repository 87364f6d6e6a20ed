#include "starcraft_micro.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

namespace cpfast {
namespace sc2 {

//                          hp  shield armour armored air  radius  speed/loop    dmg bonus hits range period         ground air  healer norm  ids
const UnitStats kStats[kNumTypes] = {
    /* Marine   */ {45, 0, 0, false, false, 0.375, 2.25 / 16, 6, 0, 1, 5, 0.8608 * 16, true, true, false, 15, 1939, 48},
    /* Marauder */ {125, 0, 1, true, false, 0.5625, 2.25 / 16, 10, 10, 1, 6, 1.5 * 16, true, false, false, 25, 1938, 51},
    /* Medivac  */ {150, 0, 1, true, true, 0.75, 2.75 / 16, 0, 0, 0, 4, 0, false, false, true, 200, 1940, 54},
    /* Stalker  */ {80, 80, 1, true, false, 0.625, 2.9531 / 16, 13, 5, 1, 6, 1.87 * 16, true, true, false, 35, 1941, 74},
    /* Zealot   */ {100, 50, 1, false, false, 0.5, 2.25 / 16, 8, 0, 2, 0.1, 1.2 * 16, true, false, false, 22, 1942, 73},
};

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kSpawnOffset = 7.0;     // each side's centre lies 7 from the map centre
constexpr double kMoveDistance = 2.0;    // REFIL's move order distance
constexpr double kAvailRange = 6.0;      // REFIL's attack/heal availability range (centre distance)
constexpr double kSightRange = 9.0;      // REFIL's sight range (centre distance)
constexpr double kMedivacFollowGap = 1.0;  // enemy Medivacs stay this edge distance from their escort
constexpr double kHealPerLoop = 9.0 / 16;  // 9 HP per game second
constexpr double kEnergyPerHp = 1.0 / 3;
constexpr double kEnergyStart = 50, kEnergyMax = 200, kEnergyRegen = 0.5625 / 16;
constexpr double kShieldRegen = 2.0 / 16;
constexpr int32_t kShieldDelay = 160;    // loops without damage before shields regenerate
constexpr int32_t kSinceDamageCap = 1 << 30;
constexpr double kRangeEps = 1e-9;

ScenarioInfo BuildScenario(Scenario s) {
  ScenarioInfo info{};
  std::fill(std::begin(info.one_hot), std::end(info.one_hot), -1);
  if (s == Scenario::kSz) {
    info.n_types = 2;
    info.types[0] = kStalker;
    info.types[1] = kZealot;
    info.one_hot[kZealot] = 0;
    info.one_hot[kStalker] = 1;
    info.protoss = true;
    // combinations_with_replacement((Stalker, Zealot), k): Stalkers from k down to 0.
    for (int k = 3; k <= 8; ++k)
      for (int z = 0; z <= k; ++z) {
        info.counts[info.n_compositions][0] = static_cast<int8_t>(k - z);
        info.counts[info.n_compositions][1] = static_cast<int8_t>(z);
        ++info.n_compositions;
      }
  } else {
    info.n_types = 3;
    info.types[0] = kMarine;
    info.types[1] = kMarauder;
    info.types[2] = kMedivac;
    info.one_hot[kMarine] = 0;
    info.one_hot[kMarauder] = 1;
    info.one_hot[kMedivac] = 2;
    info.protoss = false;
    // Sub-spec {Marine, Marauder} 3..6 (outermost) x sub-spec {Medivac} 0..2.
    for (int k = 3; k <= 6; ++k)
      for (int m = 0; m <= k; ++m)
        for (int med = 0; med <= 2; ++med) {
          info.counts[info.n_compositions][0] = static_cast<int8_t>(k - m);
          info.counts[info.n_compositions][1] = static_cast<int8_t>(m);
          info.counts[info.n_compositions][2] = static_cast<int8_t>(med);
          ++info.n_compositions;
        }
  }
  // Max scenario: first composition with the most distinct types, then the most units.
  int best = 0, best_types = -1, best_units = -1;
  for (int c = 0; c < info.n_compositions; ++c) {
    int types = 0, units = 0;
    for (int t = 0; t < info.n_types; ++t) {
      types += info.counts[c][t] > 0;
      units += info.counts[c][t];
    }
    if (types > best_types || (types == best_types && units > best_units)) {
      best = c;
      best_types = types;
      best_units = units;
    }
  }
  double pool = 0;
  for (int t = 0; t < info.n_types; ++t)
    pool += info.counts[best][t] * (kStats[info.types[t]].hp + kStats[info.types[t]].shield);
  info.max_reward = 10.0 * best_units + 200.0 + pool;
  return info;
}

const ScenarioInfo kSzInfo = BuildScenario(Scenario::kSz);
const ScenarioInfo kMMMInfo = BuildScenario(Scenario::kMMM);

inline double Dist2(const double* a, const double* b) {
  const double dx = a[0] - b[0], dy = a[1] - b[1];
  return dx * dx + dy * dy;
}

inline double Clamp(double x, double lo, double hi) { return std::min(std::max(x, lo), hi); }

// Velocity of at most `speed` toward a point at offset (dx, dy) and distance d (the caller has it);
// stops `stop_short` before it (never overshoots).
inline void Toward(double dx, double dy, double d, double speed, double stop_short, double v[2]) {
  const double step = std::min(speed, d - stop_short);
  if (d <= 0 || step <= 0) {
    v[0] = v[1] = 0;
    return;
  }
  v[0] = dx / d * step;
  v[1] = dy / d * step;
}

// Point p of the hexagonal spiral (docs/environments.md, StarCraft §3) with the given spacing,
// relative to its centre.
void HexPoint(int p, double spacing, double out[2]) {
  out[0] = out[1] = 0;
  if (p == 0) return;
  int m = 1;
  while (1 + 3 * m * (m + 1) <= p) ++m;
  const int q = p - (1 + 3 * m * (m - 1));
  const int k = q / m, j = q % m;
  const double a0 = kPi / 3 * k, a1 = kPi / 3 * (k + 1), radius = m * spacing;
  const double c0[2] = {radius * std::cos(a0), radius * std::sin(a0)};
  const double c1[2] = {radius * std::cos(a1), radius * std::sin(a1)};
  const double f = static_cast<double>(j) / m;
  out[0] = c0[0] + f * (c1[0] - c0[0]);
  out[1] = c0[1] + f * (c1[1] - c0[1]);
}

}  // namespace

const ScenarioInfo& GetScenario(Scenario s) { return s == Scenario::kSz ? kSzInfo : kMMMInfo; }

}  // namespace sc2

using namespace sc2;

template <Scenario S>
void StarCraftMicro<S>::Configure(const EnvOptions& options) {
  const ScenarioInfo& info = GetScenario(S);
  const char* name = kMMM ? "sc2_3-8MMM" : "sc2_3-8sz";
  double values[std::size(kOptions)];
  ResolveOptions(options, kOptions, static_cast<int>(std::size(kOptions)), name, values);
  enemy_scan_ = values[0];
  enemy_leash_ = values[1];
  firmness_ = values[2];
  spawn_gap_ = values[3];
  failed_order_keep_ = values[4] != 0;
  enemy_medivac_speed_ = values[5] / 16;
  damage_scale_ = values[6];
  cooldown_scale_ = values[7];
  if (options.composition == "train") {
    fixed_composition_ = -1;
    return;
  }
  const std::string& c = options.composition;
  const bool digits = !c.empty() && c.size() <= 3 && std::all_of(c.begin(), c.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
  const int index = digits ? std::stoi(c) : -1;
  if (index < 0 || index >= info.n_compositions)
    throw std::invalid_argument("unknown composition '" + c + "' for " + name + " (expected train or an index in [0, " +
                                std::to_string(info.n_compositions) + "))");
  fixed_composition_ = index;
}

template <Scenario S>
void StarCraftMicro<S>::Seed(uint64_t world_seed, uint64_t composition_seed) {
  world_rng_.seed(world_seed);
  composition_rng_.seed(composition_seed);
}

template <Scenario S>
void StarCraftMicro<S>::Spawn() {
  const ScenarioInfo& info = GetScenario(S);
  Rng& rng = composition_rng_;
  composition_index_ = fixed_composition_ >= 0 ? fixed_composition_ : rng.randint(info.n_compositions);
  const int8_t* counts = info.counts[composition_index_];
  const double theta = 2 * kPi * rng.uniform();
  const double dir[2] = {std::cos(theta), std::sin(theta)};
  double ally_centroid[2] = {0, 0};
  for (int side = 0; side < 2; ++side) {
    const double sign = side == 0 ? 1.0 : -1.0;
    const double centre[2] = {kMapSize / 2 + sign * kSpawnOffset * dir[0], kMapSize / 2 + sign * kSpawnOffset * dir[1]};
    // Units placed in spec type order; sorted below.
    struct Entry {
      int key;
      double x, y;
      int8_t type;
    } entries[kMaxPerSide];
    int n = 0;
    for (int t = 0; t < info.n_types; ++t) {
      if (counts[t] == 0) continue;
      const int8_t type = info.types[t];
      const UnitStats& st = kStats[type];
      const double point[2] = {centre[0] + (-1 + 2 * rng.uniform()), centre[1] + (-1 + 2 * rng.uniform())};
      const double spacing = 2 * st.radius + spawn_gap_;
      for (int p = 0; p < counts[t] && n < kMaxPerSide; ++p) {
        double off[2];
        HexPoint(p, spacing, off);
        entries[n++] = {side == 0 ? st.refil_ally_id : st.stock_id, Clamp(point[0] + off[0], st.radius, kMapSize - st.radius),
                        Clamp(point[1] + off[1], st.radius, kMapSize - st.radius), type};
      }
    }
    // Insertion sort by (type id, x, y).
    for (int i = 1; i < n; ++i) {
      const Entry e = entries[i];
      int j = i;
      for (; j > 0; --j) {
        const Entry& p = entries[j - 1];
        if (p.key < e.key || (p.key == e.key && (p.x < e.x || (p.x == e.x && p.y <= e.y)))) break;
        entries[j] = p;
      }
      entries[j] = e;
    }
    const int base = side * kMaxPerSide;
    for (int i = 0; i < kMaxPerSide; ++i) {
      const int u = base + i;
      type_[u] = i < n ? entries[i].type : static_cast<int8_t>(kNone);
      alive_[u] = i < n;
      tag_[u] = -1;
      pos_[u][0] = i < n ? entries[i].x : 0;
      pos_[u][1] = i < n ? entries[i].y : 0;
      const UnitStats& st = kStats[i < n ? entries[i].type : 0];
      health_[u] = i < n ? st.hp : 0;
      shield_[u] = i < n ? st.shield : 0;
      energy_[u] = i < n && st.healer ? kEnergyStart : 0;
      cooldown_[u] = 0;
      since_damage_[u] = kShieldDelay;
      order_[u] = kIdle;
      order_target_[u] = -1;
      order_point_[u][0] = order_point_[u][1] = 0;
      if (side == 0 && i < n) {
        ally_centroid[0] += entries[i].x / n;
        ally_centroid[1] += entries[i].y / n;
      }
    }
  }
  // Tags: enemies from {0..7}, then allies from {8..15}, partial Fisher-Yates.
  for (int side = 1; side >= 0; --side) {
    int8_t pool[kMaxPerSide];
    for (int i = 0; i < kMaxPerSide; ++i) pool[i] = static_cast<int8_t>((side == 0 ? kMaxPerSide : 0) + i);
    const int base = side * kMaxPerSide;
    for (int i = 0; i < kMaxPerSide && type_[base + i] >= 0; ++i) {
      std::swap(pool[i], pool[i + rng.randint(kMaxPerSide - i)]);
      tag_[base + i] = pool[i];
    }
  }
  for (int u = kMaxPerSide; u < kUnits; ++u) {
    if (type_[u] < 0) continue;
    order_[u] = kAttackMove;
    order_point_[u][0] = ally_centroid[0];
    order_point_[u][1] = ally_centroid[1];
  }
}

template <Scenario S>
void StarCraftMicro<S>::Reset(const ObsSlot& out) {
  Spawn();
  episode_step_ = 0;
  WriteObservation(out);
}

template <Scenario S>
bool StarCraftMicro<S>::CanHit(int attacker, int target) const {
  const UnitStats& a = kStats[type_[attacker]];
  return a.hits > 0 && (kStats[type_[target]].air ? a.hits_air : a.hits_ground);
}

template <Scenario S>
void StarCraftMicro<S>::SetAllyOrders(const int32_t* actions) {
  for (int a = 0; a < kMaxPerSide; ++a) {
    if (!Alive(a)) continue;
    const int action = actions[a];
    if (action == 0) continue;
    const int8_t prev_order = order_[a], prev_target = order_target_[a];
    order_target_[a] = -1;
    if (action == 1) {
      order_[a] = kIdle;
    } else if (action <= 5) {
      static constexpr double kDir[4][2] = {{0, 1}, {0, -1}, {1, 0}, {-1, 0}};
      order_[a] = kMove;
      order_point_[a][0] = pos_[a][0] + kMoveDistance * kDir[action - 2][0];
      order_point_[a][1] = pos_[a][1] + kMoveDistance * kDir[action - 2][1];
    } else {
      const int tag = action - 6;  // 0..7 enemies, 8..15 allies
      const int first = tag < kMaxPerSide ? kMaxPerSide : 0;
      int target = -1;
      for (int u = first; u < first + kMaxPerSide; ++u)
        if (tag_[u] == tag && type_[u] >= 0) target = u;
      order_[a] = kIdle;
      if (target < 0) continue;
      if (tag < kMaxPerSide && CanHit(a, target)) {
        order_[a] = kAttackUnit;
        order_target_[a] = static_cast<int8_t>(target);
      } else if (tag >= kMaxPerSide && kStats[type_[a]].healer) {
        order_[a] = kHealUnit;
        order_target_[a] = static_cast<int8_t>(target);
      } else if (tag < kMaxPerSide && failed_order_keep_) {  // the game rejects the order
        order_[a] = prev_order;
        order_target_[a] = prev_target;
      }
    }
  }
}

// Per-step working set. Unit types cannot change within a step, so each unit's stats are looked
// up once per step rather than in every tick; positions live here as SoA for the 8 ticks and go
// back to pos_ at the end of the step. Every derived value is computed with the same operations
// in the same order as the spec formulas it replaces, so results are bit-identical.
template <Scenario S>
struct StarCraftMicro<S>::Work {
  double x[kUnits], y[kUnits];
  double rad[kUnits], hi[kUnits];  // radius and kMapSize - radius: the clamp bounds
  double speed[kUnits];            // Speed(u)
  double fire_base[kUnits];        // range + radius; + target radius = weapon (heal) reach
  double scan_base[kUnits];        // max(range, enemy_scan) + radius; + target radius = scan reach
  double leash_base[kUnits];       // max(range, enemy_scan) + enemy_leash + radius
  double period[kUnits];           // period * cooldown_scale
  double hp[kUnits], shield_max[kUnits];
  uint8_t live[kUnits];            // Alive(u) without the lookups; cleared on death
  bool air[kUnits], healer[kUnits], hits_air[kUnits], hits_ground[kUnits];
  unsigned live_mask;              // bit u = live[u]
  unsigned ally_air, ally_ground;  // present allies by plane (for the enemy AI's CanHit)
  uint8_t attackers[kUnits];       // bit a of attackers[v]: live ally a attacks v
  bool orders_dirty;               // housekeeping due: new ally orders or a death

  bool Live(int u) const { return u >= 0 && live[u]; }
  bool CanHit(int a, int t) const { return air[t] ? hits_air[a] : hits_ground[a]; }
  unsigned HitMask(int a) const { return (hits_air[a] ? ally_air : 0u) | (hits_ground[a] ? ally_ground : 0u); }
  double Dist2(int a, int b) const {
    const double dx = x[a] - x[b], dy = y[a] - y[b];
    return dx * dx + dy * dy;
  }
  void Kill(int u) {
    live[u] = 0;
    live_mask &= ~(1u << u);
    orders_dirty = true;
  }
};

namespace {

inline int LowestBit(unsigned m) { return __builtin_ctz(m); }

}  // namespace

template <Scenario S>
void StarCraftMicro<S>::LoadWork(Work& w) const {
  w.live_mask = w.ally_air = w.ally_ground = 0;
  w.orders_dirty = true;
  for (int u = 0; u < kUnits; ++u) {
    w.x[u] = pos_[u][0];
    w.y[u] = pos_[u][1];
    w.live[u] = Alive(u);
    w.live_mask |= static_cast<unsigned>(w.live[u]) << u;
    const bool present = type_[u] >= 0;
    const UnitStats& st = kStats[present ? type_[u] : 0];  // absent units: never read
    const double scan_edge = std::max(st.range, enemy_scan_);
    w.rad[u] = st.radius;
    w.hi[u] = kMapSize - st.radius;
    w.speed[u] = present ? Speed(u) : 0.0;
    w.fire_base[u] = st.range + st.radius;
    w.scan_base[u] = scan_edge + st.radius;
    w.leash_base[u] = scan_edge + enemy_leash_ + st.radius;
    w.period[u] = st.period * cooldown_scale_;
    w.hp[u] = st.hp;
    w.shield_max[u] = st.shield;
    w.air[u] = st.air;
    w.healer[u] = st.healer;
    w.hits_air[u] = st.hits > 0 && st.hits_air;
    w.hits_ground[u] = st.hits > 0 && st.hits_ground;
    if (present && u < kMaxPerSide) (st.air ? w.ally_air : w.ally_ground) |= 1u << u;
  }
}

// Enemy target acquisition (docs/environments.md, StarCraft §7).
template <Scenario S>
void StarCraftMicro<S>::EnemyAcquire(const Work& w, int u) {
  const uint8_t* attackers = w.attackers;
  if (w.healer[u]) {  // heal the lowest-HP-fraction damaged friendly ground unit in heal range
    int best = -1;
    double best_frac = 2;
    for (int f = kMaxPerSide; f < kUnits; ++f) {
      if (f == u || !w.live[f] || w.air[f]) continue;
      const double frac = health_[f] / w.hp[f];
      if (frac >= 1) continue;
      const double reach = w.fire_base[u] + w.rad[f];
      if (w.Dist2(u, f) > reach * reach) continue;
      if (frac < best_frac) {
        best_frac = frac;
        best = f;
      }
    }
    order_target_[u] = static_cast<int8_t>(best);
    return;
  }
  const int cur = order_target_[u];
  bool keep = cur >= 0 && w.live[cur] && w.CanHit(u, cur);
  if (keep) {
    const double leash = w.leash_base[u] + w.rad[cur];
    keep = w.Dist2(u, cur) <= leash * leash;
  }
  const unsigned hittable = w.live_mask & w.HitMask(u);  // live allies u can hit
  if (keep) {
    // Keep the target unless it is not attacking u and an ally that is attacking u is in scan
    // (the nearest such ally, as the full scan below would pick).
    if (order_[cur] == kAttackUnit && order_target_[cur] == u) return;
    int best = -1;
    double best_d2 = 0;
    for (unsigned m = attackers[u] & hittable; m; m &= m - 1) {  // usually empty
      const int a = LowestBit(m);
      const double reach = w.scan_base[u] + w.rad[a];
      const double d2 = w.Dist2(u, a);
      if (d2 <= reach * reach && (best < 0 || d2 < best_d2)) {
        best = a;
        best_d2 = d2;
      }
    }
    if (best >= 0) order_target_[u] = static_cast<int8_t>(best);
    return;
  }
  int best = -1, best_class = 3;
  double best_d2 = 0;
  for (unsigned m = hittable; m; m &= m - 1) {
    const int a = LowestBit(m);
    const double reach = w.scan_base[u] + w.rad[a];
    const double d2 = w.Dist2(u, a);
    if (d2 > reach * reach) continue;
    const bool attacking = (attackers[u] >> a) & 1;
    const int cls = attacking ? 0 : (!w.healer[a] || order_[a] == kHealUnit) ? 1 : 2;
    if (cls < best_class || (cls == best_class && d2 < best_d2)) {
      best = a;
      best_class = cls;
      best_d2 = d2;
    }
  }
  order_target_[u] = static_cast<int8_t>(best);
}

template <Scenario S>
inline void StarCraftMicro<S>::DesiredVelocity(const Work& w, int u, double v[2], bool& firing) const {
  v[0] = v[1] = 0;
  firing = false;
  const int order = order_[u];
  const int target = order_target_[u];
  if (order == kMove) {
    const double dx = order_point_[u][0] - w.x[u], dy = order_point_[u][1] - w.y[u];
    Toward(dx, dy, std::sqrt(dx * dx + dy * dy), w.speed[u], 0, v);
  } else if (order == kAttackUnit || order == kHealUnit || (order == kAttackMove && target >= 0)) {
    if (!w.Live(target)) return;
    const double reach = w.fire_base[u] + w.rad[target];
    const double dx = w.x[target] - w.x[u], dy = w.y[target] - w.y[u];
    const double d = std::sqrt(dx * dx + dy * dy);
    if (d <= reach + kRangeEps) {
      firing = true;
    } else {
      Toward(dx, dy, d, w.speed[u], reach, v);
    }
  } else if (order == kAttackMove) {
    if (!w.healer[u]) {
      const double dx = order_point_[u][0] - w.x[u], dy = order_point_[u][1] - w.y[u];
      Toward(dx, dy, std::sqrt(dx * dx + dy * dy), w.speed[u], 0, v);
      return;
    }
    // An enemy Medivac with nobody to heal escorts the nearest friendly ground unit.
    int escort = -1;
    double best_d2 = std::numeric_limits<double>::infinity(), slowest = w.speed[u];
    for (int f = kMaxPerSide; f < kUnits; ++f) {
      if (!w.live[f] || w.air[f]) continue;
      slowest = std::min(slowest, w.speed[f]);
      const double d2 = w.Dist2(u, f);
      if (d2 < best_d2) {
        best_d2 = d2;
        escort = f;
      }
    }
    if (escort >= 0) {
      const double dx = w.x[escort] - w.x[u], dy = w.y[escort] - w.y[u];
      Toward(dx, dy, std::sqrt(dx * dx + dy * dy), slowest, w.rad[u] + w.rad[escort] + kMedivacFollowGap, v);
    }
  }
}

template <Scenario S>
void StarCraftMicro<S>::ApplyHits(Work& w, int attacker, int target) {
  const UnitStats& a = kStats[type_[attacker]];
  const UnitStats& t = kStats[type_[target]];
  const double damage = (a.damage + (t.armored ? a.bonus_vs_armored : 0)) * damage_scale_;
  for (int h = 0; h < a.hits; ++h) {
    const double absorbed = std::min(shield_[target], damage);
    shield_[target] -= absorbed;
    const double rest = damage - absorbed;
    if (rest > 0) health_[target] -= std::max(rest - t.armour, 0.5);
    since_damage_[target] = 0;
    if (health_[target] <= 0) {
      alive_[target] = 0;
      w.Kill(target);
      return;
    }
  }
}

template <Scenario S>
void StarCraftMicro<S>::Tick(Work& w) {
  // 1. Housekeeping. Ally orders and their targets' liveness change only between steps and on
  // deaths, so this (and the attacker masks) runs only then.
  if (w.orders_dirty) {
    w.orders_dirty = false;
    for (int u = 0; u < kMaxPerSide; ++u)
      if (w.live[u] && (order_[u] == kAttackUnit || order_[u] == kHealUnit) && !w.Live(order_target_[u])) {
        order_[u] = kIdle;
        order_target_[u] = -1;
      }
    // Allies attacking each unit, as bit masks: the enemy AI's class (a) test.
    std::fill(std::begin(w.attackers), std::end(w.attackers), 0);
    for (int a = 0; a < kMaxPerSide; ++a)
      if (w.live[a] && order_[a] == kAttackUnit && order_target_[a] >= 0)
        w.attackers[order_target_[a]] = static_cast<uint8_t>(w.attackers[order_target_[a]] | 1u << a);
  }
  for (int u = kMaxPerSide; u < kUnits; ++u)
    if (w.live[u] && order_[u] == kAttackMove) EnemyAcquire(w, u);
  // 2-3. Desired velocities (all from the same positions), then integration.
  double v[kUnits][2];
  bool firing[kUnits] = {};
  for (unsigned m = w.live_mask; m; m &= m - 1) {
    const int u = LowestBit(m);
    DesiredVelocity(w, u, v[u], firing[u]);
  }
  for (unsigned m = w.live_mask; m; m &= m - 1) {
    const int u = LowestBit(m);
    w.x[u] = Clamp(w.x[u] + v[u][0], w.rad[u], w.hi[u]);
    w.y[u] = Clamp(w.y[u] + v[u][1], w.rad[u], w.hi[u]);
  }
  // 4. Separation of overlapping pairs on the same plane (air with air, ground with ground), in
  // index order, with an exact double test per pair.
  unsigned air_live = 0;
  for (unsigned m = w.live_mask; m; m &= m - 1) {
    const int u = LowestBit(m);
    air_live |= static_cast<unsigned>(w.air[u]) << u;
  }
  const double half_firmness = 0.5 * firmness_;
  for (unsigned rows = w.live_mask; rows; rows &= rows - 1) {
    const int i = LowestBit(rows);
    const unsigned later = ~((2u << i) - 1);
    unsigned partners = (w.air[i] ? air_live : w.live_mask & ~air_live) & later;
    while (partners) {
      const int j = LowestBit(partners);
      partners &= partners - 1;
      const double min_d = w.rad[i] + w.rad[j];
      const double dx = w.x[j] - w.x[i], dy = w.y[j] - w.y[i];
      const double d2 = dx * dx + dy * dy;  // same plane: the spec's dz term is 0
      if (d2 >= min_d * min_d) continue;
      const double d = std::sqrt(d2);
      const double ux = d > 0 ? dx / d : 1.0, uy = d > 0 ? dy / d : 0.0;
      const double push = half_firmness * (min_d - d);
      w.x[i] = Clamp(w.x[i] - ux * push, w.rad[i], w.hi[i]);
      w.y[i] = Clamp(w.y[i] - uy * push, w.rad[i], w.hi[i]);
      w.x[j] = Clamp(w.x[j] + ux * push, w.rad[j], w.hi[j]);
      w.y[j] = Clamp(w.y[j] + uy * push, w.rad[j], w.hi[j]);
    }
  }
  // 5. Combat in a fresh random order (world stream). Only units that may act (firing on a live
  // target, weapon ready or healing) depend on the order; with at most one of them the shuffle
  // only advances the stream.
  int order[kUnits], n_alive = 0, n_active = 0, active = -1;
  for (unsigned m = w.live_mask; m; m &= m - 1) {
    const int u = LowestBit(m);
    order[n_alive++] = u;
    if (firing[u] && w.Live(order_target_[u]) && (w.healer[u] || cooldown_[u] <= 0)) {
      ++n_active;
      active = u;
    }
  }
  if (n_active <= 1) {
    for (int k = n_alive - 1; k > 0; --k) world_rng_.next();  // randint(k + 1) draws one number
    if (n_active == 1) order[0] = active;
    n_alive = n_active;
  } else {
    for (int k = n_alive - 1; k > 0; --k) std::swap(order[k], order[world_rng_.randint(k + 1)]);
  }
  for (int k = 0; k < n_alive; ++k) {
    const int u = order[k];
    if (!w.live[u] || !firing[u]) continue;
    const int t = order_target_[u];
    if (!w.Live(t)) continue;
    if (w.healer[u]) {
      const double heal = std::min({kHealPerLoop, w.hp[t] - health_[t], energy_[u] / kEnergyPerHp});
      if (heal > 0) {
        health_[t] += heal;
        energy_[u] -= heal * kEnergyPerHp;
      }
    } else if (cooldown_[u] <= 0) {
      ApplyHits(w, u, t);
      cooldown_[u] = w.period[u] + (jitter_ ? world_rng_.randint(4) - 1 : 0);
    }
  }
  // 6. Timers.
  for (unsigned m = w.live_mask; m; m &= m - 1) {
    const int u = LowestBit(m);
    cooldown_[u] = std::max(cooldown_[u] - 1, 0.0);
    if (since_damage_[u] < kSinceDamageCap) ++since_damage_[u];
    if (since_damage_[u] >= kShieldDelay && shield_[u] < w.shield_max[u])
      shield_[u] = std::min(w.shield_max[u], shield_[u] + kShieldRegen);
    if (w.healer[u]) energy_[u] = std::min(kEnergyMax, energy_[u] + kEnergyRegen);
  }
}

template <Scenario S>
typename StarCraftMicro<S>::StepStart StarCraftMicro<S>::BeginStep() const {
  StepStart start;
  for (int e = 0; e < kMaxPerSide; ++e) {
    const int u = kMaxPerSide + e;
    start.enemy_alive[e] = Alive(u);
    start.enemy_health_shield[e] = health_[u] + shield_[u];
  }
  return start;
}

template <Scenario S>
void StarCraftMicro<S>::Step(const int32_t* actions, const StepSlot& out) {
  const StepStart start = BeginStep();
  SetAllyOrders(actions);
  Work w;
  LoadWork(w);
  for (int t = 0; t < kLoopsPerStep; ++t) Tick(w);
  for (int u = 0; u < kUnits; ++u) {
    pos_[u][0] = w.x[u];
    pos_[u][1] = w.y[u];
  }
  FinishStep(start, out);
}

template <Scenario S>
void StarCraftMicro<S>::FinishStep(const StepStart& start, const StepSlot& out) {
  const ScenarioInfo& info = GetScenario(S);
  ++episode_step_;
  double delta = 0;
  int kills = 0;
  for (int e = 0; e < kMaxPerSide; ++e) {
    if (!start.enemy_alive[e]) continue;
    const int u = kMaxPerSide + e;
    if (!alive_[u]) {
      delta += start.enemy_health_shield[e];
      ++kills;
    } else {
      delta += start.enemy_health_shield[e] - (health_[u] + shield_[u]);
    }
  }
  bool ally_alive = false, ally_fighter = false, enemy_alive = false, enemy_fighter = false;
  for (int u = 0; u < kUnits; ++u) {
    if (!Alive(u)) continue;
    const bool fighter = !kStats[type_[u]].healer;
    (u < kMaxPerSide ? ally_alive : enemy_alive) = true;
    if (fighter) (u < kMaxPerSide ? ally_fighter : enemy_fighter) = true;
  }
  const bool loss = (!ally_alive && enemy_alive) || (kMMM && !ally_fighter);
  const bool win = !loss && ((ally_alive && !enemy_alive) || (kMMM && !enemy_fighter));
  const bool draw = !loss && !win && !ally_alive && !enemy_alive;
  const bool ended = loss || win || draw;
  double reward = std::fabs(delta + 10.0 * kills);
  if (win) reward += 200.0;
  reward /= info.max_reward / 20.0;

  *out.reward = static_cast<float>(reward);
  const bool timeout = !ended && episode_step_ >= kDims.episode_limit;
  *out.terminated = ended;
  *out.truncated = timeout;
  for (int i = 0; i < kAgents; ++i) out.agent_rewards[i] = 0.0f;
  out.info[0] = win;
  out.info[1] = draw || timeout;
  out.info[2] = loss;
  out.info[3] = timeout;
  out.info[4] = composition_index_;
  WriteObservation(out.obs);
}

template <Scenario S>
void StarCraftMicro<S>::AvailActions(int a, const double* d2, uint8_t* row) const {
  std::memset(row, 0, kActions);
  if (!Alive(a)) {
    row[0] = 1;
    return;
  }
  row[1] = 1;
  static constexpr int kDir[4][2] = {{0, 1}, {0, -1}, {1, 0}, {-1, 0}};
  for (int d = 0; d < 4; ++d) {
    // REFIL's check: the cell one unit away, coordinates truncated toward zero.
    const int cx = static_cast<int>(pos_[a][0] + kDir[d][0]);
    const int cy = static_cast<int>(pos_[a][1] + kDir[d][1]);
    row[2 + d] = cx >= 0 && cx < static_cast<int>(kMapSize) && cy >= 0 && cy < static_cast<int>(kMapSize);
  }
  constexpr double kAvail2 = kAvailRange * kAvailRange;
  if (kStats[type_[a]].healer) {
    for (int u = 0; u < kMaxPerSide; ++u)
      if (u != a && Alive(u) && !kStats[type_[u]].air && tag_[u] >= kMaxPerSide && 6 + tag_[u] < kActions && d2[u] <= kAvail2)
        row[6 + tag_[u]] = 1;
  } else {
    for (int u = kMaxPerSide; u < kUnits; ++u)
      if (Alive(u) && tag_[u] >= 0 && tag_[u] < kMaxPerSide && d2[u] <= kAvail2) row[6 + tag_[u]] = 1;
  }
}

template <Scenario S>
void StarCraftMicro<S>::WriteObservation(const ObsSlot& out) const {
  const ScenarioInfo& info = GetScenario(S);
  std::memset(out.entities, 0, sizeof(float) * kUnits * kFeat);
  std::memset(out.attributes, 0, sizeof(float) * kAgents * kTypeDim);
  std::memset(out.agent_present, 0, kAgents);
  std::memset(out.entity_present, 0, kUnits);
  // Squared distances of every agent slot to every unit, shared by the availability (attack and
  // heal range) and the sight mask: one branch-free pass (SoA copies vectorise).
  double px[kUnits], py[kUnits];
  for (int u = 0; u < kUnits; ++u) {
    px[u] = pos_[u][0];
    py[u] = pos_[u][1];
  }
  double d2[kAgents][kUnits];
  for (int i = 0; i < kAgents; ++i)
    for (int j = 0; j < kUnits; ++j) {
      const double dx = px[i] - px[j], dy = py[i] - py[j];
      d2[i][j] = dx * dx + dy * dy;
    }
  double com[2] = {0, 0};
  int n = 0;
  for (int u = 0; u < kUnits; ++u) {
    if (type_[u] < 0) continue;
    com[0] += px[u];
    com[1] += py[u];
    ++n;
  }
  if (n > 0) {
    com[0] /= n;
    com[1] /= n;
  }
  double spread = 0;
  for (int u = 0; u < kUnits; ++u)
    if (type_[u] >= 0) spread = std::max(spread, Dist2(pos_[u], com));
  spread = std::sqrt(spread);
  const double inv_spread = spread > 0 ? 1.0 / spread : 0.0;

  for (int u = 0; u < kUnits; ++u) {
    const bool ally = u < kMaxPerSide;
    if (ally) AvailActions(u, d2[u], out.avail_actions + u * kActions);
    if (type_[u] < 0) continue;
    const UnitStats& st = kStats[type_[u]];
    out.entity_present[u] = 1;
    float* row = out.entities + u * kFeat;
    if (tag_[u] >= 0) row[tag_[u]] = 1.0f;
    const int type_col = info.one_hot[type_[u]];  // -1 only for a foreign type put in by set_state
    if (type_col >= 0) row[kColType + type_col] = 1.0f;
    if (ally) {
      out.agent_present[u] = 1;
      if (type_col >= 0) out.attributes[u * kTypeDim + type_col] = 1.0f;
    }
    if (!alive_[u]) continue;
    if (ally) {
      const uint8_t* avail = out.avail_actions + u * kActions;
      for (int c = 2; c < kActions; ++c) row[kColAvail + c - 2] = avail[c];
      row[kColEnergy] = st.healer ? static_cast<float>(energy_[u] / kEnergyMax) : 0.0f;
      row[kColEnergy + 1] = static_cast<float>(std::max(cooldown_[u], 0.0) / st.cooldown_norm);
    }
    row[kColHealth] = static_cast<float>(health_[u] / st.hp);
    if (info.protoss) row[kColHealth + 1] = st.shield > 0 ? static_cast<float>(shield_[u] / st.shield) : 0.0f;
    row[kColPos] = static_cast<float>((px[u] - kMapSize / 2) / kMapSize);
    row[kColPos + 1] = static_cast<float>((py[u] - kMapSize / 2) / kMapSize);
    row[kColPos + 2] = static_cast<float>((px[u] - com[0]) * inv_spread);
    row[kColPos + 3] = static_cast<float>((py[u] - com[1]) * inv_spread);
  }
  // Masks, branch-free: full = both present; obs = full and (i == j or both alive and in sight).
  constexpr double kSight2 = kSightRange * kSightRange;
  for (int i = 0; i < kAgents; ++i) {
    uint8_t* obs = out.obs_mask + i * kUnits;
    uint8_t* full = out.full_mask + i * kUnits;
    const bool present_i = type_[i] >= 0, alive_i = alive_[i] != 0;
    for (int j = 0; j < kUnits; ++j) {
      const bool both = present_i & (type_[j] >= 0);
      full[j] = both;
      obs[j] = both & ((i == j) | (alive_i & (alive_[j] != 0) & (d2[i][j] <= kSight2)));
    }
  }
}

template <Scenario S>
StateFields StarCraftMicro<S>::State() {
  constexpr double kBig = 1e6;
  const double n_comp = GetScenario(S).n_compositions;
  return {
      {"unit_type", DType::kI8, {kUnits}, type_, -1, kNumTypes - 1},
      {"alive", DType::kI8, {kUnits}, alive_, 0, 1},
      {"tag", DType::kI8, {kUnits}, tag_, -1, 15},
      {"pos", DType::kF64, {kUnits, 2}, pos_, 0, kMapSize},
      {"health", DType::kF64, {kUnits}, health_, -kBig, kBig},
      {"shield", DType::kF64, {kUnits}, shield_, 0, kBig},
      {"energy", DType::kF64, {kUnits}, energy_, 0, kEnergyMax},
      {"cooldown", DType::kF64, {kUnits}, cooldown_, 0, kBig},
      {"since_damage", DType::kI32, {kUnits}, since_damage_, 0, kSinceDamageCap},
      {"order", DType::kI8, {kUnits}, order_, 0, 4},
      {"order_target", DType::kI8, {kUnits}, order_target_, -1, kUnits - 1},
      {"order_point", DType::kF64, {kUnits, 2}, order_point_, -kBig, kBig},
      {"composition_index", DType::kI32, {}, &composition_index_, 0, n_comp - 1},
      {"episode_step", DType::kI32, {}, &episode_step_, 0, kDims.episode_limit - 1},
      {"jitter", DType::kI8, {}, &jitter_, 0, 1},
      {"world_rng", DType::kU64, {4}, world_rng_.s, 0, 0},
      {"composition_rng", DType::kU64, {4}, composition_rng_.s, 0, 0},
  };
}

template <Scenario S>
std::vector<std::string> StarCraftMicro<S>::Compositions() {
  std::vector<std::string> names{"train"};
  for (int k = 0; k < GetScenario(S).n_compositions; ++k) names.push_back(std::to_string(k));
  return names;
}

template <Scenario S>
void StarCraftMicro<S>::Facts(EnvFacts& facts) {
  const ScenarioInfo& info = GetScenario(S);
  facts["col_avail"] = {kColAvail};
  facts["col_type"] = {kColType};
  facts["col_health"] = {kColHealth};
  facts["health_width"] = {kHealthDim};
  facts["col_energy"] = {kColEnergy};
  facts["col_pos"] = {kColPos};
  facts["max_reward"] = {info.max_reward};
  facts["n_compositions"] = {static_cast<double>(info.n_compositions)};
  std::vector<double> ally, enemy, health, shield;
  for (int t = 0; t < kNumTypes; ++t) {
    ally.push_back(kStats[t].refil_ally_id);
    enemy.push_back(kStats[t].stock_id);
    health.push_back(kStats[t].hp);
    shield.push_back(kStats[t].shield);
  }
  facts["ally_unit_id"] = ally;
  facts["enemy_unit_id"] = enemy;
  facts["max_health"] = health;
  facts["max_shield"] = shield;
}

template class StarCraftMicro<Scenario::kSz>;
template class StarCraftMicro<Scenario::kMMM>;

}  // namespace cpfast
