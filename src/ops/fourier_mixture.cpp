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

namespace {

// Where candidate j lands in the frame, per spatial axis: which of its taps are
// kept (those with |d (t - (k-1)/2)| within the frame) and where they go.
struct Placement {
  int64_t first_tap, taps;           // kept taps [first_tap, first_tap + taps)
  int64_t frame_start, frame_step;   // their frame positions start + step * i
};

std::vector<Placement> placements(const CandidateSpace& space, int64_t j, at::IntArrayRef frame) {
  std::vector<Placement> out;
  const int64_t k = space.kernel_size(j), d = space.dilation(j);
  for (int64_t f : frame) {
    const int64_t half_frame = (f - 1) / 2, half_k = (k - 1) / 2;
    const int64_t reach = std::min(half_k, half_frame / d);
    out.push_back({half_k - reach, 2 * reach + 1, half_frame - d * reach, d});
  }
  return out;
}

at::Tensor kept_taps(const at::Tensor& w, const std::vector<Placement>& place) {
  at::Tensor t = w;
  for (size_t axis = 0; axis < place.size(); ++axis) {
    t = t.narrow(2 + static_cast<int64_t>(axis), place[axis].first_tap, place[axis].taps);
  }
  return t;
}

at::Tensor frame_view(const at::Tensor& mixed, const std::vector<Placement>& place) {
  at::Tensor v = mixed;
  for (size_t axis = 0; axis < place.size(); ++axis) {
    const Placement& p = place[axis];
    v = v.slice(2 + static_cast<int64_t>(axis), p.frame_start,
                p.frame_start + p.frame_step * (p.taps - 1) + 1, p.frame_step);
  }
  return v;
}

// Mixing as one autograd node: LibTorch's in-place-on-view autograd would copy
// the whole frame's gradient once per candidate (measured 23 ms of a 61 ms step
// on 2d-full); here each candidate's gradient is a strided read of it.
class MixKernelsFunction : public torch::autograd::Function<MixKernelsFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& probs,
                            at::TensorList weights, const CandidateSpace& space,
                            std::vector<int64_t> frame) {
    const at::Tensor& w0 = weights.front();
    std::vector<int64_t> shape{w0.size(0), w0.size(1)};
    shape.insert(shape.end(), frame.begin(), frame.end());
    at::Tensor mixed = at::zeros(shape, w0.options());
    at::Tensor p = probs.to(at::kDouble).cpu();
    for (int64_t j = 0; j < space.size(); ++j) {
      const double pj = p[j].item<double>();
      if (pj == 0) continue;  // pruned: contributes nothing
      const auto place = placements(space, j, frame);
      frame_view(mixed, place).add_(kept_taps(weights[static_cast<size_t>(j)], place), pj);
    }
    ctx->save_for_backward(weights.vec());
    ctx->saved_data["probs"] = probs;
    ctx->saved_data["kernel_sizes"] = space.kernel_sizes;
    ctx->saved_data["dilations"] = space.dilations;
    ctx->saved_data["frame"] = frame;
    return mixed;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto weights = ctx->get_saved_variables();
    const at::Tensor probs = ctx->saved_data["probs"].toTensor();
    const CandidateSpace space{ctx->saved_data["kernel_sizes"].toIntVector(),
                               ctx->saved_data["dilations"].toIntVector()};
    const auto frame = ctx->saved_data["frame"].toIntVector();
    const at::Tensor& grad = grads[0];
    at::Tensor p = probs.to(at::kDouble).cpu();
    at::Tensor dprobs = at::zeros({space.size()}, grad.options().dtype(at::kDouble));
    torch::autograd::variable_list out{at::Tensor()};
    for (int64_t j = 0; j < space.size(); ++j) {
      const auto place = placements(space, j, frame);
      const at::Tensor& w = weights[static_cast<size_t>(j)];
      const at::Tensor g = frame_view(grad, place);
      dprobs[j] = (g * kept_taps(w, place)).sum().to(at::kDouble);
      // A candidate out of the mixture (probability 0) gets no gradient
      // (undefined: zero to autograd) rather than a zeroed copy of its weights.
      const double pj = p[j].item<double>();
      at::Tensor dw;
      if (pj != 0) {
        dw = at::zeros_like(w);
        kept_taps(dw, place).copy_(g * pj);
      }
      out.push_back(dw);
    }
    out[0] = dprobs.to(probs.dtype()).to(probs.device());
    out.push_back(at::Tensor());  // space
    out.push_back(at::Tensor());  // frame
    return out;
  }
};

}  // namespace

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
  for (int64_t f : frame) {
    TORCH_CHECK(f >= 1 && f % 2 == 1, "mix_kernels: frame sizes must be odd, got ", f);
  }
  for (int64_t j = 0; j < space.size(); ++j) {
    const at::Tensor& w = weights[static_cast<size_t>(j)];
    const int64_t k = space.kernel_size(j);
    bool ok = w.dim() == w0.dim() && w.size(0) == w0.size(0) && w.size(1) == w0.size(1) &&
              w.scalar_type() == w0.scalar_type() && w.device() == w0.device();
    for (int axis = 0; ok && axis < rank; ++axis) ok = w.size(2 + axis) == k;
    TORCH_CHECK(ok, "mix_kernels: candidate ", j, " (k=", k, ", d=", space.dilation(j),
                ") has shape ", w.sizes(), ", expected [", w0.size(0), ", ", w0.size(1), ", ", k,
                rank == 2 ? ", " + std::to_string(k) : std::string(), "] like candidate 0");
  }
  return MixKernelsFunction::apply(probs, at::TensorList(weights), space,
                                   frame.vec());
}

at::Tensor fourier_mixture(const at::Tensor& x, const std::vector<at::Tensor>& weights,
                           const at::Tensor& probs, const CandidateSpace& space,
                           const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                           int64_t groups, int64_t field) {
  space.validate();
  TORCH_CHECK(x.dim() == 3 || x.dim() == 4, "fourier_mixture: input must be 3D or 4D, got ",
              x.dim(), "D");
  if (field <= 0) field = space.receptive_field();
  TORCH_CHECK(field % 2 == 1, "fourier_mixture: the field must be odd, got ", field);
  // Per axis, the frame is as wide as the farthest tap any candidate keeps:
  // taps beyond +-(n-1) never touch an input of length n, and a dilated
  // candidate's kept taps may stop well short of the cap (on 28x28 with
  // D={1,3,7,15}: +-21, a 43-tap frame instead of 55). Exact either way.
  std::vector<int64_t> frame;
  for (int64_t axis = 2; axis < x.dim(); ++axis) {
    const int64_t half_cap = (std::min(field, 2 * x.size(axis) - 1) - 1) / 2;
    int64_t half = 0;
    for (int64_t j = 0; j < space.size(); ++j) {
      const int64_t d = space.dilation(j);
      half = std::max(half, d * std::min((space.kernel_size(j) - 1) / 2, half_cap / d));
    }
    frame.push_back(2 * half + 1);
  }
  return spectral_conv(x, mix_kernels(weights, probs, space, frame), bias, stride, groups);
}

}  // namespace dash::ops
