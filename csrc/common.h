// Helpers shared by the CPU (.cpp, compiled by the host compiler) and CUDA (.cu) kernels.
#pragma once
#include <cmath>

#if defined(__CUDACC__)
#define CPFAST_HD __host__ __device__ __forceinline__
#else
#define CPFAST_HD inline
#endif

namespace cpfast::kernels {

// Limits the kernels accept; the Python dispatcher falls back to pure torch beyond them.
constexpr int kMaxEntities = 64;  // columns of one attention row (a GPU warp keeps them in shared memory)
constexpr int kMaxDim = 256;      // head width on the GPU (8 values per lane of a warp)
constexpr int kMaxEmbed = 128;    // mixing embedding width (per-row scratch arrays)

template <class T>
CPFAST_HD T Exp(T x) {
  return exp(x);
}
template <>
CPFAST_HD float Exp<float>(float x) {
  return expf(x);
}
template <class T>
CPFAST_HD T Expm1(T x) {
  return expm1(x);
}
template <>
CPFAST_HD float Expm1<float>(float x) {
  return expm1f(x);
}

// probs = softmax(logits) over n values, max-subtracted.
template <class T>
CPFAST_HD void SoftmaxAll(const T* logits, int n, T* probs) {
  T top = logits[0];
  for (int i = 1; i < n; ++i) top = logits[i] > top ? logits[i] : top;
  T total = T(0);
  for (int i = 0; i < n; ++i) {
    probs[i] = Exp(logits[i] - top);
    total += probs[i];
  }
  for (int i = 0; i < n; ++i) probs[i] /= total;
}

// d_logits of a softmax from its output probs and d_probs.
template <class T>
CPFAST_HD void SoftmaxBackward(const T* probs, const T* d_probs, int n, T* d_logits) {
  T inner = T(0);
  for (int i = 0; i < n; ++i) inner += d_probs[i] * probs[i];
  for (int i = 0; i < n; ++i) d_logits[i] = probs[i] * (d_probs[i] - inner);
}

}  // namespace cpfast::kernels
