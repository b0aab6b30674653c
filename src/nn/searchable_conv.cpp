#include "nn/searchable_conv.h"

#include <cmath>

#include "ops/spectral_conv.h"

namespace dash::nn {
namespace {

// LibTorch's default convolution initialisation (kaiming uniform, a = sqrt(5)),
// so that FIXED layers train like torch::nn::Conv and every candidate starts
// at the same scale.
at::Tensor conv_weight(std::vector<int64_t> shape) {
  at::Tensor w = torch::empty(shape);
  torch::nn::init::kaiming_uniform_(w, std::sqrt(5.0));
  return w;
}

at::Tensor conv_bias(int64_t out, int64_t fan_in) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return torch::empty({out}).uniform_(-bound, bound);
}

std::vector<int64_t> kernel_shape(const ConvShape& s, int64_t in_per_group, int64_t k) {
  std::vector<int64_t> shape{s.out, in_per_group};
  for (int a = 0; a < s.dims; ++a) shape.push_back(k);
  return shape;
}

void check_shape(const ConvShape& s) {
  TORCH_CHECK(s.dims == 1 || s.dims == 2, "SearchableConv: dims must be 1 or 2, got ", s.dims);
  TORCH_CHECK(s.in >= 1 && s.out >= 1, "SearchableConv: channel counts must be >= 1");
  TORCH_CHECK(s.stride >= 1, "SearchableConv: stride must be >= 1, got ", s.stride);
}

}  // namespace

bool use_spectral(int dims, int64_t cropped_taps, int64_t dilation) {
  return cropped_taps >= 7 && (dims == 2 || dilation == 1);
}

at::Tensor dilate_kernel(const at::Tensor& w, int64_t d) {
  TORCH_CHECK(d >= 1, "dilate_kernel: dilation must be >= 1, got ", d);
  if (d == 1) return w;
  at::Tensor out = w;
  for (int64_t axis = 2; axis < w.dim(); ++axis) {
    const int64_t k = out.size(axis);
    std::vector<int64_t> gap = out.sizes().vec();
    gap.insert(gap.begin() + axis + 1, d - 1);
    // [.., k, ..] -> [.., k, d, ..] (tap then d-1 zeros) -> [.., k*d, ..] -> first d(k-1)+1
    at::Tensor spread = at::cat({out.unsqueeze(axis + 1), at::zeros(gap, out.options())}, axis + 1);
    std::vector<int64_t> merged = out.sizes().vec();
    merged[axis] = k * d;
    out = spread.reshape(merged).narrow(axis, 0, d * (k - 1) + 1);
  }
  return out;
}

SearchableConvImpl::SearchableConvImpl(const ConvShape& shape, const ops::CandidateSpace& space,
                                       bool separable)
    : shape_(shape), mixture_(true), space_(space) {
  check_shape(shape);
  space_.validate();
  groups_ = (separable && shape.in == shape.out) ? shape.in : 1;
  const int64_t in_per_group = shape.in / groups_;
  for (int64_t j = 0; j < space_.size(); ++j) {
    const int64_t k = space_.kernel_size(j);
    candidates_.push_back(register_parameter(
        "candidate_" + std::to_string(j), conv_weight(kernel_shape(shape, in_per_group, k))));
  }
  // DASH: alpha ~ 1e-3 N(0, 1), close to uniform but not tied.
  alpha_ = register_parameter("alpha", torch::randn({space_.size()}) * 1e-3);
  if (shape.bias) {
    bias_ = register_parameter("bias", conv_bias(shape.out, in_per_group * 9));
  }
}

SearchableConvImpl::SearchableConvImpl(const ConvShape& shape, const LayerChoice& choice)
    : shape_(shape), mixture_(false), fixed_(choice) {
  check_shape(shape);
  TORCH_CHECK(choice.kernel_size >= 1 && choice.kernel_size % 2 == 1 && choice.dilation >= 1,
              "SearchableConv: kernel size must be odd and dilation >= 1, got k=",
              choice.kernel_size, " d=", choice.dilation);
  weight_ = register_parameter("weight", conv_weight(kernel_shape(shape, shape.in, choice.kernel_size)));
  if (shape.bias) {
    bias_ = register_parameter(
        "bias", conv_bias(shape.out, shape.in * static_cast<int64_t>(std::pow(choice.kernel_size,
                                                                              shape.dims))));
  }
}

at::Tensor SearchableConvImpl::probabilities() const {
  TORCH_CHECK(mixture_, "SearchableConv: a FIXED layer has no mixture probabilities");
  return torch::softmax(alpha_, 0);
}

LayerChoice SearchableConvImpl::choice() const {
  if (!mixture_) return fixed_;
  const int64_t j = alpha_.argmax().item<int64_t>();
  return LayerChoice{space_.kernel_size(j), space_.dilation(j)};
}

at::Tensor SearchableConvImpl::forward(const at::Tensor& x) {
  if (mixture_) {
    // Training samples the mixture with Gumbel noise (DASH); evaluation uses
    // the noiseless probabilities so that scores are deterministic.
    at::Tensor probs =
        is_training()
            ? torch::nn::functional::gumbel_softmax(
                  torch::log_softmax(alpha_, 0),
                  torch::nn::functional::GumbelSoftmaxFuncOptions().tau(tau_).dim(0))
            : torch::softmax(alpha_, 0);
    return ops::fourier_mixture(x, candidates_, probs, space_,
                                bias_.defined() ? c10::optional<at::Tensor>(bias_) : c10::nullopt,
                                {shape_.stride}, groups_);
  }
  // Per axis, keep only the taps that can touch the input (exact).
  const int64_t full_half = (fixed_.kernel_size - 1) / 2;
  at::Tensor w = weight_;
  std::vector<int64_t> pad;
  int64_t taps = 1;
  for (int a = 0; a < shape_.dims; ++a) {
    const int64_t half = std::min(full_half, (x.size(2 + a) - 1) / fixed_.dilation);
    if (half < full_half) w = w.narrow(2 + a, full_half - half, 2 * half + 1);
    pad.push_back(fixed_.dilation * half);
    taps = std::max(taps, 2 * half + 1);
  }
  const c10::optional<at::Tensor> bias =
      bias_.defined() ? c10::optional<at::Tensor>(bias_) : c10::nullopt;
  if (use_spectral(shape_.dims, taps, fixed_.dilation)) {
    return ops::spectral_conv(x, dilate_kernel(w, fixed_.dilation), bias, {shape_.stride}, 1);
  }
  if (shape_.dims == 1) {
    return at::conv1d(x, w, bias_, {shape_.stride}, pad, {fixed_.dilation});
  }
  return at::conv2d(x, w, bias_, {shape_.stride, shape_.stride}, pad,
                    {fixed_.dilation, fixed_.dilation});
}

}  // namespace dash::nn
