// CUDA implementations, launched on the caller's stream. Attention: one warp per (row, agent)
// query, lanes split the head width, a query's scores sit in shared memory and one lane runs the
// shared per-row softmax/renormalisation (attention_math.h). The backward writes per-query score
// gradients, then a second kernel sums them into dK/dV per (row, column) in a fixed order, so
// results are deterministic (no atomics). Mixing: one thread per row runs mixing_math.h.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "attention_math.h"
#include "kernels.h"
#include "mixing_math.h"

namespace cpfast::kernels {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kPerLane = kMaxDim / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;

void Check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

cudaStream_t AsStream(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

unsigned Blocks(int64_t items, int per_block) { return static_cast<unsigned>((items + per_block - 1) / per_block); }

template <class T>
__device__ T WarpSum(T v) {
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

template <class T>
struct WarpScratch {
  T a[kMaxEntities], b[kMaxEntities], c[kMaxEntities];
};

// Lane-strided view of one head-width vector: element lane + 32 j.
__device__ __forceinline__ int LaneIndex(int j) { return static_cast<int>(threadIdx.x % kWarp) + j * kWarp; }

template <class T>
__device__ bool WarpAnyVisible(const T* mask, int n) {
  bool visible = false;
  for (int i = threadIdx.x % kWarp; i < n; i += kWarp) visible |= mask[i] != T(0);
  return __any_sync(kFullMask, visible);
}

template <class T>
__global__ void AttentionForwardKernel(AttentionDims s, AttentionForwardArgs<T> x) {
  __shared__ WarpScratch<T> scratch[kWarpsPerBlock];
  const int lane = threadIdx.x % kWarp;
  const int64_t ra = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (ra >= s.rows * s.agents) return;
  WarpScratch<T>& w = scratch[threadIdx.x / kWarp];
  const int H = s.heads, N = s.entities, d = s.dim;
  const int64_t r = ra / s.agents;
  const int64_t col_stride = static_cast<int64_t>(s.kv_heads) * d;
  const int out_width = s.average ? d : H * d;
  const T head_coef = s.average ? T(1) / T(H) : T(1);
  const T* mask = x.mask + ra * N;
  T* out = x.out + ra * out_width;
  T* probs = x.probs + ra * H * N;
  if (!WarpAnyVisible(mask, N)) {
    for (int i = lane; i < out_width; i += kWarp) out[i] = T(0);
    for (int i = lane; i < H * N; i += kWarp) probs[i] = T(0);
    return;
  }
  T averaged[kPerLane] = {};
  for (int h = 0; h < H; ++h) {
    const T* q = x.q + (ra * H + h) * d;
    const int64_t head_offset = s.kv_heads == 1 ? 0 : static_cast<int64_t>(h) * d;
    const T* k = x.k + r * N * col_stride + head_offset;
    const T* v = x.v + r * N * col_stride + head_offset;
    T q_reg[kPerLane];
    for (int j = 0; j < kPerLane; ++j) q_reg[j] = LaneIndex(j) < d ? q[LaneIndex(j)] : T(0);
    for (int n = 0; n < N; ++n) {
      T part = T(0);
      for (int j = 0; j < kPerLane; ++j)
        if (LaneIndex(j) < d) part += q_reg[j] * k[n * col_stride + LaneIndex(j)];
      part = WarpSum(part);
      if (lane == 0) w.a[n] = part * T(s.scale);
    }
    __syncwarp();
    if (lane == 0) {
      SoftmaxAll(w.a, N, w.b);
      MaskRenormalise(w.b, mask, N, w.c);
    }
    __syncwarp();
    for (int n = lane; n < N; n += kWarp) probs[h * N + n] = w.b[n];
    T o[kPerLane] = {};
    for (int n = 0; n < N; ++n) {
      const T weight = w.c[n];
      if (weight == T(0)) continue;
      for (int j = 0; j < kPerLane; ++j)
        if (LaneIndex(j) < d) o[j] += weight * v[n * col_stride + LaneIndex(j)];
    }
    for (int j = 0; j < kPerLane; ++j) {
      if (LaneIndex(j) >= d) continue;
      if (s.average)
        averaged[j] += o[j] * head_coef;
      else
        out[h * d + LaneIndex(j)] = o[j];
    }
    __syncwarp();
  }
  if (s.average)
    for (int j = 0; j < kPerLane; ++j)
      if (LaneIndex(j) < d) out[LaneIndex(j)] = averaged[j];
}

// dQ per query, plus the scaled score gradients and head-weighted attention weights that the
// column kernel below needs.
template <class T>
__global__ void AttentionBackwardQueryKernel(AttentionDims s, AttentionBackwardArgs<T> x) {
  __shared__ WarpScratch<T> scratch[kWarpsPerBlock];
  const int lane = threadIdx.x % kWarp;
  const int64_t ra = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (ra >= s.rows * s.agents) return;
  WarpScratch<T>& w = scratch[threadIdx.x / kWarp];
  const int H = s.heads, N = s.entities, d = s.dim;
  const int64_t r = ra / s.agents;
  const int64_t col_stride = static_cast<int64_t>(s.kv_heads) * d;
  const T head_coef = s.average ? T(1) / T(H) : T(1);
  const T scale = T(s.scale);
  const T* mask = x.mask + ra * N;
  T* dq_agent = x.dq + ra * H * d;
  T* d_scores = x.d_scores + ra * H * N;
  T* weights = x.weights + ra * H * N;
  if (!WarpAnyVisible(mask, N)) {
    for (int i = lane; i < H * d; i += kWarp) dq_agent[i] = T(0);
    for (int i = lane; i < H * N; i += kWarp) d_scores[i] = weights[i] = T(0);
    return;
  }
  for (int h = 0; h < H; ++h) {
    const T* grad = x.grad + (s.average ? ra * d : (ra * H + h) * d);
    const int64_t head_offset = s.kv_heads == 1 ? 0 : static_cast<int64_t>(h) * d;
    const T* k = x.k + r * N * col_stride + head_offset;
    const T* v = x.v + r * N * col_stride + head_offset;
    T g_reg[kPerLane];
    for (int j = 0; j < kPerLane; ++j) g_reg[j] = LaneIndex(j) < d ? grad[LaneIndex(j)] * head_coef : T(0);
    for (int n = 0; n < N; ++n) {
      T part = T(0);
      for (int j = 0; j < kPerLane; ++j)
        if (LaneIndex(j) < d) part += g_reg[j] * v[n * col_stride + LaneIndex(j)];
      part = WarpSum(part);
      if (lane == 0) w.a[n] = part;  // d(weights)
    }
    __syncwarp();
    if (lane == 0) {
      for (int n = 0; n < N; ++n) w.b[n] = x.probs[(ra * H + h) * N + n];
      MaskRenormalise(w.b, mask, N, w.c);
      AttentionScoreGrad(w.b, mask, w.a, N, w.a);  // in place: d(weights) -> d(scores)
    }
    __syncwarp();
    for (int n = lane; n < N; n += kWarp) {
      d_scores[h * N + n] = w.a[n] * scale;
      weights[h * N + n] = w.c[n] * head_coef;
    }
    T dq[kPerLane] = {};
    for (int n = 0; n < N; ++n) {
      const T c = w.a[n] * scale;
      if (c == T(0)) continue;
      for (int j = 0; j < kPerLane; ++j)
        if (LaneIndex(j) < d) dq[j] += c * k[n * col_stride + LaneIndex(j)];
    }
    for (int j = 0; j < kPerLane; ++j)
      if (LaneIndex(j) < d) dq_agent[h * d + LaneIndex(j)] = dq[j];
    __syncwarp();
  }
}

// dK and dV for one (row, column, key/value head), summed over agents and heads in order.
template <class T>
__global__ void AttentionBackwardColumnKernel(AttentionDims s, AttentionBackwardArgs<T> x) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int A = s.agents, H = s.heads, N = s.entities, d = s.dim, KH = s.kv_heads;
  if (id >= s.rows * N * KH) return;
  const int64_t r = id / (static_cast<int64_t>(N) * KH);
  const int n = static_cast<int>((id / KH) % N), kv_head = static_cast<int>(id % KH);
  T dk[kPerLane] = {}, dv[kPerLane] = {};
  for (int a = 0; a < A; ++a) {
    const int64_t ra = r * A + a;
    for (int h = 0; h < H; ++h) {
      if (KH != 1 && h != kv_head) continue;
      const int64_t query = ra * H + h;
      const T ds = x.d_scores[query * N + n], weight = x.weights[query * N + n];
      const T* q = x.q + query * d;
      const T* grad = x.grad + (s.average ? ra * d : query * d);
      for (int j = 0; j < kPerLane; ++j) {
        if (LaneIndex(j) >= d) continue;
        if (ds != T(0)) dk[j] += ds * q[LaneIndex(j)];
        if (weight != T(0)) dv[j] += weight * grad[LaneIndex(j)];
      }
    }
  }
  T* dk_out = x.dk + id * d;
  T* dv_out = x.dv + id * d;
  const bool shared = x.dk == x.dv;  // keys are also the values: one gradient buffer
  for (int j = 0; j < kPerLane; ++j) {
    if (LaneIndex(j) >= d) continue;
    if (shared) {
      dk_out[LaneIndex(j)] = dk[j] + dv[j];
    } else {
      dk_out[LaneIndex(j)] = dk[j];
      dv_out[LaneIndex(j)] = dv[j];
    }
  }
}

template <class T>
__global__ void MixForwardKernel(MixDims s, MixArgs<T> x, T* out) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < s.rows) out[r] = MixForwardRow(MixRowOf(s, x, r));
}

