// The fused operators' entry points: CPU implementations (kernels_cpu.cpp) and, when built with a
// CUDA compiler, CUDA ones (kernels_cuda.cu) taking the caller's stream. Tensors are dense and
// row-major; Python validates shapes, dtypes and devices before calling.
//
// entity_attention: q [R, A, H, d] (per-head projected queries), k and v [R, N, KH, d] with
// KH = H or KH = 1 (one key/value row shared by all heads), mask [R, A, N] (0/1).
// Outputs: out [R, A, d] (heads averaged) or [R, A, H, d] (average = false), and the softmax
// probabilities [R, A, H, N] kept for the backward.
//
// qmix_mix: w1 [P, R, A, E], b1 / w2 / b2 [R, A, E], q [P, R, A], present [R, A] -> Q_tot [R].
#pragma once
#include <cstdint>

namespace cpfast::kernels {

struct AttentionDims {
  int64_t rows;
  int agents, heads, entities, dim, kv_heads;
  double scale;
  bool average;
};

template <class T>
struct AttentionForwardArgs {
  const T *q, *k, *v, *mask;
  T *out, *probs;
};

// d_scores and weights are [R, A, H, N] scratch buffers, used by the CUDA backward only. When
// v == k (keys double as values) dk may equal dv: both parts are then added into that buffer.
template <class T>
struct AttentionBackwardArgs {
  const T *grad, *q, *k, *v, *mask, *probs;
  T *dq, *dk, *dv;
  T *d_scores, *weights;
};

struct MixDims {
  int64_t rows;
  int pairs, agents, embed;
};

template <class T>
struct MixArgs {
  const T *w1, *b1, *w2, *b2, *q, *present;
};

template <class T>
struct MixBackwardArgs {
  const T* grad;  // [R]
  T *dw1, *db1, *dw2, *db2, *dq;
};

template <class T>
void AttentionForwardCpu(const AttentionDims& dims, const AttentionForwardArgs<T>& args, int num_threads);
template <class T>
void AttentionBackwardCpu(const AttentionDims& dims, const AttentionBackwardArgs<T>& args, int num_threads);
template <class T>
void MixForwardCpu(const MixDims& dims, const MixArgs<T>& args, T* out, int num_threads);
template <class T>
void MixBackwardCpu(const MixDims& dims, const MixArgs<T>& args, const MixBackwardArgs<T>& grads, int num_threads);

#ifdef CPFAST_WITH_CUDA
template <class T>
void AttentionForwardCuda(const AttentionDims& dims, const AttentionForwardArgs<T>& args, uintptr_t stream);
template <class T>
void AttentionBackwardCuda(const AttentionDims& dims, const AttentionBackwardArgs<T>& args, uintptr_t stream);
template <class T>
void MixForwardCuda(const MixDims& dims, const MixArgs<T>& args, T* out, uintptr_t stream);
template <class T>
void MixBackwardCuda(const MixDims& dims, const MixArgs<T>& args, const MixBackwardArgs<T>& grads, uintptr_t stream);
#endif

}  // namespace cpfast::kernels
