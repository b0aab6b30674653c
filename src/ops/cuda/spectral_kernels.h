#pragma once
// The GPU half of the Fourier mixture that needs no LibTorch: per-frequency
// depthwise products and their kernel-gradient reduction as CUDA kernels, and
// a cache of cuFFT plans. Plain CUDA C++, so CI compiles it with nvcc alone
// (it has no GPU and Debian's LibTorch has no CUDA); the LibTorch-facing
// SpectralBackend for CUDA tensors is built on top of it with a CUDA LibTorch.
//
// Spectra are cufftComplex (float2) arrays in the layouts of
// ops/spectral_backend.h: depthwise products use kTransformMajor,
// [batch][channels][bins].

#include <cuda_runtime.h>
#include <cufft.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

namespace dash::ops::cuda {

// Y[b,c,k] = scale * X[b,c,k] * conj(H[c,k])   (conj_h; the forward correlation)
// Y[b,c,k] = scale * X[b,c,k] * H[c,k]         (otherwise; the input gradient)
// Y may alias X (in place).
cudaError_t depthwise_product(const float2* X, const float2* H, float2* Y, int64_t batch,
                              int64_t channels, int64_t bins, float scale, bool conj_h,
                              cudaStream_t stream);

// dH[c,k] = scale * sum_b X[b,c,k] * conj(dY[b,c,k])
cudaError_t depthwise_kernel_grad(const float2* X, const float2* dY, float2* dH, int64_t batch,
                                  int64_t channels, int64_t bins, float scale, cudaStream_t stream);

// One cuFFT plan per (device, rank, sizes, howmany, direction, output stride):
// `howmany` transforms of real arrays stored contiguously one after another,
// whose spectra are written (r2c) or read (c2r) either contiguously
// (kTransformMajor: spectrum_stride 1, distance bins) or interleaved with
// spectrum_stride = channels and distance 1 (kChannelsLast, one batch element
// per execution). Plans are made once and reused; creation and lookup hold a
// mutex. The stream is set on every lookup, so one plan serves the stream of
// the current call (calls on one plan must not overlap across streams).
struct CufftPlanKey {
  int device = 0;
  int rank = 1;
  int64_t n0 = 1, n1 = 1;
  int64_t howmany = 1;
  bool forward = true;
  int64_t spectrum_stride = 1;
  bool operator<(const CufftPlanKey& o) const {
    return std::tie(device, rank, n0, n1, howmany, forward, spectrum_stride) <
           std::tie(o.device, o.rank, o.n0, o.n1, o.howmany, o.forward, o.spectrum_stride);
  }
};

class CufftPlanCache {
 public:
  // caller_work_area: plans get no work area of their own; the caller sets
  // one (cufftSetWorkArea) of *work_bytes before every execution, e.g. from
  // LibTorch's caching allocator, instead of each plan holding its own.
  explicit CufftPlanCache(bool caller_work_area = false) : caller_work_area_(caller_work_area) {}
  ~CufftPlanCache();
  // Throws std::runtime_error naming the cuFFT status on failure.
  cufftHandle get(const CufftPlanKey& key, cudaStream_t stream, size_t* work_bytes = nullptr);
  int64_t created() const { return created_; }
  int64_t reused() const { return reused_; }

 private:
  std::mutex mutex_;
  bool caller_work_area_;
  std::map<CufftPlanKey, std::pair<cufftHandle, size_t>> plans_;
  int64_t created_ = 0, reused_ = 0;
};

// "CUFFT_INVALID_SIZE" etc.
std::string cufft_status_name(cufftResult r);

}  // namespace dash::ops::cuda
