#pragma once
// DASH's Fourier mixture: one searchable layer's softmax-weighted sum of every
// candidate convolution (kernel size k, dilation d), computed as a single
// convolution with the mixed kernel through spectral_conv.

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <vector>

namespace dash::ops {

// The candidate operations of one searchable layer: every (k, d) in K x D,
// numbered k-major as DASH does: candidate j = (kernel_sizes[j / |D|],
// dilations[j % |D|]).
struct CandidateSpace {
  std::vector<int64_t> kernel_sizes;  // odd, >= 1
  std::vector<int64_t> dilations;     // >= 1

  int64_t size() const { return static_cast<int64_t>(kernel_sizes.size() * dilations.size()); }
  int64_t kernel_size(int64_t j) const;
  int64_t dilation(int64_t j) const;
  // Taps of the largest dilated candidate: max over (k, d) of d*(k-1)+1.
  int64_t receptive_field() const;
  // Throws std::invalid_argument naming the bad value.
  void validate() const;
};

// sum_j probs[j] * place(weights[j]) where place() dilates candidate j by d_j
// and centres it in a frame of frame[axis] taps per spatial axis (odd); taps
// that fall outside the frame are dropped. weights[j]: [out, in/groups, k_j
// (, k_j)]; probs: [|K||D|]. Returns [out, in/groups, frame...].
// Differentiable in weights and probs.
at::Tensor mix_kernels(const std::vector<at::Tensor>& weights, const at::Tensor& probs,
                       const CandidateSpace& space, at::IntArrayRef frame);

// y = sum_j probs[j] * conv(x, weights[j], dilation d_j, "same" padding,
// stride, groups) + bias, computed as one spectral convolution. The mixed kernel
// is built directly in the cropped frame (at most 2n-1 taps per axis), so no
// memory or time is spent on taps that cannot touch the input. field (0: the
// space's receptive field) frames the mix at fewer taps when the candidates
// wider than it have probability 0 (pruned by the search); candidates with
// probability 0 cost nothing in the mix.
at::Tensor fourier_mixture(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                           const at::Tensor& probs, const CandidateSpace& space,
                           const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                           int64_t groups, int64_t field = 0);

}  // namespace dash::ops
