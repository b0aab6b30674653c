#pragma once
// spectral_conv: a convolution computed through the FFT, with its own spectral
// backward. It is the engine under DASH's Fourier mixture, where the kernel is
// large (every candidate padded to the largest receptive field) and dense.

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <array>
#include <cstdint>

namespace dash::ops {

// y = conv(x, w) + bias with "same" zero padding, exactly what
// torch::conv{1,2}d(x, w, bias, stride, padding = (R-1)/2, dilation 1, groups)
// computes for a kernel w of odd sizes R per axis, for 1D and 2D inputs.
//
//   x:      [batch, in, n] or [batch, in, n0, n1], float32 or float64
//   w:      [out, in/groups, R] or [out, in/groups, R0, R1], every R odd
//   bias:   [out] or none
//   stride: one value, or one per spatial axis; every value >= 1
//   groups: 1, or in == out == groups (depthwise)
// Returns [batch, out, ceil(n/stride)...]. Differentiable in x, w and bias.
//
// Taps farther than n-1 from the centre never meet the input, so the kernel is
// cropped to at most 2n-1 taps per axis before transforming; transform sizes are
// the smallest fast sizes >= n + (taps-1)/2, enough for an exact linear result on
// the n outputs. Tensors on the CPU run on FFTW and oneDNN.
at::Tensor spectral_conv(const at::Tensor& x, const at::Tensor& w,
                         const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                         int64_t groups);

// The sizes spectral_conv uses for one spatial axis; exposed for tests and
// benchmarks.
struct SpectralAxis {
  int64_t n = 0;        // input length
  int64_t taps = 0;     // kernel taps after cropping, odd
  int64_t fft = 0;      // transform length
};
SpectralAxis spectral_axis(int64_t n, int64_t kernel_taps);

}  // namespace dash::ops
