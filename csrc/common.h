// Helpers shared by the CPU (.cpp, compiled by the host compiler) and CUDA (.cu) kernels.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

// Always inlined: the CPU entry points are compiled once per instruction set (target_clones),
// and only code inlined into them gets that instruction set.
#if defined(__CUDACC__)
#define CPFAST_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define CPFAST_HD inline __attribute__((always_inline))
#else
#define CPFAST_HD inline
#endif

namespace cpfast::kernels {

// Limits the kernels accept; the Python dispatcher falls back to pure torch beyond them.
constexpr int kMaxEntities = 64;  // columns of one attention row (a GPU warp keeps them in shared memory)
constexpr int kMaxDim = 256;      // head width on the GPU (8 values per lane of a warp)
constexpr int kMaxEmbed = 128;    // mixing embedding width (per-row scratch arrays)

CPFAST_HD float FloatFromBits(int32_t bits) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
#endif
}

// exp for x <= 88 in float32, in plain arithmetic so that loops over it vectorise on the CPU
// (libm's expf does not): x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial
// (Cephes' minimax coefficients, within 2 ulp of expf), times 2^n built in the exponent bits.
// Results below the smallest normal float (x < -87.34) are 0 instead of subnormal.
CPFAST_HD float ExpFloat(float x) {
  const float kMin = -87.3365447f, kMax = 88.3762626f;
  const float clamped = x < kMin ? kMin : (x > kMax ? kMax : x);
  const float kRound = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (clamped * 1.44269504f + kRound) - kRound;
  float r = clamped - n * 0.693359375f;  // ln2 split in two for an exact first product
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float value = p * FloatFromBits((static_cast<int32_t>(n) + 127) << 23);
  return x < kMin ? 0.0f : value;
}

template <class T>
CPFAST_HD T Exp(T x) {
  return exp(x);
}
template <>
CPFAST_HD float Exp<float>(float x) {
  return ExpFloat(x);
}
// expm1 for x <= 88 in float32, vectorisable like ExpFloat: for |x| < 0.5 the Taylor series to
// x^8 (relative error below 2e-8, no cancellation), elsewhere ExpFloat(x) - 1.
CPFAST_HD float Expm1Float(float x) {
  float p = 1.0f / 40320.0f;
  p = p * x + 1.0f / 5040.0f;
  p = p * x + 1.0f / 720.0f;
  p = p * x + 1.0f / 120.0f;
  p = p * x + 1.0f / 24.0f;
  p = p * x + 1.0f / 6.0f;
  p = p * x + 0.5f;
  const float series = p * x * x + x;
  const float shifted = ExpFloat(x) - 1.0f;
  return (x > -0.5f && x < 0.5f) ? series : shifted;
}

template <class T>
CPFAST_HD T Expm1(T x) {
  return expm1(x);
}
template <>
CPFAST_HD float Expm1<float>(float x) {
  return Expm1Float(x);
}

// Max and sum over n values with eight interleaved partial results: a fixed order (same result
// on every run) that still vectorises.
template <class T>
CPFAST_HD T MaxOf(const T* x, int n) {
  T lanes[8];
  for (int l = 0; l < 8; ++l) lanes[l] = x[0];
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lanes[l] = x[i + l] > lanes[l] ? x[i + l] : lanes[l];
  for (; i < n; ++i) lanes[0] = x[i] > lanes[0] ? x[i] : lanes[0];
  T top = lanes[0];
  for (int l = 1; l < 8; ++l) top = lanes[l] > top ? lanes[l] : top;
  return top;
}

template <class T>
CPFAST_HD T SumOf(const T* x, int n) {
  T lanes[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += x[i + l];
  T tail = T(0);
  for (; i < n; ++i) tail += x[i];
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])) + tail;
}

template <class T>
CPFAST_HD T DotOf(const T* a, const T* b, int n) {
  T lanes[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += a[i + l] * b[i + l];
  T tail = T(0);
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7])) + tail;
}

// probs = softmax(logits) over n values, max-subtracted.
template <class T>
CPFAST_HD void SoftmaxAll(const T* logits, int n, T* probs) {
  const T top = MaxOf(logits, n);
  for (int i = 0; i < n; ++i) probs[i] = Exp(logits[i] - top);
  const T total = SumOf(probs, n);
  for (int i = 0; i < n; ++i) probs[i] /= total;
}

// d_logits of a softmax from its output probs and d_probs.
template <class T>
CPFAST_HD void SoftmaxBackward(const T* probs, const T* d_probs, int n, T* d_logits) {
  const T inner = DotOf(d_probs, probs, n);
  for (int i = 0; i < n; ++i) d_logits[i] = probs[i] * (d_probs[i] - inner);
}

}  // namespace cpfast::kernels
