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
  // Mixture probabilities without noise: softmax(alpha).
  at::Tensor probabilities() const;
  // FIXED: its choice; MIXTURE: the argmax of alpha (DASH's discretisation).
  LayerChoice choice() const;

  // Gumbel-softmax temperature used in training mode (DASH: 1, constant).
  void set_temperature(double tau) { tau_ = tau; }

 private:
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
};
TORCH_MODULE(SearchableConv);

}  // namespace dash::nn
