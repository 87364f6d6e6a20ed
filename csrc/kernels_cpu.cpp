// CPU implementations: rows are split into one contiguous block per thread (results never depend
// on the thread count); the per-row loops over the head width are written for the compiler to
// vectorise, and on x86-64 GCC also builds an AVX2/FMA (x86-64-v3) clone picked at load.
#include <algorithm>
#include <cstring>

#include "attention_math.h"
#include "kernels.h"
#include "mixing_math.h"

#ifdef _OPENMP
#include <omp.h>
#else
#include <memory>
#include <mutex>

#include "thread_pool.h"
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CPFAST_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CPFAST_CLONES
#endif
#define CPFAST_INLINE __attribute__((always_inline)) inline

namespace cpfast::kernels {
namespace {

// With OpenMP the kernels run on the OpenMP runtime torch has already loaded (same soname), so
// the learner's matmuls and these kernels share one set of threads: a second pool beside
// torch's would compete with its threads for the cores.
template <class Body>
void ParallelRows(int64_t rows, int num_threads, Body body) {
  const int threads = std::max(1, std::min<int>(num_threads, static_cast<int>(std::min<int64_t>(rows, 1 << 20))));
  if (threads == 1) {
    body(0, static_cast<int>(rows));
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t begin = rows * t / n, end = rows * (t + 1) / n;
    if (begin < end) body(static_cast<int>(begin), static_cast<int>(end));
  }
#else
  static std::mutex mutex;
  static std::unique_ptr<ThreadPool> pool;
  std::lock_guard<std::mutex> lock(mutex);
  // No spinning: a kernel call lasts milliseconds, and torch's own threads need the cores between calls.
  if (!pool || pool->num_threads() != threads) pool = std::make_unique<ThreadPool>(threads, /*spins=*/0);
  pool->ParallelFor(static_cast<int>(rows), body);
#endif
}

// 32-byte vectors (GCC/Clang vector extensions): one AVX register in the x86-64-v3 clone,
// two SSE registers in the default one.
template <class T>
struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int kLanes = 32 / sizeof(T);
};

// Vectors go by reference: passing 32-byte vectors by value would tie the ABI to AVX.
template <class T>
CPFAST_INLINE void Load(const T* p, typename Vec<T>::type& v) {
  std::memcpy(&v, p, sizeof(v));
}

template <class T>
CPFAST_INLINE T LaneSum(const typename Vec<T>::type& v) {
  T total = v[0];
  for (int l = 1; l < Vec<T>::kLanes; ++l) total += v[l];
  return total;
}

// out[n] = x . rows[n * stride] for n < count, four rows at a time: four independent
// accumulator chains hide the add latency. Each sum has a fixed order.
template <class T>
CPFAST_INLINE void DotRows(const T* x, const T* rows, int64_t stride, int count, int d, T* out) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
  const int body = d - d % L;
  int n = 0;
  for (; n + 4 <= count; n += 4) {
    const T* r0 = rows + n * stride;
    const T* r1 = r0 + stride;
    const T* r2 = r1 + stride;
    const T* r3 = r2 + stride;
    V a0 = {}, a1 = {}, a2 = {}, a3 = {};
    V xv, v0, v1, v2, v3;
    for (int i = 0; i < body; i += L) {
      Load(x + i, xv);
      Load(r0 + i, v0);
      Load(r1 + i, v1);
      Load(r2 + i, v2);
      Load(r3 + i, v3);
      a0 += xv * v0;
      a1 += xv * v1;
      a2 += xv * v2;
      a3 += xv * v3;
    }
    T t0 = LaneSum<T>(a0), t1 = LaneSum<T>(a1), t2 = LaneSum<T>(a2), t3 = LaneSum<T>(a3);
    for (int i = body; i < d; ++i) {
      t0 += x[i] * r0[i];
      t1 += x[i] * r1[i];
      t2 += x[i] * r2[i];
      t3 += x[i] * r3[i];
    }
    out[n] = t0, out[n + 1] = t1, out[n + 2] = t2, out[n + 3] = t3;
  }
  for (; n < count; ++n) out[n] = DotOf(x, rows + n * stride, d);
}

template <class T>
CPFAST_INLINE void Axpy(T alpha, const T* x, T* y, int d) {
  for (int i = 0; i < d; ++i) y[i] += alpha * x[i];
}

// y += alpha x, then y += beta z: one pass over y (keys doubling as values get both parts of
// their gradient), each element updated in the same order as two Axpy calls.
template <class T>
CPFAST_INLINE void Axpy2(T alpha, const T* x, T beta, const T* z, T* y, int d) {
  for (int i = 0; i < d; ++i) {
    const T partial = y[i] + alpha * x[i];
    y[i] = partial + beta * z[i];
  }
}

