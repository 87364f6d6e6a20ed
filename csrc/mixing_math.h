// The per-row arithmetic of the QMIX combination (docs/method.md §5.1), written once for the CPU and
// the GPU (one GPU thread per row runs exactly these functions).
//
//   n = sum_i p_i + 1e-12,  W1_i = p_i softmax(w1_i),  b1 = sum_i p_i b1_i / n,
//   w2 = sum_i p_i softmax(w2_i) / n,  b2 = mean_k(sum_i p_i b2_i / n),
//   Q_tot = ELU(sum_pairs sum_i p_i q_i W1_i + b1) . w2 + b2
//
// Several (w1, q) pairs may be stacked (AI-QMIX's imagined groups); their terms are summed.
// Absent slots (p_i = 0) contribute nothing and get zero gradients.
#pragma once
#include <cstdint>

#include "common.h"
#include "kernels.h"

namespace cpfast::kernels {

// One row's inputs: w1 [pairs][agents][embed] and q [pairs][agents] with the given pair strides
// (elements between consecutive pairs); b1, w2, b2 [agents][embed]; present [agents].
template <class T>
struct MixRowInputs {
  const T* w1;
  int64_t w1_pair_stride;
  const T* b1;
  const T* w2;
  const T* b2;
  const T* q;
  int64_t q_pair_stride;
  const T* present;
  int pairs, agents, embed;
};

// Gradient outputs for one row, laid out like the inputs.
template <class T>
struct MixRowGrads {
  T* w1;
  T* b1;
  T* w2;
  T* b2;
  T* q;
};

// Row r of the full tensors described by dims.
template <class T>
CPFAST_HD MixRowInputs<T> MixRowOf(const MixDims& s, const MixArgs<T>& x, int64_t r) {
  const int64_t ae = static_cast<int64_t>(s.agents) * s.embed;
  return MixRowInputs<T>{x.w1 + r * ae, s.rows * ae,  x.b1 + r * ae,    x.w2 + r * ae, x.b2 + r * ae,
                         x.q + r * s.agents,          s.rows * s.agents, x.present + r * s.agents,
                         s.pairs,                     s.agents,          s.embed};
}

template <class T>
CPFAST_HD MixRowGrads<T> MixGradsOf(const MixDims& s, const MixBackwardArgs<T>& g, int64_t r) {
  const int64_t ae = static_cast<int64_t>(s.agents) * s.embed;
  return MixRowGrads<T>{g.dw1 + r * ae, g.db1 + r * ae, g.dw2 + r * ae, g.db2 + r * ae, g.dq + r * s.agents};
}

// The agent sums shared by forward and backward; returns n.
template <class T>
CPFAST_HD T MixAccumulate(const MixRowInputs<T>& x, T* mixed, T* bias1, T* w2, T* bias2) {
  const int e = x.embed;
  T n = T(0);
  for (int i = 0; i < x.agents; ++i) n += x.present[i];
  n += T(1e-12);
  for (int k = 0; k < e; ++k) mixed[k] = bias1[k] = w2[k] = bias2[k] = T(0);
  T soft[kMaxEmbed];
  for (int i = 0; i < x.agents; ++i) {
    const T p = x.present[i];
    if (p == T(0)) continue;
    for (int j = 0; j < x.pairs; ++j) {
      SoftmaxAll(x.w1 + j * x.w1_pair_stride + i * e, e, soft);
      const T pq = p * x.q[j * x.q_pair_stride + i];
      for (int k = 0; k < e; ++k) mixed[k] += pq * (p * soft[k]);
    }
    SoftmaxAll(x.w2 + i * e, e, soft);
    for (int k = 0; k < e; ++k) {
      bias1[k] += p * x.b1[i * e + k];
      w2[k] += p * soft[k];
      bias2[k] += p * x.b2[i * e + k];
    }
  }
  for (int k = 0; k < e; ++k) {
    bias1[k] /= n;
    w2[k] /= n;
    bias2[k] /= n;
  }
  return n;
}

template <class T>
CPFAST_HD T Elu(T x) {
  return x > T(0) ? x : Expm1(x);
}

template <class T>
CPFAST_HD T MixForwardRow(const MixRowInputs<T>& x) {
  T mixed[kMaxEmbed], bias1[kMaxEmbed], w2[kMaxEmbed], bias2[kMaxEmbed];
  MixAccumulate(x, mixed, bias1, w2, bias2);
  for (int k = 0; k < x.embed; ++k) mixed[k] = Elu(mixed[k] + bias1[k]) * w2[k];  // elementwise: vectorises
  return SumOf(mixed, x.embed) + SumOf(bias2, x.embed) / T(x.embed);
}

template <class T>
CPFAST_HD void MixBackwardRow(const MixRowInputs<T>& x, T grad, const MixRowGrads<T>& g) {
  const int e = x.embed;
  T mixed[kMaxEmbed], bias1[kMaxEmbed], w2[kMaxEmbed], bias2[kMaxEmbed];
  const T n = MixAccumulate(x, mixed, bias1, w2, bias2);
  T d_pre[kMaxEmbed], d_w2[kMaxEmbed];  // reuse: d_pre over mixed, d_w2 over the averaged w2
  for (int k = 0; k < e; ++k) {
    const T pre = mixed[k] + bias1[k];
    d_pre[k] = grad * w2[k] * (pre > T(0) ? T(1) : Exp(pre));
    d_w2[k] = grad * Elu(pre);
  }
  T soft[kMaxEmbed], d_soft[kMaxEmbed];
  for (int i = 0; i < x.agents; ++i) {
    const T p = x.present[i];
    if (p == T(0)) {
      for (int j = 0; j < x.pairs; ++j) {
        for (int k = 0; k < e; ++k) g.w1[j * x.w1_pair_stride + i * e + k] = T(0);
        g.q[j * x.q_pair_stride + i] = T(0);
      }
      for (int k = 0; k < e; ++k) g.b1[i * e + k] = g.w2[i * e + k] = g.b2[i * e + k] = T(0);
      continue;
    }
    for (int k = 0; k < e; ++k) {
      g.b1[i * e + k] = d_pre[k] * p / n;
      g.b2[i * e + k] = grad / T(e) * p / n;
    }
    SoftmaxAll(x.w2 + i * e, e, soft);
    for (int k = 0; k < e; ++k) d_soft[k] = d_w2[k] * p / n;
    SoftmaxBackward(soft, d_soft, e, g.w2 + i * e);
    for (int j = 0; j < x.pairs; ++j) {
      SoftmaxAll(x.w1 + j * x.w1_pair_stride + i * e, e, soft);
      const T pq = p * x.q[j * x.q_pair_stride + i];
      for (int k = 0; k < e; ++k) d_soft[k] = d_pre[k] * pq * p;
      g.q[j * x.q_pair_stride + i] = p * (p * DotOf(d_pre, soft, e));
      SoftmaxBackward(soft, d_soft, e, g.w1 + j * x.w1_pair_stride + i * e);
    }
  }
}

}  // namespace cpfast::kernels
