#pragma once
// A convolution whose kernel size and dilation are searched (MIXTURE) or fixed
// (FIXED). In MIXTURE mode it holds one weight per candidate (k, d) and the
// architecture logits alpha, and computes DASH's Fourier mixture; in FIXED mode
// it is an ordinary dilated convolution with "same" padding.

#include <torch/torch.h>

#include "nn/architecture.h"
#include "ops/fourier_mixture.h"

namespace dash::nn {

struct ConvShape {
  int dims = 2;  // 1 or 2 spatial dimensions
  int64_t in = 1;
  int64_t out = 1;
  int64_t stride = 1;
  bool bias = true;
  // 1D FIXED layers: output t sees inputs t - d(k-1) ... t only.
  bool causal = false;
};

// The kernel w [out, in, k...] with d-1 zeros between taps on every spatial
// axis: [out, in, d(k-1)+1 ...]. Differentiable.
at::Tensor dilate_kernel(const at::Tensor& w, int64_t d);

// How a FIXED (k, d) layer runs. Taps farther than n-1 from the centre never
// meet an input of length n, so they are dropped first (exact), leaving k' taps
// per axis. LibTorch's dilated convolution costs ~k'^dims per output, the
// spectral one ~the same for any k': bench/bench_fixed.cpp measured the FFT
// 1.4-2.7x faster at k' = 7 and 9 with d = 1 (and 2D d = 7 on 14x14 and 28x28),
// a tie at k' = 5 and slower at k' = 3 or at small k' with large d. So: spectral
// when k' >= 7 and (2D or d == 1), else direct.
bool use_spectral(int dims, int64_t cropped_taps, int64_t dilation);

// A (k, d) kernel with only the taps that can touch an input of the given
// spatial sizes kept, and the "same" padding (per axis, both sides) that
// goes with it.
struct CroppedKernel {
  at::Tensor weight;          // [out, in/groups, k' (, k')]
  std::vector<int64_t> pad;   // per axis
  int64_t taps = 1;           // the largest k'
};
CroppedKernel crop_kernel(const at::Tensor& w, int64_t dilation, const std::vector<int64_t>& spatial);

// One ordinary convolution, as an exporter writes it: what a FIXED layer
// computes on inputs of a given size, whichever path fixed_conv takes.
struct PlainConv {
  at::Tensor weight;  // cropped (crop_kernel)
  at::Tensor bias;    // may be undefined
  int64_t dilation = 1, stride = 1, groups = 1;
  std::vector<int64_t> pads;  // ONNX order: every axis's begin, then every axis's end
};

// A "same" convolution of x with the kernel w ([out, in/groups, k (, k)]) at
// dilation d, by the fastest path for its size (see use_spectral). The taps
// that cannot touch x are dropped first, so the result is exact.
at::Tensor fixed_conv(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias,
                      int64_t dilation, int64_t stride, int64_t groups);

// Taps per axis of a (k, d) kernel that can touch an input of length n.
int64_t cropped_taps(int64_t k, int64_t d, int64_t n);
// For each candidate of `space`, the first candidate that computes the same
// family of functions on inputs of these spatial sizes (itself if none
// before it does): the same taps survive cropping on every axis at the same
// dilation, or only the centre tap survives for both. On Fashion-MNIST's
// 7x7 maps 9 of the 16 candidates (every d >= 7) are the centre tap alone.
std::vector<int64_t> same_function_as(const ops::CandidateSpace& space, const std::vector<int64_t>& spatial);
// Multiply-accumulates per sample of a (k, d) convolution of `shape` with
// `groups` on an input of these spatial sizes (cropped taps only).
double conv_macs(const ConvShape& shape, const std::vector<int64_t>& spatial, int64_t k, int64_t d,
                 int64_t groups);

class SearchableConvImpl : public torch::nn::Module {
 public:
  // MIXTURE. separable: a depthwise proxy (groups = channels) when in == out,
  // as DASH searches by default; layers with in != out stay full.
  SearchableConvImpl(const ConvShape& shape, const ops::CandidateSpace& space, bool separable);
  // FIXED at (k, d), a full convolution.
  SearchableConvImpl(const ConvShape& shape, const LayerChoice& choice);

  at::Tensor forward(const at::Tensor& x);

  bool is_mixture() const { return mixture_; }
  const ConvShape& shape() const { return shape_; }
  const ops::CandidateSpace& space() const { return space_; }
  // Architecture logits [|K||D|] (MIXTURE only).
  at::Tensor& alpha() { return alpha_; }
  const at::Tensor& alpha() const { return alpha_; }
  // Mixture probabilities without noise: softmax(alpha) over the candidates
  // still active (pruned ones are 0); one-hot once the layer is frozen.
  at::Tensor probabilities() const;
  // FIXED: its choice; MIXTURE: the frozen candidate, or else the argmax of
  // alpha over the active candidates (DASH's discretisation).
  LayerChoice choice() const;
  // Index of that candidate (MIXTURE only).
  int64_t choice_index() const;

  // The search's levers on a MIXTURE layer (both kept as buffers, so a
  // checkpoint restores them). freeze(j): from now on the layer computes only
  // candidate j, directly, as a FIXED layer would; its alpha gets no gradient.
  // prune(j): candidate j leaves the mixture for good (probability 0); the
  // mixed kernel shrinks to the largest field of the candidates left.
  void freeze(int64_t j);
  bool frozen() const;
  void prune(int64_t j);
  bool active(int64_t j) const;
  int64_t active_count() const;
  // Largest receptive field of the active candidates.
  int64_t active_field() const;

  // Spatial sizes of the last input seen ([] before any forward): the cost
  // model measures each layer at the size it actually runs at.
  const std::vector<int64_t>& last_input_spatial() const { return last_spatial_; }
  // The layer as one ordinary convolution on inputs of these spatial sizes
  // (FIXED, or a frozen MIXTURE). A layer that still mixes candidates has no
  // such form: throws dash::Unsupported.
  PlainConv plain(const std::vector<int64_t>& spatial) const;
  // conv_macs of its choice at the last input size (FIXED: a full convolution).
  double macs() const;

  // Gumbel-softmax temperature used in training mode (DASH: 1, constant).
  void set_temperature(double tau) { tau_ = tau; }

 private:
  at::Tensor masked_logits() const;
  // The one centred kernel a FIXED or frozen layer computes with; an
  // undefined weight while the layer mixes candidates.
  struct Single {
    at::Tensor weight;
    int64_t dilation = 1, groups = 1;
  };
  Single single() const;

  ConvShape shape_;
  bool mixture_ = false;
  int64_t groups_ = 1;
  ops::CandidateSpace space_;
  std::vector<at::Tensor> candidates_;
  at::Tensor alpha_;
  at::Tensor weight_;  // FIXED
  at::Tensor bias_;
  LayerChoice fixed_;
  double tau_ = 1.0;
  at::Tensor active_;  // MIXTURE: [|K||D|] bool, false once pruned
  at::Tensor frozen_;  // MIXTURE: scalar int64, -1 or the frozen candidate
  std::vector<int64_t> last_spatial_;
};
TORCH_MODULE(SearchableConv);

}  // namespace dash::nn
