#include "ops/cuda/spectral_kernels.h"

#include <stdexcept>

namespace dash::ops::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float2 cmul(float2 a, float2 b) {
  return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
__device__ __forceinline__ float2 cmul_conj(float2 a, float2 b) {  // a * conj(b)
  return make_float2(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y);
}

// One thread per (b, c, k); H is indexed by (c, k), shared across the batch.
__global__ void depthwise_product_kernel(const float2* __restrict__ X, const float2* __restrict__ H,
                                         float2* Y, int64_t total, int64_t per_sample,
                                         float scale, bool conj_h) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float2 x = X[i];
    const float2 h = H[i % per_sample];
    const float2 y = conj_h ? cmul_conj(x, h) : cmul(x, h);
    Y[i] = make_float2(scale * y.x, scale * y.y);
  }
}

// One thread per (c, k), looping over the batch: reads are coalesced along k.
__global__ void depthwise_kernel_grad_kernel(const float2* __restrict__ X,
                                             const float2* __restrict__ dY, float2* __restrict__ dH,
                                             int64_t batch, int64_t per_sample, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < per_sample;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float re = 0.f, im = 0.f;
    for (int64_t b = 0; b < batch; ++b) {
      const float2 p = cmul_conj(X[b * per_sample + i], dY[b * per_sample + i]);
      re += p.x;
      im += p.y;
    }
    dH[i] = make_float2(scale * re, scale * im);
  }
}

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 ? (b < 1 ? 1 : b) : 65535);  // grid-stride loops cover the rest
}

void check(cufftResult r, const char* what) {
  if (r != CUFFT_SUCCESS) throw std::runtime_error(std::string(what) + " failed: " + cufft_status_name(r));
}

}  // namespace

cudaError_t depthwise_product(const float2* X, const float2* H, float2* Y, int64_t batch,
                              int64_t channels, int64_t bins, float scale, bool conj_h,
                              cudaStream_t stream) {
  const int64_t per_sample = channels * bins, total = batch * per_sample;
  if (total == 0) return cudaSuccess;
  depthwise_product_kernel<<<blocks_for(total), kThreads, 0, stream>>>(X, H, Y, total, per_sample,
                                                                      scale, conj_h);
  return cudaGetLastError();
}

cudaError_t depthwise_kernel_grad(const float2* X, const float2* dY, float2* dH, int64_t batch,
                                  int64_t channels, int64_t bins, float scale, cudaStream_t stream) {
  const int64_t per_sample = channels * bins;
  if (per_sample == 0) return cudaSuccess;
  depthwise_kernel_grad_kernel<<<blocks_for(per_sample), kThreads, 0, stream>>>(X, dY, dH, batch,
                                                                               per_sample, scale);
  return cudaGetLastError();
}

std::string cufft_status_name(cufftResult r) {
  switch (r) {
    case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_TYPE: return "CUFFT_INVALID_TYPE";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    default: return "cufftResult " + std::to_string(static_cast<int>(r));
  }
}

CufftPlanCache::~CufftPlanCache() {
  for (auto& entry : plans_) cufftDestroy(entry.second.first);
}

cufftHandle CufftPlanCache::get(const CufftPlanKey& k, cudaStream_t stream, size_t* work_bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = plans_.find(k);
  if (it == plans_.end()) {
    long long n[2] = {k.n0, k.n1};
    const long long bins = k.rank == 1 ? k.n0 / 2 + 1 : k.n0 * (k.n1 / 2 + 1);
    const long long real = k.rank == 1 ? k.n0 : k.n0 * k.n1;
    long long real_embed[2] = {k.n0, k.n1};
    long long spec_embed[2] = {k.rank == 1 ? k.n0 / 2 + 1 : k.n0, k.n1 / 2 + 1};
    const long long spec_dist = k.spectrum_stride == 1 ? bins : 1;
    cufftHandle plan;
    check(cufftCreate(&plan), "cufftCreate");
    if (caller_work_area_) check(cufftSetAutoAllocation(plan, 0), "cufftSetAutoAllocation");
    size_t work = 0;
    const cufftResult r =
        k.forward ? cufftMakePlanMany64(plan, k.rank, n, real_embed, 1, real, spec_embed,
                                        k.spectrum_stride, spec_dist, CUFFT_R2C, k.howmany, &work)
                  : cufftMakePlanMany64(plan, k.rank, n, spec_embed, k.spectrum_stride, spec_dist,
                                        real_embed, 1, real, CUFFT_C2R, k.howmany, &work);
    if (r != CUFFT_SUCCESS) {
      cufftDestroy(plan);
      check(r, "cufftMakePlanMany64");
    }
    it = plans_.emplace(k, std::make_pair(plan, work)).first;
    ++created_;
  } else {
    ++reused_;
  }
  check(cufftSetStream(it->second.first, stream), "cufftSetStream");
  if (work_bytes != nullptr) *work_bytes = it->second.second;
  return it->second.first;
}

}  // namespace dash::ops::cuda
