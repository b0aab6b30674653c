// The CUDA kernels and cuFFT plans of src/ops/cuda against plain CPU loops.
// Built wherever nvcc is (CI compiles it); runs only where a GPU is: without
// one it prints why and exits 77, which ctest reports as skipped.

#include <cmath>
#include <complex>
#include <cstdio>
#include <random>
#include <vector>

#include "ops/cuda/spectral_kernels.h"

namespace {

using dash::ops::cuda::CufftPlanCache;
using dash::ops::cuda::CufftPlanKey;
using cf = std::complex<float>;

int failures = 0;

void expect_close(const std::vector<cf>& got, const std::vector<cf>& want, double tol, const char* what) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += std::norm(got[i] - want[i]);
    norm += std::norm(want[i]);
  }
  const double rel = std::sqrt(err / (norm > 0 ? norm : 1));
  std::printf("%-40s relative error %.2e %s\n", what, rel, rel <= tol ? "ok" : "FAILED");
  failures += rel > tol;
}

#define CUDA_OK(call)                                                                      \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      std::printf("%s failed: %s\n", #call, cudaGetErrorString(e_));                       \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

template <class T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  cudaMalloc(&d, h.size() * sizeof(T));
  cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}

template <class T>
std::vector<T> to_host(const T* d, size_t n) {
  std::vector<T> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return h;
}

std::vector<cf> random_complex(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> g;
  std::vector<cf> v(n);
  for (auto& z : v) z = cf(g(rng), g(rng));
  return v;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped (compiled only)\n");
    return 77;
  }
  std::mt19937 rng(3);
  const int64_t batch = 3, channels = 4, bins = 37;
  const auto X = random_complex(batch * channels * bins, rng);
  const auto H = random_complex(channels * bins, rng);
  const auto dY = random_complex(batch * channels * bins, rng);
  auto* dX = to_device(X);
  auto* dH = to_device(H);
  auto* ddY = to_device(dY);
  cf* dOut = nullptr;
  CUDA_OK(cudaMalloc(&dOut, X.size() * sizeof(cf)));
  auto f2 = [](cf* p) { return reinterpret_cast<float2*>(p); };

  for (bool conj_h : {true, false}) {
    CUDA_OK(dash::ops::cuda::depthwise_product(f2(dX), f2(dH), f2(dOut), batch, channels, bins,
                                               0.5f, conj_h, nullptr));
    std::vector<cf> want(X.size());
    for (size_t i = 0; i < X.size(); ++i) {
      const cf h = H[i % (channels * bins)];
      want[i] = 0.5f * X[i] * (conj_h ? std::conj(h) : h);
    }
    expect_close(to_host(dOut, X.size()), want, 1e-6,
                 conj_h ? "depthwise_product X conj(H)" : "depthwise_product X H");
  }
  CUDA_OK(dash::ops::cuda::depthwise_kernel_grad(f2(dX), f2(ddY), f2(dOut), batch, channels, bins,
                                                 2.0f, nullptr));
  std::vector<cf> want(channels * bins, cf(0, 0));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < channels * bins; ++i)
      want[i] += 2.0f * X[b * channels * bins + i] * std::conj(dY[b * channels * bins + i]);
  expect_close(to_host(dOut, want.size()), want, 1e-5, "depthwise_kernel_grad");

  // cuFFT through the plan cache: r2c of `howmany` arrays of length n against
  // a direct DFT, both layouts, and c2r back (unnormalised: n * x).
  CufftPlanCache cache;
  const int64_t n = 12, howmany = 3, nb = n / 2 + 1;
  std::normal_distribution<float> g;
  std::vector<float> x(howmany * n);
  for (auto& v : x) v = g(rng);
  float* dx = to_device(x);
  cf* dspec = nullptr;
  CUDA_OK(cudaMalloc(&dspec, howmany * nb * sizeof(cf)));
  for (int64_t stride : {int64_t{1}, howmany}) {
    cufftHandle plan = cache.get(CufftPlanKey{0, 1, n, 1, howmany, true, stride}, nullptr);
    if (cufftExecR2C(plan, dx, reinterpret_cast<cufftComplex*>(dspec)) != CUFFT_SUCCESS) {
      std::printf("cufftExecR2C failed\n");
      return 1;
    }
    std::vector<cf> dft(howmany * nb);
    for (int64_t t = 0; t < howmany; ++t)
      for (int64_t k = 0; k < nb; ++k) {
        cf s(0, 0);
        for (int64_t j = 0; j < n; ++j)
          s += x[t * n + j] * std::polar(1.0f, static_cast<float>(-2 * M_PI * k * j / n));
        dft[stride == 1 ? t * nb + k : k * howmany + t] = s;
      }
    expect_close(to_host(dspec, dft.size()), dft, 1e-5,
                 stride == 1 ? "cuFFT r2c, transform-major" : "cuFFT r2c, channels-last");
    cufftHandle inverse = cache.get(CufftPlanKey{0, 1, n, 1, howmany, false, stride}, nullptr);
    float* dback = nullptr;
    CUDA_OK(cudaMalloc(&dback, x.size() * sizeof(float)));
    if (cufftExecC2R(inverse, reinterpret_cast<cufftComplex*>(dspec), dback) != CUFFT_SUCCESS) {
      std::printf("cufftExecC2R failed\n");
      return 1;
    }
    const auto back = to_host(dback, x.size());
    std::vector<cf> got(x.size()), scaled(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      got[i] = cf(back[i], 0);
      scaled[i] = cf(n * x[i], 0);
    }
    expect_close(got, scaled, 1e-5, "cuFFT c2r(r2c(x)) = n x");
    cudaFree(dback);
  }
  cache.get(CufftPlanKey{0, 1, n, 1, howmany, true, 1}, nullptr);
  std::printf("plans created %lld, reused %lld\n", (long long)cache.created(), (long long)cache.reused());
  failures += cache.created() != 4 || cache.reused() != 1;
  cudaFree(dx);
  cudaFree(dspec);
  cudaFree(dX);
  cudaFree(dH);
  cudaFree(ddY);
  cudaFree(dOut);
  std::printf(failures ? "FAILED\n" : "all CUDA kernel checks passed\n");
  return failures ? 1 : 0;
}
