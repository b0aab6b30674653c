#pragma once
// Device-generic pieces of the spectral backends, in plain ATen operations:
// spectrum allocation, zero padding, and the three per-frequency channel
// products of spectral_backend.h as complex elementwise products (depthwise)
// or batched complex matrix products (full; cuBLAS on CUDA tensors). The CUDA
// backend uses them where it has no kernel of its own; on the CPU they are
// an independent check of the CPU backend's hand-written products.

#include <ATen/ATen.h>

#include "ops/spectral_backend.h"

namespace dash::ops {

// An uninitialised spectrum of g's shape and layout.
at::Tensor spectrum_empty(const FftGeometry& g, const at::TensorOptions& opts);

// x [count, m0(, m1)] zero-padded to [count, fft0(, fft1)], contiguous.
at::Tensor zero_pad(const at::Tensor& x, const FftGeometry& g);

// The products of SpectralBackend, same arguments, layouts and results.
at::Tensor generic_product_forward(const at::Tensor& X, const at::Tensor& H,
                                   const ChannelGeometry& c, double scale);
at::Tensor generic_product_input_grad(const at::Tensor& dY, const at::Tensor& H,
                                      const ChannelGeometry& c, double scale);
at::Tensor generic_product_kernel_grad(const at::Tensor& X, const at::Tensor& dY,
                                       const ChannelGeometry& c, double scale);

}  // namespace dash::ops
