#include "nn/searchable_conv.h"

#include <cmath>
#include <limits>

#include "ops/spectral_conv.h"
#include "util/errors.h"

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

int64_t cropped_taps(int64_t k, int64_t d, int64_t n) {
  return 2 * std::min((k - 1) / 2, (n - 1) / d) + 1;
}

std::vector<int64_t> same_function_as(const ops::CandidateSpace& space, const std::vector<int64_t>& spatial) {
  // What survives cropping: the taps per axis, and the dilation unless only
  // the centre tap is left (the centre alone is the same at any dilation).
  auto kept = [&](int64_t j) {
    std::vector<int64_t> key;
    bool centre_only = true;
    for (int64_t n : spatial) {
      key.push_back(cropped_taps(space.kernel_size(j), space.dilation(j), n));
      centre_only = centre_only && key.back() == 1;
    }
    key.push_back(centre_only ? 1 : space.dilation(j));
    return key;
  };
  std::vector<int64_t> first(static_cast<size_t>(space.size()));
  for (int64_t j = 0; j < space.size(); ++j) {
    first[static_cast<size_t>(j)] = j;
    const auto key = kept(j);
    for (int64_t i = 0; i < j; ++i) {
      if (kept(i) == key) {
        first[static_cast<size_t>(j)] = i;
        break;
      }
    }
  }
  return first;
}

double conv_macs(const ConvShape& shape, const std::vector<int64_t>& spatial, int64_t k, int64_t d,
                 int64_t groups) {
  double macs = static_cast<double>(shape.out) * static_cast<double>(shape.in / groups);
  for (int64_t n : spatial) {
    macs *= static_cast<double>((n + shape.stride - 1) / shape.stride) *
            static_cast<double>(cropped_taps(k, d, n));
  }
  return macs;
}

CroppedKernel crop_kernel(const at::Tensor& weight, int64_t dilation, const std::vector<int64_t>& spatial) {
  const int64_t full_half = (weight.size(2) - 1) / 2;
  CroppedKernel c{weight, {}, 1};
  for (size_t a = 0; a < spatial.size(); ++a) {
    const int64_t axis = 2 + static_cast<int64_t>(a);
    const int64_t half = (cropped_taps(weight.size(axis), dilation, spatial[a]) - 1) / 2;
    if (half < full_half) c.weight = c.weight.narrow(axis, full_half - half, 2 * half + 1);
    c.pad.push_back(dilation * half);
    c.taps = std::max(c.taps, 2 * half + 1);
  }
  return c;
}

at::Tensor fixed_conv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias_t,
                      int64_t dilation, int64_t stride, int64_t groups) {
  const int dims = static_cast<int>(x.dim()) - 2;
  // Per axis, keep only the taps that can touch the input (exact).
  const CroppedKernel c = crop_kernel(weight, dilation, {x.sizes().begin() + 2, x.sizes().end()});
  const c10::optional<at::Tensor> bias =
      bias_t.defined() ? c10::optional<at::Tensor>(bias_t) : c10::nullopt;
  if (use_spectral(dims, c.taps, dilation)) {
    return ops::spectral_conv(x, dilate_kernel(c.weight, dilation), bias, {stride}, groups);
  }
  if (dims == 1) return at::conv1d(x, c.weight, bias_t, {stride}, c.pad, {dilation}, groups);
  return at::conv2d(x, c.weight, bias_t, {stride, stride}, c.pad, {dilation, dilation}, groups);
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
  active_ = register_buffer("active", torch::ones({space_.size()}, torch::kBool));
  frozen_ = register_buffer("frozen", torch::full({}, -1, torch::kLong));
  if (shape.bias) {
    bias_ = register_parameter("bias", conv_bias(shape.out, in_per_group * 9));
  }
}

