#pragma once
// The device-specific half of spectral_conv: transforms and per-frequency
// products over raw spectra. The autograd wrapper (spectral_conv.cpp) owns the
// mathematics of padding, cropping, striding and gradients and is shared by
// every backend; a backend only has to be fast at these five primitives.
//
// Spectra are real tensors whose last dimension (size 2) holds the real and
// imaginary part of each complex bin, the layout of fftwf_complex and
// cufftComplex. Bins of a transform of sizes (N0[, N1]) are ordered as
// r2c transforms produce them: N0 x (N1/2+1) in 2D, N0/2+1 in 1D.

#include <ATen/ATen.h>

#include <array>
#include <cstdint>

namespace dash::ops {

// How a batch of spectra of `batch` x `channels` signals is laid out in memory.
//  kTransformMajor: [batch][channels][bins][2]  (each transform contiguous)
//  kChannelsLast:   [batch][bins][channels][2]  (each bin's channels contiguous)
// Depthwise products are elementwise and use kTransformMajor. Full channel
// products are one small matrix product per bin and use kChannelsLast, whose
// per-bin matrices are plain strided views; FFTW writes it as fast as the
// contiguous layout (a bin-major [bins][transforms] layout was 3-6x slower in 1D).
enum class SpectrumLayout { kTransformMajor, kChannelsLast };

// A batch of batch x channels real signals of rank 1 or 2, transformed at
// sizes `fft`.
struct FftGeometry {
  int rank = 1;
  std::array<int64_t, 2> fft{1, 1};
  int64_t batch = 0;
  int64_t channels = 0;
  SpectrumLayout layout = SpectrumLayout::kTransformMajor;

  int64_t count() const { return batch * channels; }
  int64_t real_size() const { return rank == 1 ? fft[0] : fft[0] * fft[1]; }
  int64_t bins() const { return rank == 1 ? fft[0] / 2 + 1 : fft[0] * (fft[1] / 2 + 1); }
};

// Channel structure of one spectral convolution.
struct ChannelGeometry {
  int64_t batch = 0;
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  bool depthwise = false;  // groups == in_channels == out_channels
  int64_t bins = 0;
};

class SpectralBackend {
 public:
  virtual ~SpectralBackend() = default;

  // x: [count, m0(, m1)] real, contiguous, m <= fft per axis. Returns the
  // spectrum of x zero-padded to the fft sizes, in g.layout, as
  // [batch, channels, bins, 2] or [batch, bins, channels, 2].
  virtual at::Tensor rfft(const at::Tensor& x, const FftGeometry& g) = 0;

  // Inverse of rfft without normalisation, keeping the leading keep[axis]
  // samples of every axis: returns [count, keep0(, keep1)] real.
  // The spectrum is used as scratch and its contents are undefined afterwards.
  virtual at::Tensor irfft_consume(at::Tensor& spectrum, const FftGeometry& g,
                                   std::array<int64_t, 2> keep) = 0;

  // Y[b,o] = scale * sum_c X[b,c] * conj(H[o,c])      (forward, a correlation)
  // X: spectra of the input [batch*in], H: of the kernel [out*in] (or [in] when
  // depthwise), Y: [batch*out]. Layouts: kTransformMajor when depthwise, else
  // kChannelsLast (H as [out][bins][in]).
  virtual at::Tensor product_forward(const at::Tensor& X, const at::Tensor& H,
                                     const ChannelGeometry& c, double scale) = 0;

  // dX[b,c] = scale * sum_o dY[b,o] * H[o,c]. dY is released (or reused for
  // the result, in place) and must not be used afterwards.
  virtual at::Tensor product_input_grad_consume(at::Tensor& dY, const at::Tensor& H,
                                                const ChannelGeometry& c, double scale) = 0;

  // dH[o,c] = scale * sum_b X[b,c] * conj(dY[b,o])
  virtual at::Tensor product_kernel_grad(const at::Tensor& X, const at::Tensor& dY,
                                         const ChannelGeometry& c, double scale) = 0;
};

// The backend for tensors on `device`. Throws a clear error for a device this
// build has no backend for.
SpectralBackend& spectral_backend_for(const at::Device& device);

SpectralBackend& cpu_spectral_backend();

// Only in builds with -DDASH_WITH_CUDA=ON (src/ops/cuda/spectral_cuda.cpp).
SpectralBackend& cuda_spectral_backend();

}  // namespace dash::ops
