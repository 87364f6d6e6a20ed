// Deterministic random streams shared by every cpfast environment (docs/interface.md §5).
// xoshiro256** seeded from SplitMix64; no std::*_distribution, whose output differs
// between standard libraries.
#pragma once
#include <cstdint>

namespace cpfast {

inline uint64_t splitmix64_next(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// One SplitMix64 output step applied to x as the state.
inline uint64_t sm(uint64_t x) { return splitmix64_next(x); }

inline uint64_t derive_seed(uint64_t a, uint64_t b, uint64_t c) { return sm(sm(sm(a) ^ b) ^ c); }

class Rng {
 public:
  Rng() { seed(0); }
  explicit Rng(uint64_t seed_value) { seed(seed_value); }

  void seed(uint64_t seed_value) {
    uint64_t sm_state = seed_value;
    for (auto& word : s) word = splitmix64_next(sm_state);
  }

  uint64_t next() {
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  int randint(int n) { return static_cast<int>(uniform() * n); }

  uint64_t s[4];

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
};

}  // namespace cpfast
