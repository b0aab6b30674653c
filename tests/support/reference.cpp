#include "reference.h"

#include <torch/torch.h>

#include <cmath>

#include "ops/fast_size.h"

namespace dash::reference {

at::Tensor direct_conv(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias,
                       int64_t stride, int64_t dilation, int64_t groups) {
  const at::Tensor b = bias.has_value() ? *bias : at::Tensor();
  if (x.dim() == 3) {
    const int64_t pad = dilation * (w.size(2) - 1) / 2;
    return at::conv1d(x, w, b, {stride}, {pad}, {dilation}, groups);
  }
  const int64_t p0 = dilation * (w.size(2) - 1) / 2, p1 = dilation * (w.size(3) - 1) / 2;
  return at::conv2d(x, w, b, {stride, stride}, {p0, p1}, {dilation, dilation}, groups);
}

at::Tensor naive_mixture(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                         const at::Tensor& probs, const ops::CandidateSpace& space,
                         int64_t stride, int64_t groups) {
  at::Tensor y;
  for (int64_t j = 0; j < space.size(); ++j) {
    at::Tensor yj = direct_conv(x, weights[j], c10::nullopt, stride, space.dilation(j), groups) *
                    probs[j];
    y = y.defined() ? y + yj : yj;
  }
  return y;
}

at::Tensor kmix_mixture(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                        const at::Tensor& probs, const ops::CandidateSpace& space, int64_t stride,
                        int64_t groups) {
  const int64_t field = space.receptive_field();
  std::vector<int64_t> frame(static_cast<size_t>(x.dim() - 2), field);
  at::Tensor w = ops::mix_kernels(weights, probs, space, frame);
  return direct_conv(x, w, c10::nullopt, stride, 1, groups);
}

at::Tensor torchfft_mixture(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                            const at::Tensor& probs, const ops::CandidateSpace& space,
                            int64_t stride, int64_t groups) {
  const int rank = static_cast<int>(x.dim()) - 2;
  std::vector<int64_t> frame, fft, dims, shifts;
  for (int axis = 0; axis < rank; ++axis) {
    const int64_t n = x.size(2 + axis);
    const int64_t taps = std::min(space.receptive_field(), 2 * n - 1);
    frame.push_back(taps);
    fft.push_back(ops::fast_fft_size(n + (taps - 1) / 2));
    dims.push_back(-rank + axis);
    shifts.push_back(-(taps - 1) / 2);
  }
  at::Tensor w = ops::mix_kernels(weights, probs, space, frame);
  std::vector<int64_t> pad;
  for (int axis = rank - 1; axis >= 0; --axis) {
    pad.push_back(0);
    pad.push_back(fft[axis] - frame[axis]);
  }
  at::Tensor h = at::roll(at::constant_pad_nd(w, pad, 0), shifts, dims);
  at::Tensor H = torch::fft::rfftn(h, fft, dims);
  at::Tensor X = torch::fft::rfftn(x, fft, dims);
  at::Tensor Y;
  if (groups == 1) {
    Y = rank == 1 ? at::einsum("bif,oif->bof", {X, H.conj()})
                  : at::einsum("bixy,oixy->boxy", {X, H.conj()});
  } else {
    Y = X * H.conj().squeeze(1).unsqueeze(0);
  }
  at::Tensor y = torch::fft::irfftn(Y, fft, dims);
  for (int axis = 0; axis < rank; ++axis) {
    y = y.narrow(2 + axis, 0, x.size(2 + axis));
    if (stride > 1) y = y.slice(2 + axis, 0, c10::nullopt, stride);
  }
  return y;
}

std::vector<at::Tensor> random_candidates(const ops::CandidateSpace& space, int64_t out,
                                          int64_t in_per_group, int rank,
                                          const at::TensorOptions& opts) {
  std::vector<at::Tensor> weights;
  for (int64_t j = 0; j < space.size(); ++j) {
    const int64_t k = space.kernel_size(j);
    std::vector<int64_t> shape{out, in_per_group};
    for (int axis = 0; axis < rank; ++axis) shape.push_back(k);
    const double fan_in = static_cast<double>(in_per_group) * std::pow(k, rank);
    weights.push_back((torch::randn(shape, opts) / std::sqrt(fan_in)).requires_grad_(true));
  }
  return weights;
}

}  // namespace dash::reference