template <class T>
__global__ void MixBackwardKernel(MixDims s, MixArgs<T> x, MixBackwardArgs<T> g) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < s.rows) MixBackwardRow(MixRowOf(s, x, r), g.grad[r], MixGradsOf(s, g, r));
}

constexpr int kMixThreads = 128;

}  // namespace

template <class T>
void AttentionForwardCuda(const AttentionDims& dims, const AttentionForwardArgs<T>& args, uintptr_t stream) {
  const int64_t queries = dims.rows * dims.agents;
  if (queries == 0) return;
  AttentionForwardKernel<T><<<Blocks(queries, kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, AsStream(stream)>>>(dims, args);
  Check(cudaGetLastError(), "entity_attention forward launch");
}

template <class T>
void AttentionBackwardCuda(const AttentionDims& dims, const AttentionBackwardArgs<T>& args, uintptr_t stream) {
  const int64_t queries = dims.rows * dims.agents;
  const int64_t columns = dims.rows * dims.entities * dims.kv_heads;
  if (queries == 0) return;
  AttentionBackwardQueryKernel<T>
      <<<Blocks(queries, kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, AsStream(stream)>>>(dims, args);
  Check(cudaGetLastError(), "entity_attention backward (queries) launch");
  AttentionBackwardColumnKernel<T>
      <<<Blocks(columns, kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, AsStream(stream)>>>(dims, args);
  Check(cudaGetLastError(), "entity_attention backward (columns) launch");
}

template <class T>
void MixForwardCuda(const MixDims& dims, const MixArgs<T>& args, T* out, uintptr_t stream) {
  if (dims.rows == 0) return;
  MixForwardKernel<T><<<Blocks(dims.rows, kMixThreads), kMixThreads, 0, AsStream(stream)>>>(dims, args, out);
  Check(cudaGetLastError(), "qmix_mix forward launch");
}

template <class T>
void MixBackwardCuda(const MixDims& dims, const MixArgs<T>& args, const MixBackwardArgs<T>& grads, uintptr_t stream) {
  if (dims.rows == 0) return;
  MixBackwardKernel<T><<<Blocks(dims.rows, kMixThreads), kMixThreads, 0, AsStream(stream)>>>(dims, args, grads);
  Check(cudaGetLastError(), "qmix_mix backward launch");
}

#define CPFAST_INSTANTIATE(T)                                                                                   \
  template void AttentionForwardCuda<T>(const AttentionDims&, const AttentionForwardArgs<T>&, uintptr_t);      \
  template void AttentionBackwardCuda<T>(const AttentionDims&, const AttentionBackwardArgs<T>&, uintptr_t);    \
  template void MixForwardCuda<T>(const MixDims&, const MixArgs<T>&, T*, uintptr_t);                           \
  template void MixBackwardCuda<T>(const MixDims&, const MixArgs<T>&, const MixBackwardArgs<T>&, uintptr_t);
CPFAST_INSTANTIATE(float)
CPFAST_INSTANTIATE(double)
#undef CPFAST_INSTANTIATE

}  // namespace cpfast::kernels
