#pragma once
// Independent implementations of what src/ops computes, for tests and
// benchmarks: none of them shares code with the operator under test.

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <vector>

#include "ops/fourier_mixture.h"

namespace dash::reference {

// LibTorch's own convolution with "same" padding d*(k-1)/2.
at::Tensor direct_conv(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                       int64_t stride, int64_t dilation, int64_t groups);

// The naive mixture: every candidate as its own direct convolution, summed.
at::Tensor naive_mixture(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                         const at::Tensor& probs, const ops::CandidateSpace& space,
                         int64_t stride, int64_t groups);

// Kernel mixing into the full receptive field, then one direct convolution.
at::Tensor kmix_mixture(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                        const at::Tensor& probs, const ops::CandidateSpace& space, int64_t stride,
                        int64_t groups);

// The same spectral algorithm as dashnas (cropped kernel, fast sizes, circular
// kernel, correlation as X * conj(H)) written with torch::fft and autograd.
at::Tensor torchfft_mixture(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                            const at::Tensor& probs, const ops::CandidateSpace& space,
                            int64_t stride, int64_t groups);

// Random candidate weights, N(0, 1) scaled by 1/sqrt(fan-in), one per (k, d).
std::vector<at::Tensor> random_candidates(const ops::CandidateSpace& space, int64_t out,
                                          int64_t in_per_group, int rank,
                                          const at::TensorOptions& opts);

}  // namespace dash::reference
