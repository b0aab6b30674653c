#include "ops/fourier_mixture.h"

#include <torch/torch.h>

#include <stdexcept>
#include <string>

#include "ops/spectral_conv.h"

namespace dash::ops {

int64_t CandidateSpace::kernel_size(int64_t j) const {
  return kernel_sizes.at(static_cast<size_t>(j / static_cast<int64_t>(dilations.size())));
}

int64_t CandidateSpace::dilation(int64_t j) const {
  return dilations.at(static_cast<size_t>(j % static_cast<int64_t>(dilations.size())));
}

int64_t CandidateSpace::receptive_field() const {
  int64_t r = 1;
  for (int64_t k : kernel_sizes)
    for (int64_t d : dilations) r = std::max(r, d * (k - 1) + 1);
  return r;
}

void CandidateSpace::validate() const {
  if (kernel_sizes.empty() || dilations.empty()) {
    throw std::invalid_argument("candidate space needs at least one kernel size and one dilation");
  }
  for (int64_t k : kernel_sizes) {
    if (k < 1 || k % 2 == 0) {
      throw std::invalid_argument("kernel size " + std::to_string(k) +
                                  " is not supported: kernel sizes must be odd and >= 1 so that "
                                  "'same' padding is symmetric");
    }
  }
  for (int64_t d : dilations) {
    if (d < 1) throw std::invalid_argument("dilation " + std::to_string(d) + " must be >= 1");
  }
}

at::Tensor mix_kernels(const std::vector<at::Tensor>& weights, const at::Tensor& probs,
                       const CandidateSpace& space, at::IntArrayRef frame) {
  space.validate();
  TORCH_CHECK(static_cast<int64_t>(weights.size()) == space.size(), "mix_kernels: ",
              weights.size(), " candidate weights for a space of ", space.size(), " candidates");
  TORCH_CHECK(probs.dim() == 1 && probs.size(0) == space.size(), "mix_kernels: probabilities ",
              probs.sizes(), " do not match ", space.size(), " candidates");
  const at::Tensor& w0 = weights.front();
  const int rank = static_cast<int>(w0.dim()) - 2;
  TORCH_CHECK(rank == 1 || rank == 2, "mix_kernels: weights must be 3D or 4D, got ", w0.dim(), "D");
  TORCH_CHECK(static_cast<int>(frame.size()) == rank, "mix_kernels: frame needs ", rank, " sizes");

  std::vector<int64_t> shape{w0.size(0), w0.size(1)};
  for (int64_t f : frame) {
    TORCH_CHECK(f >= 1 && f % 2 == 1, "mix_kernels: frame sizes must be odd, got ", f);
    shape.push_back(f);
  }
  at::Tensor mixed = at::zeros(shape, w0.options());
  for (int64_t j = 0; j < space.size(); ++j) {
    const int64_t k = space.kernel_size(j), d = space.dilation(j);
    const at::Tensor& w = weights[static_cast<size_t>(j)];
    TORCH_CHECK(w.dim() == w0.dim() && w.size(0) == shape[0] && w.size(1) == shape[1],
                "mix_kernels: candidate ", j, " has shape ", w.sizes(), ", expected [", shape[0],
                ", ", shape[1], ", ", k, "...]");
    at::Tensor taps = w;
    at::Tensor target = mixed;
    for (int axis = 0; axis < rank; ++axis) {
      TORCH_CHECK(w.size(2 + axis) == k, "mix_kernels: candidate ", j, " (k=", k, ", d=", d,
                  ") has ", w.size(2 + axis), " taps on axis ", axis);
      const int64_t half_frame = (frame[axis] - 1) / 2, half_k = (k - 1) / 2;
      // Taps t with |d (t - half_k)| <= half_frame stay inside the frame.
      const int64_t reach = std::min(half_k, half_frame / d);
      taps = taps.narrow(2 + axis, half_k - reach, 2 * reach + 1);
      const int64_t start = half_frame - d * reach;
      target = target.slice(2 + axis, start, start + 2 * d * reach + 1, d);
    }
    target.add_(taps * probs[j]);
  }
  return mixed;
}

at::Tensor fourier_mixture(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                           const at::Tensor& probs, const CandidateSpace& space,
                           const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                           int64_t groups) {
  space.validate();
  TORCH_CHECK(x.dim() == 3 || x.dim() == 4, "fourier_mixture: input must be 3D or 4D, got ",
              x.dim(), "D");
  const int64_t field = space.receptive_field();
  std::vector<int64_t> frame;
  for (int64_t axis = 2; axis < x.dim(); ++axis) {
    frame.push_back(std::min(field, 2 * x.size(axis) - 1));
  }
  return spectral_conv(x, mix_kernels(weights, probs, space, frame), bias, stride, groups);
}

}  // namespace dash::ops
