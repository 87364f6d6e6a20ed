// CPU implementations: rows are split across a persistent thread pool, one row per task
// (results never depend on the thread count); the per-row loops over the head width are written
// for the compiler to vectorise, and on x86-64 GCC also builds an AVX2/FMA clone picked at load.
#include <algorithm>
#include <memory>
#include <mutex>

#include "attention_math.h"
#include "kernels.h"
#include "mixing_math.h"
#include "thread_pool.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CPFAST_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define CPFAST_CLONES
#endif
#define CPFAST_INLINE __attribute__((always_inline)) inline

namespace cpfast::kernels {
namespace {

template <class Body>
void ParallelRows(int64_t rows, int num_threads, Body body) {
  static std::mutex mutex;
  static std::unique_ptr<ThreadPool> pool;
  std::lock_guard<std::mutex> lock(mutex);
  const int threads = std::max(1, std::min<int>(num_threads, static_cast<int>(std::min<int64_t>(rows, 1 << 20))));
  if (threads == 1) {
    body(0, static_cast<int>(rows));
    return;
  }
  if (!pool || pool->num_threads() != threads) pool = std::make_unique<ThreadPool>(threads);
  pool->ParallelFor(static_cast<int>(rows), body);
}

// Eight independent accumulators: a fixed summation order that vectorises without -ffast-math.
template <class T>
CPFAST_INLINE T Dot(const T* a, const T* b, int d) {
  T acc[8] = {};
  int i = 0;
  for (; i + 8 <= d; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  T tail = T(0);
  for (; i < d; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

template <class T>
CPFAST_INLINE void Axpy(T alpha, const T* x, T* y, int d) {
  for (int i = 0; i < d; ++i) y[i] += alpha * x[i];
}

template <class T>
CPFAST_INLINE void AttentionForwardRows(const AttentionDims& s, const AttentionForwardArgs<T>& x, int r0, int r1) {
  const int A = s.agents, H = s.heads, N = s.entities, d = s.dim;
  const int64_t col_stride = static_cast<int64_t>(s.kv_heads) * d;  // between entities of k and v
  const int out_width = s.average ? d : H * d;
  const T head_coef = s.average ? T(1) / T(H) : T(1);
  T scores[kMaxEntities], weights[kMaxEntities];
  for (int64_t r = r0; r < r1; ++r) {
    const T* k_row = x.k + r * N * col_stride;
    const T* v_row = x.v + r * N * col_stride;
    for (int a = 0; a < A; ++a) {
      const int64_t ra = r * A + a;
      const T* mask = x.mask + ra * N;
      T* out = x.out + ra * out_width;
      T* probs = x.probs + ra * H * N;
      std::fill(out, out + out_width, T(0));
      if (!AnyVisible(mask, N)) {
        std::fill(probs, probs + H * N, T(0));
        continue;
      }
      for (int h = 0; h < H; ++h) {
        const T* q = x.q + (ra * H + h) * d;
        const int64_t head_offset = s.kv_heads == 1 ? 0 : static_cast<int64_t>(h) * d;
        for (int n = 0; n < N; ++n) scores[n] = Dot(q, k_row + n * col_stride + head_offset, d) * T(s.scale);
        SoftmaxAll(scores, N, probs + h * N);
        MaskRenormalise(probs + h * N, mask, N, weights);
        T* o = s.average ? out : out + h * d;
        for (int n = 0; n < N; ++n)
          if (weights[n] != T(0)) Axpy(weights[n] * head_coef, v_row + n * col_stride + head_offset, o, d);
      }
    }
  }
}

template <class T>
CPFAST_INLINE void AttentionBackwardRows(const AttentionDims& s, const AttentionBackwardArgs<T>& x, int r0, int r1) {
  const int A = s.agents, H = s.heads, N = s.entities, d = s.dim;
  const int64_t col_stride = static_cast<int64_t>(s.kv_heads) * d;
  const T head_coef = s.average ? T(1) / T(H) : T(1);
  const T scale = T(s.scale);
  T weights[kMaxEntities], d_weights[kMaxEntities], d_scores[kMaxEntities];
  for (int64_t r = r0; r < r1; ++r) {
    const T* k_row = x.k + r * N * col_stride;
    const T* v_row = x.v + r * N * col_stride;
    T* dk_row = x.dk + r * N * col_stride;
    T* dv_row = x.dv + r * N * col_stride;
    std::fill(dk_row, dk_row + N * col_stride, T(0));
    std::fill(dv_row, dv_row + N * col_stride, T(0));
    for (int a = 0; a < A; ++a) {
      const int64_t ra = r * A + a;
      const T* mask = x.mask + ra * N;
      T* dq_agent = x.dq + ra * H * d;
      std::fill(dq_agent, dq_agent + H * d, T(0));
      if (!AnyVisible(mask, N)) continue;
      for (int h = 0; h < H; ++h) {
        const T* q = x.q + (ra * H + h) * d;
        const T* grad = x.grad + (s.average ? ra * d : (ra * H + h) * d);
        const T* probs = x.probs + (ra * H + h) * N;
        const int64_t head_offset = s.kv_heads == 1 ? 0 : static_cast<int64_t>(h) * d;
        MaskRenormalise(probs, mask, N, weights);
        for (int n = 0; n < N; ++n) {
          const int64_t col = n * col_stride + head_offset;
          d_weights[n] = Dot(grad, v_row + col, d) * head_coef;
          if (weights[n] != T(0)) Axpy(weights[n] * head_coef, grad, dv_row + col, d);
        }
        AttentionScoreGrad(probs, mask, d_weights, N, d_scores);
        T* dq = dq_agent + h * d;
        for (int n = 0; n < N; ++n) {
          const T c = d_scores[n] * scale;
          if (c == T(0)) continue;
          const int64_t col = n * col_stride + head_offset;
          Axpy(c, k_row + col, dq, d);
          Axpy(c, q, dk_row + col, d);
        }
      }
    }
  }
}

template <class T>
CPFAST_INLINE void MixForwardRows(const MixDims& s, const MixArgs<T>& x, T* out, int r0, int r1) {
  for (int64_t r = r0; r < r1; ++r) out[r] = MixForwardRow(MixRowOf(s, x, r));
}

template <class T>
CPFAST_INLINE void MixBackwardRows(const MixDims& s, const MixArgs<T>& x, const MixBackwardArgs<T>& g, int r0, int r1) {
  for (int64_t r = r0; r < r1; ++r) MixBackwardRow(MixRowOf(s, x, r), g.grad[r], MixGradsOf(s, g, r));
}

// One cloned entry per (operator, dtype): the row loops above are inlined into each clone.
#define CPFAST_CLONED(NAME, T, ARGS_T, IMPL)                                                   \
  CPFAST_CLONES void NAME(const AttentionDims& s, const ARGS_T<T>& x, int r0, int r1) {         \
    IMPL<T>(s, x, r0, r1);                                                                      \
  }
CPFAST_CLONED(AttentionForwardF32, float, AttentionForwardArgs, AttentionForwardRows)
CPFAST_CLONED(AttentionForwardF64, double, AttentionForwardArgs, AttentionForwardRows)
CPFAST_CLONED(AttentionBackwardF32, float, AttentionBackwardArgs, AttentionBackwardRows)
CPFAST_CLONED(AttentionBackwardF64, double, AttentionBackwardArgs, AttentionBackwardRows)
#undef CPFAST_CLONED

void AttentionForwardRowsAny(const AttentionDims& s, const AttentionForwardArgs<float>& x, int r0, int r1) {
  AttentionForwardF32(s, x, r0, r1);
}
void AttentionForwardRowsAny(const AttentionDims& s, const AttentionForwardArgs<double>& x, int r0, int r1) {
  AttentionForwardF64(s, x, r0, r1);
}
void AttentionBackwardRowsAny(const AttentionDims& s, const AttentionBackwardArgs<float>& x, int r0, int r1) {
  AttentionBackwardF32(s, x, r0, r1);
}
void AttentionBackwardRowsAny(const AttentionDims& s, const AttentionBackwardArgs<double>& x, int r0, int r1) {
  AttentionBackwardF64(s, x, r0, r1);
}

}  // namespace

template <class T>
void AttentionForwardCpu(const AttentionDims& dims, const AttentionForwardArgs<T>& args, int num_threads) {
  ParallelRows(dims.rows, num_threads, [&](int r0, int r1) { AttentionForwardRowsAny(dims, args, r0, r1); });
}

template <class T>
void AttentionBackwardCpu(const AttentionDims& dims, const AttentionBackwardArgs<T>& args, int num_threads) {
  ParallelRows(dims.rows, num_threads, [&](int r0, int r1) { AttentionBackwardRowsAny(dims, args, r0, r1); });
}

template <class T>
void MixForwardCpu(const MixDims& dims, const MixArgs<T>& args, T* out, int num_threads) {
  ParallelRows(dims.rows, num_threads, [&](int r0, int r1) { MixForwardRows(dims, args, out, r0, r1); });
}

template <class T>
void MixBackwardCpu(const MixDims& dims, const MixArgs<T>& args, const MixBackwardArgs<T>& grads, int num_threads) {
  ParallelRows(dims.rows, num_threads, [&](int r0, int r1) { MixBackwardRows(dims, args, grads, r0, r1); });
}

#define CPFAST_INSTANTIATE(T)                                                                            \
  template void AttentionForwardCpu<T>(const AttentionDims&, const AttentionForwardArgs<T>&, int);       \
  template void AttentionBackwardCpu<T>(const AttentionDims&, const AttentionBackwardArgs<T>&, int);     \
  template void MixForwardCpu<T>(const MixDims&, const MixArgs<T>&, T*, int);                            \
  template void MixBackwardCpu<T>(const MixDims&, const MixArgs<T>&, const MixBackwardArgs<T>&, int);
CPFAST_INSTANTIATE(float)
CPFAST_INSTANTIATE(double)
#undef CPFAST_INSTANTIATE

}  // namespace cpfast::kernels
