// The per-row arithmetic of entity attention (docs/method.md §2), written once for the CPU and the GPU.
//
// For one query against n <= kMaxEntities columns: probs = softmax(scores) over every column, then
// weights = probs * mask / (sum(probs * mask) + 1e-12). A row whose visible probabilities are all
// zero gets weights 0 (no NaN). The backward maps d(weights) to d(scores).
#pragma once
#include "common.h"

namespace cpfast::kernels {

template <class T>
CPFAST_HD bool AnyVisible(const T* mask, int n) {
  for (int i = 0; i < n; ++i)
    if (mask[i] != T(0)) return true;
  return false;
}

// weights = probs * mask / (sum(probs * mask) + 1e-12).
template <class T>
CPFAST_HD void MaskRenormalise(const T* probs, const T* mask, int n, T* weights) {
  T total = T(0);
  for (int i = 0; i < n; ++i) {
    weights[i] = probs[i] * mask[i];
    total += weights[i];
  }
  const T denom = total + T(1e-12);
  for (int i = 0; i < n; ++i) weights[i] /= denom;
}

// d_scores from d_weights through the renormalisation, the mask and the softmax. Masked columns
// still get gradient through the softmax normaliser, exactly as in the reference.
template <class T>
CPFAST_HD void AttentionScoreGrad(const T* probs, const T* mask, const T* d_weights, int n, T* d_scores) {
  T total = T(0);
  for (int i = 0; i < n; ++i) total += probs[i] * mask[i];
  const T denom = total + T(1e-12);
  T weighted = T(0);  // sum_j d_weights_j * weights_j
  for (int i = 0; i < n; ++i) weighted += d_weights[i] * (probs[i] * mask[i] / denom);
  T d_probs[kMaxEntities];
  for (int i = 0; i < n; ++i) d_probs[i] = mask[i] != T(0) ? (d_weights[i] - weighted) / denom * mask[i] : T(0);
  SoftmaxBackward(probs, d_probs, n, d_scores);
}

}  // namespace cpfast::kernels
