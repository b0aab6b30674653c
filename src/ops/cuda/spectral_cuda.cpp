// CUDA backend of spectral_conv: cuFFT transforms (plans cached per shape and
// device, work areas from LibTorch's caching allocator), depthwise products
// by our kernels (spectral_kernels.cu), full channel products as batched
// complex matrix products (cuBLAS through ATen).
//
// It uses only device-generic ATen calls plus raw CUDA and cuFFT, so it
// compiles against any LibTorch, CPU-only included: CI compiles it without a
// GPU. Work runs on the legacy default stream, the one LibTorch uses unless
// the caller makes another stream current.

#include <cuda_runtime.h>
#include <cufft.h>

#include <mutex>
#include <stdexcept>
#include <string>

#include "ops/cuda/spectral_kernels.h"
#include "ops/spectral_backend.h"
#include "ops/spectral_tensors.h"

namespace dash::ops {
namespace {

constexpr cudaStream_t kStream = nullptr;

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(std::string("spectral_conv (CUDA): ") + what + ": " +
                             cudaGetErrorString(e));
  }
}

void check_cufft(cufftResult r, const char* what) {
  if (r != CUFFT_SUCCESS) {
    throw std::runtime_error(std::string("spectral_conv (CUDA): ") + what + ": " +
                             cuda::cufft_status_name(r));
  }
}

// Makes the tensor's GPU current for the scope (cuFFT plans and kernels act
// on the current device).
class DeviceScope {
 public:
  explicit DeviceScope(const at::Tensor& t) {
    check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
    if (t.get_device() != previous_) check_cuda(cudaSetDevice(t.get_device()), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

void require_float(const at::Tensor& t) {
  if (t.scalar_type() != at::kFloat) {
    throw std::invalid_argument(std::string("spectral_conv on CUDA computes in float32, got ") +
                                c10::toString(t.scalar_type()));
  }
}

const float2* c2(const at::Tensor& t) { return static_cast<const float2*>(t.data_ptr()); }
float2* c2m(at::Tensor& t) { return static_cast<float2*>(t.data_ptr()); }

class CudaSpectralBackend final : public SpectralBackend {
 public:
  at::Tensor rfft(const at::Tensor& x, const FftGeometry& g) override {
    require_float(x);
    DeviceScope scope(x);
    const at::Tensor padded = zero_pad(x, g);
    at::Tensor out = spectrum_empty(g, x.options());
    execute(g, true, padded, out);
    return out;
  }

  at::Tensor irfft_consume(at::Tensor& spectrum, const FftGeometry& g,
                           std::array<int64_t, 2> keep) override {
    require_float(spectrum);
    DeviceScope scope(spectrum);
    std::vector<int64_t> shape{g.count(), g.fft[0]};
    if (g.rank == 2) shape.push_back(g.fft[1]);
    at::Tensor full = at::empty(shape, spectrum.options());
    execute(g, false, spectrum, full);  // cuFFT's c2r overwrites its input
    spectrum.reset();
    at::Tensor kept = full.narrow(1, 0, keep[0]);
    if (g.rank == 2) kept = kept.narrow(2, 0, keep[1]);
    return kept.is_contiguous() ? kept : kept.contiguous();
  }

  at::Tensor product_forward(const at::Tensor& X, const at::Tensor& H, const ChannelGeometry& c,
                             double scale) override {
    if (!c.depthwise) return generic_product_forward(X, H, c, scale);
    require_float(X);
    DeviceScope scope(X);
    at::Tensor Y = at::empty_like(X);
    check_cuda(cuda::depthwise_product(c2(X), c2(H), c2m(Y), c.batch, c.in_channels, c.bins,
                                       static_cast<float>(scale), true, kStream),
               "depthwise product");
    return Y;
  }

  at::Tensor product_input_grad_consume(at::Tensor& dY, const at::Tensor& H,
                                        const ChannelGeometry& c, double scale) override {
    if (!c.depthwise) {
      at::Tensor dX = generic_product_input_grad(dY, H, c, scale);
      dY.reset();
      return dX;
    }
    require_float(dY);
    DeviceScope scope(dY);
    at::Tensor dX = std::move(dY);  // elementwise, so in place
    check_cuda(cuda::depthwise_product(c2(dX), c2(H), c2m(dX), c.batch, c.in_channels, c.bins,
                                       static_cast<float>(scale), false, kStream),
               "depthwise input gradient");
    dY.reset();
    return dX;
  }

  at::Tensor product_kernel_grad(const at::Tensor& X, const at::Tensor& dY,
                                 const ChannelGeometry& c, double scale) override {
    if (!c.depthwise) return generic_product_kernel_grad(X, dY, c, scale);
    require_float(X);
    DeviceScope scope(X);
    at::Tensor dH = at::empty({c.in_channels, c.bins, 2}, X.options());
    check_cuda(cuda::depthwise_kernel_grad(c2(X), c2(dY), c2m(dH), c.batch, c.in_channels, c.bins,
                                           static_cast<float>(scale), kStream),
               "depthwise kernel gradient");
    return dH;
  }

 private:
  // One r2c (forward) or c2r transform of the whole batch: a single execution
  // for transform-major spectra, one per batch element for channels-last
  // ones (interleaved spectra with stride = channels).
  void execute(const FftGeometry& g, bool forward, const at::Tensor& in, at::Tensor& out) {
    const bool channels_last = g.layout == SpectrumLayout::kChannelsLast;
    cuda::CufftPlanKey key;
    key.device = in.get_device();
    key.rank = g.rank;
    key.n0 = g.fft[0];
    key.n1 = g.rank == 2 ? g.fft[1] : 1;
    key.howmany = channels_last ? g.channels : g.count();
    key.forward = forward;
    key.spectrum_stride = channels_last ? g.channels : 1;
    const int64_t executions = channels_last ? g.batch : 1;
    const int64_t real_step = key.howmany * g.real_size();
    const int64_t spectrum_step = key.howmany * g.bins();
    // Executions on one plan are serialised: its stream and work area are set
    // per call. They only enqueue work, so the lock is held briefly.
    std::lock_guard<std::mutex> lock(exec_mutex_);
    size_t work_bytes = 0;
    const cufftHandle plan = plans_.get(key, kStream, &work_bytes);
    // The caching allocator hands this back once the stream's work is done.
    at::Tensor work = at::empty({static_cast<int64_t>(work_bytes)}, in.options().dtype(at::kByte));
    check_cufft(cufftSetWorkArea(plan, work.data_ptr()), "cufftSetWorkArea");
    for (int64_t b = 0; b < executions; ++b) {
      if (forward) {
        auto* src = static_cast<cufftReal*>(in.data_ptr()) + b * real_step;
        auto* dst = static_cast<cufftComplex*>(out.data_ptr()) + b * spectrum_step;
        check_cufft(cufftExecR2C(plan, src, dst), "cufftExecR2C");
      } else {
        auto* src = static_cast<cufftComplex*>(in.data_ptr()) + b * spectrum_step;
        auto* dst = static_cast<cufftReal*>(out.data_ptr()) + b * real_step;
        check_cufft(cufftExecC2R(plan, src, dst), "cufftExecC2R");
      }
    }
  }

  std::mutex exec_mutex_;
  cuda::CufftPlanCache plans_{/*caller_work_area=*/true};
};

}  // namespace

SpectralBackend& cuda_spectral_backend() {
  static CudaSpectralBackend backend;
  return backend;
}

}  // namespace dash::ops