// out += sum_n coef[n] rows[n * stride] over the nonzero coefficients, in order of n; a block of
// out stays in registers across all rows instead of being loaded and stored once per row.
template <class T>
CPFAST_INLINE void WeightedRowSum(const T* coef, const T* rows, int64_t stride, int count, int d, T* out) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
  int i = 0;
  for (; i + 4 * L <= d; i += 4 * L) {
    V a0, a1, a2, a3, c, v;
    Load(out + i, a0);
    Load(out + i + L, a1);
    Load(out + i + 2 * L, a2);
    Load(out + i + 3 * L, a3);
    for (int n = 0; n < count; ++n) {
      if (coef[n] == T(0)) continue;
      const T* row = rows + n * stride + i;
      c = V{} + coef[n];
      Load(row, v), a0 += c * v;
      Load(row + L, v), a1 += c * v;
      Load(row + 2 * L, v), a2 += c * v;
      Load(row + 3 * L, v), a3 += c * v;
    }
    std::memcpy(out + i, &a0, sizeof(V));
    std::memcpy(out + i + L, &a1, sizeof(V));
    std::memcpy(out + i + 2 * L, &a2, sizeof(V));
    std::memcpy(out + i + 3 * L, &a3, sizeof(V));
  }
  for (; i < d; ++i)
    for (int n = 0; n < count; ++n)
      if (coef[n] != T(0)) out[i] += coef[n] * rows[n * stride + i];
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
        DotRows(q, k_row + head_offset, col_stride, N, d, scores);
        for (int n = 0; n < N; ++n) scores[n] *= T(s.scale);
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
  const bool shared = x.dk == x.dv;  // keys doubling as values: one gradient buffer
  T weights[kMaxEntities], d_weights[kMaxEntities], d_scores[kMaxEntities];
  for (int64_t r = r0; r < r1; ++r) {
    const T* k_row = x.k + r * N * col_stride;
    const T* v_row = x.v + r * N * col_stride;
    T* dk_row = x.dk + r * N * col_stride;
    T* dv_row = x.dv + r * N * col_stride;
    std::fill(dk_row, dk_row + N * col_stride, T(0));
    if (!shared) std::fill(dv_row, dv_row + N * col_stride, T(0));
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
        DotRows(grad, v_row + head_offset, col_stride, N, d, d_weights);
        for (int n = 0; n < N; ++n) d_weights[n] *= head_coef;
        AttentionScoreGrad(probs, mask, d_weights, N, d_scores);
        for (int n = 0; n < N; ++n) d_scores[n] *= scale;
        for (int n = 0; n < N; ++n) {
          const T a = weights[n] * head_coef, c = d_scores[n];
          const int64_t col = n * col_stride + head_offset;
          if (shared && a != T(0) && c != T(0)) {
            Axpy2(a, grad, c, q, dk_row + col, d);
            continue;
          }
          if (a != T(0)) Axpy(a, grad, dv_row + col, d);
          if (c != T(0)) Axpy(c, q, dk_row + col, d);
        }
        WeightedRowSum(d_scores, k_row + head_offset, col_stride, N, d, dq_agent + h * d);
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

#define CPFAST_CLONED_MIX(NAME, T)                                                              \
  CPFAST_CLONES void NAME(const MixDims& s, const MixArgs<T>& x, T* out, int r0, int r1) {     \
    MixForwardRows<T>(s, x, out, r0, r1);                                                       \
  }                                                                                             \
  CPFAST_CLONES void NAME(const MixDims& s, const MixArgs<T>& x, const MixBackwardArgs<T>& g, int r0, int r1) { \
    MixBackwardRows<T>(s, x, g, r0, r1);                                                        \
  }
CPFAST_CLONED_MIX(MixRowsF32, float)
CPFAST_CLONED_MIX(MixRowsF64, double)
#undef CPFAST_CLONED_MIX
void MixRowsAny(const MixDims& s, const MixArgs<float>& x, float* out, int r0, int r1) { MixRowsF32(s, x, out, r0, r1); }
void MixRowsAny(const MixDims& s, const MixArgs<double>& x, double* out, int r0, int r1) { MixRowsF64(s, x, out, r0, r1); }
void MixRowsAny(const MixDims& s, const MixArgs<float>& x, const MixBackwardArgs<float>& g, int r0, int r1) {
  MixRowsF32(s, x, g, r0, r1);
}
void MixRowsAny(const MixDims& s, const MixArgs<double>& x, const MixBackwardArgs<double>& g, int r0, int r1) {
  MixRowsF64(s, x, g, r0, r1);
}

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
  ParallelRows(dims.rows, num_threads, [&](int r0, int r1) { MixRowsAny(dims, args, out, r0, r1); });
}

template <class T>
void MixBackwardCpu(const MixDims& dims, const MixArgs<T>& args, const MixBackwardArgs<T>& grads, int num_threads) {
  ParallelRows(dims.rows, num_threads, [&](int r0, int r1) { MixRowsAny(dims, args, grads, r0, r1); });
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