SearchableConvImpl::SearchableConvImpl(const ConvShape& shape, const LayerChoice& choice)
    : shape_(shape), mixture_(false), fixed_(choice) {
  check_shape(shape);
  TORCH_CHECK(!shape.causal || shape.dims == 1, "SearchableConv: only 1D layers can be causal");
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

double SearchableConvImpl::macs() const {
  const LayerChoice c = choice();
  return conv_macs(shape_, last_spatial_, c.kernel_size, c.dilation, mixture_ ? groups_ : 1);
}

at::Tensor SearchableConvImpl::masked_logits() const {
  return alpha_.masked_fill(active_.logical_not(), -std::numeric_limits<double>::infinity());
}

at::Tensor SearchableConvImpl::probabilities() const {
  TORCH_CHECK(mixture_, "SearchableConv: a FIXED layer has no mixture probabilities");
  if (frozen()) {
    return torch::zeros_like(alpha_).index_fill_(0, frozen_.reshape({1}), 1.0).detach();
  }
  return torch::softmax(masked_logits(), 0);
}

int64_t SearchableConvImpl::choice_index() const {
  TORCH_CHECK(mixture_, "SearchableConv: a FIXED layer has no candidates");
  if (frozen()) return frozen_.item<int64_t>();
  return masked_logits().argmax().item<int64_t>();
}

LayerChoice SearchableConvImpl::choice() const {
  if (!mixture_) return fixed_;
  const int64_t j = choice_index();
  return LayerChoice{space_.kernel_size(j), space_.dilation(j)};
}

void SearchableConvImpl::freeze(int64_t j) {
  TORCH_CHECK(mixture_, "SearchableConv: only a MIXTURE layer can be frozen");
  TORCH_CHECK(j >= 0 && j < space_.size() && active(j), "SearchableConv: cannot freeze candidate ",
              j, " (inactive or out of range)");
  frozen_.fill_(j);
  alpha_.set_requires_grad(false);
}

bool SearchableConvImpl::frozen() const { return mixture_ && frozen_.item<int64_t>() >= 0; }

void SearchableConvImpl::prune(int64_t j) {
  TORCH_CHECK(mixture_ && !frozen(), "SearchableConv: only an unfrozen MIXTURE layer can be pruned");
  TORCH_CHECK(j >= 0 && j < space_.size(), "SearchableConv: candidate ", j, " out of range");
  TORCH_CHECK(active_count() > 1 || !active(j), "SearchableConv: cannot prune the last candidate");
  active_[j] = false;
}

bool SearchableConvImpl::active(int64_t j) const { return active_[j].item<bool>(); }

int64_t SearchableConvImpl::active_count() const { return active_.sum().item<int64_t>(); }

int64_t SearchableConvImpl::active_field() const {
  int64_t field = 1;
  for (int64_t j = 0; j < space_.size(); ++j) {
    if (active(j)) field = std::max(field, space_.dilation(j) * (space_.kernel_size(j) - 1) + 1);
  }
  return field;
}

SearchableConvImpl::Single SearchableConvImpl::single() const {
  if (!mixture_) {
    // Causal: the k taps become the past half of a centred 2k-1 tap kernel
    // whose future half is zero, so every path stays a "same" one.
    const at::Tensor w = shape_.causal ? at::constant_pad_nd(weight_, {0, fixed_.kernel_size - 1})
                                       : weight_;
    return {w, fixed_.dilation, 1};
  }
  if (!frozen()) return {};
  const int64_t j = frozen_.item<int64_t>();
  return {candidates_[static_cast<size_t>(j)], space_.dilation(j), groups_};
}

PlainConv SearchableConvImpl::plain(const std::vector<int64_t>& spatial) const {
  const Single s = single();
  if (!s.weight.defined()) {
    throw Unsupported("a searchable layer still mixes " + std::to_string(active_count()) +
                      " candidates; only a FIXED (retrained) or frozen layer is one convolution");
  }
  const CroppedKernel c = crop_kernel(s.weight, s.dilation, spatial);
  std::vector<int64_t> pads = c.pad;
  pads.insert(pads.end(), c.pad.begin(), c.pad.end());
  return {c.weight, bias_, s.dilation, shape_.stride, s.groups, pads};
}

at::Tensor SearchableConvImpl::forward(const at::Tensor& x) {
  last_spatial_.assign(x.sizes().begin() + 2, x.sizes().end());
  const Single s = single();
  if (s.weight.defined()) return fixed_conv(x, s.weight, bias_, s.dilation, shape_.stride, s.groups);
  // Training samples the mixture with Gumbel noise (DASH); evaluation uses
  // the noiseless probabilities so that scores are deterministic. Pruned
  // candidates get logit -inf, so probability 0 either way.
  const at::Tensor logits = masked_logits();
  at::Tensor probs =
      is_training()
          ? torch::nn::functional::gumbel_softmax(
                torch::log_softmax(logits, 0),
                torch::nn::functional::GumbelSoftmaxFuncOptions().tau(tau_).dim(0))
          : torch::softmax(logits, 0);
  return ops::fourier_mixture(x, candidates_, probs, space_,
                              bias_.defined() ? c10::optional<at::Tensor>(bias_) : c10::nullopt,
                              {shape_.stride}, groups_, active_field());
}

}  // namespace dash::nn
