// pybind11 module cpfast._kernels. Python (cpfast/ops) validates tensors and passes raw data
// pointers, sizes and, for CUDA, the current stream as integers: no torch headers, no libtorch.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common.h"
#include "kernels.h"

namespace py = pybind11;
using namespace cpfast::kernels;

namespace {

template <class T>
const T* In(uintptr_t p) {
  return reinterpret_cast<const T*>(p);
}
template <class T>
T* Out(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

bool IsDouble(const std::string& dtype) {
  if (dtype == "float32") return false;
  if (dtype == "float64") return true;
  throw std::invalid_argument("cpfast._kernels: unsupported dtype " + dtype + " (float32 or float64)");
}

bool IsCuda(const std::string& device) {
  if (device == "cpu") return false;
  if (device != "cuda") throw std::invalid_argument("cpfast._kernels: unsupported device " + device);
#ifndef CPFAST_WITH_CUDA
  throw std::invalid_argument("cpfast._kernels was built without CUDA");
#endif
  return true;
}

void CheckAttentionDims(const AttentionDims& d, bool cuda) {
  if (d.rows < 0 || d.agents < 1 || d.heads < 1 || d.dim < 1 || d.entities < 1 || d.entities > kMaxEntities)
    throw std::invalid_argument("entity_attention: sizes out of range (entities must be 1.." +
                                std::to_string(kMaxEntities) + ")");
  // A warp holds kMaxDim values of a row: wider heads would be silently cut.
  if (cuda && d.dim > kMaxDim)
    throw std::invalid_argument("entity_attention: head width " + std::to_string(d.dim) + " exceeds the CUDA limit " +
                                std::to_string(kMaxDim));
  if (d.kv_heads != 1 && d.kv_heads != d.heads)
    throw std::invalid_argument("entity_attention: kv_heads must be 1 or heads");
}

template <class T>
void AttentionForward(bool cuda, const AttentionDims& dims, uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t mask,
                      uintptr_t out, uintptr_t probs, int threads, uintptr_t stream) {
  const AttentionForwardArgs<T> args{In<T>(q), In<T>(k), In<T>(v), In<T>(mask), Out<T>(out), Out<T>(probs)};
#ifdef CPFAST_WITH_CUDA
  if (cuda) return AttentionForwardCuda<T>(dims, args, stream);
#endif
  (void)cuda, (void)stream;
  AttentionForwardCpu<T>(dims, args, threads);
}

template <class T>
void AttentionBackward(bool cuda, const AttentionDims& dims, uintptr_t grad, uintptr_t q, uintptr_t k, uintptr_t v,
                       uintptr_t mask, uintptr_t probs, uintptr_t dq, uintptr_t dk, uintptr_t dv,
                       uintptr_t d_scores, uintptr_t weights, int threads, uintptr_t stream) {
  const AttentionBackwardArgs<T> args{In<T>(grad), In<T>(q),  In<T>(k),  In<T>(v),        In<T>(mask),
                                      In<T>(probs), Out<T>(dq), Out<T>(dk), Out<T>(dv), Out<T>(d_scores),
                                      Out<T>(weights)};
#ifdef CPFAST_WITH_CUDA
  if (cuda) return AttentionBackwardCuda<T>(dims, args, stream);
#endif
  (void)cuda, (void)stream;
  AttentionBackwardCpu<T>(dims, args, threads);
}

void CheckMixDims(const MixDims& d) {
  if (d.rows < 0 || d.pairs < 1 || d.agents < 1 || d.embed < 1 || d.embed > kMaxEmbed)
    throw std::invalid_argument("qmix_mix: sizes out of range (embed must be 1.." + std::to_string(kMaxEmbed) + ")");
}

template <class T>
MixArgs<T> MakeMixArgs(uintptr_t w1, uintptr_t b1, uintptr_t w2, uintptr_t b2, uintptr_t q, uintptr_t present) {
  return MixArgs<T>{In<T>(w1), In<T>(b1), In<T>(w2), In<T>(b2), In<T>(q), In<T>(present)};
}

template <class T>
void MixForward(bool cuda, const MixDims& dims, const MixArgs<T>& args, uintptr_t out, int threads, uintptr_t stream) {
#ifdef CPFAST_WITH_CUDA
  if (cuda) return MixForwardCuda<T>(dims, args, Out<T>(out), stream);
#endif
  (void)cuda, (void)stream;
  MixForwardCpu<T>(dims, args, Out<T>(out), threads);
}

template <class T>
void MixBackward(bool cuda, const MixDims& dims, const MixArgs<T>& args, uintptr_t grad, uintptr_t dw1,
                 uintptr_t db1, uintptr_t dw2, uintptr_t db2, uintptr_t dq, int threads, uintptr_t stream) {
  const MixBackwardArgs<T> grads{In<T>(grad), Out<T>(dw1), Out<T>(db1), Out<T>(dw2), Out<T>(db2), Out<T>(dq)};
#ifdef CPFAST_WITH_CUDA
  if (cuda) return MixBackwardCuda<T>(dims, args, grads, stream);
#endif
  (void)cuda, (void)stream;
  MixBackwardCpu<T>(dims, args, grads, threads);
}

}  // namespace

PYBIND11_MODULE(_kernels, m) {
  m.doc() = "cpfast fused kernels (entity attention, QMIX mixing): CPU and, when built with it, CUDA";
  m.def("has_cuda", [] {
#ifdef CPFAST_WITH_CUDA
    return true;
#else
    return false;
#endif
  });
  m.attr("max_entities") = kMaxEntities;
  m.attr("max_dim_cuda") = kMaxDim;
  m.attr("max_embed") = kMaxEmbed;

  m.def(
      "attention_forward",
      [](const std::string& device, const std::string& dtype, int64_t rows, int agents, int heads, int entities,
         int dim, int kv_heads, double scale, bool average, uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t mask,
         uintptr_t out, uintptr_t probs, int threads, uintptr_t stream) {
        const AttentionDims dims{rows, agents, heads, entities, dim, kv_heads, scale, average};
        const bool cuda = IsCuda(device);
        CheckAttentionDims(dims, cuda);
        py::gil_scoped_release release;
        if (IsDouble(dtype))
          AttentionForward<double>(cuda, dims, q, k, v, mask, out, probs, threads, stream);
        else
          AttentionForward<float>(cuda, dims, q, k, v, mask, out, probs, threads, stream);
      });
  m.def(
      "attention_backward",
      [](const std::string& device, const std::string& dtype, int64_t rows, int agents, int heads, int entities,
         int dim, int kv_heads, double scale, bool average, uintptr_t grad, uintptr_t q, uintptr_t k, uintptr_t v,
         uintptr_t mask, uintptr_t probs, uintptr_t dq, uintptr_t dk, uintptr_t dv, uintptr_t d_scores,
         uintptr_t weights, int threads, uintptr_t stream) {
        const AttentionDims dims{rows, agents, heads, entities, dim, kv_heads, scale, average};
        const bool cuda = IsCuda(device);
        CheckAttentionDims(dims, cuda);
        py::gil_scoped_release release;
        if (IsDouble(dtype))
          AttentionBackward<double>(cuda, dims, grad, q, k, v, mask, probs, dq, dk, dv, d_scores, weights, threads,
                                    stream);
        else
          AttentionBackward<float>(cuda, dims, grad, q, k, v, mask, probs, dq, dk, dv, d_scores, weights, threads,
                                   stream);
      });
  m.def("mix_forward", [](const std::string& device, const std::string& dtype, int64_t rows, int pairs, int agents,
                          int embed, uintptr_t w1, uintptr_t b1, uintptr_t w2, uintptr_t b2, uintptr_t q,
                          uintptr_t present, uintptr_t out, int threads, uintptr_t stream) {
    const MixDims dims{rows, pairs, agents, embed};
    CheckMixDims(dims);
    const bool cuda = IsCuda(device);
    py::gil_scoped_release release;
    if (IsDouble(dtype))
      MixForward<double>(cuda, dims, MakeMixArgs<double>(w1, b1, w2, b2, q, present), out, threads, stream);
    else
      MixForward<float>(cuda, dims, MakeMixArgs<float>(w1, b1, w2, b2, q, present), out, threads, stream);
  });
  m.def("mix_backward", [](const std::string& device, const std::string& dtype, int64_t rows, int pairs, int agents,
                           int embed, uintptr_t w1, uintptr_t b1, uintptr_t w2, uintptr_t b2, uintptr_t q,
                           uintptr_t present, uintptr_t grad, uintptr_t dw1, uintptr_t db1, uintptr_t dw2,
                           uintptr_t db2, uintptr_t dq, int threads, uintptr_t stream) {
    const MixDims dims{rows, pairs, agents, embed};
    CheckMixDims(dims);
    const bool cuda = IsCuda(device);
    py::gil_scoped_release release;
    if (IsDouble(dtype))
      MixBackward<double>(cuda, dims, MakeMixArgs<double>(w1, b1, w2, b2, q, present), grad, dw1, db1, dw2, db2, dq,
                          threads, stream);
    else
      MixBackward<float>(cuda, dims, MakeMixArgs<float>(w1, b1, w2, b2, q, present), grad, dw1, db1, dw2, db2, dq,
                         threads, stream);
  });
}
