#pragma once
// The fixed backbones DASH searches in: a pre-activation Wide ResNet for 2D
// inputs and the time-series ResNet for 1D inputs. Every convolution DASH makes
// searchable is a SearchableConv; shortcut convolutions never are.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "dist/communicator.h"
#include "nn/architecture.h"
#include "nn/graph.h"
#include "nn/searchable_conv.h"
#include "task/task_spec.h"

namespace dash::nn {

enum class BackboneKind { kWideResNet, kResNet1D };

struct BackboneSpec {
  BackboneKind kind = BackboneKind::kWideResNet;
  int depth = 16;      // WRN: 6n + 4
  int width = 1;       // WRN widening factor; ResNet1D channel multiplier
  int64_t in_channels = 1;
  std::vector<int64_t> spatial;  // [length] or [height, width]
  int64_t num_outputs = 10;
  // Dense tasks: no downsampling, one output vector per position.
  bool dense = false;
  bool causal = false;  // ResNet1D: causal FIXED convolutions (the search's mixture stays centred)
  // ResNet1D, classification-like outputs only: a fixed strided convolution
  // (kernel 2s+1, 2x the middle width, BN, ReLU) first divides the length by
  // this, so that long raw signals train at a usable step time. 1: none.
  int64_t stem_stride = 1;
  double dropout = 0.0;
  // A fixed affine map of the outputs per output channel, raw * scale + shift,
  // so that the network's own outputs are O(1) whatever the targets' units
  // (regression and dense targets; see search::fit_output_affine). Kept as
  // buffers, so saved with the weights. Empty: the identity.
  std::vector<double> output_scale, output_shift;

  std::string name() const;  // "wrn-16-1", "resnet1d-1", "-stem8", "-causal", "-dense"
  int dims() const { return static_cast<int>(spatial.size()); }
  void validate() const;     // throws std::invalid_argument
  // Number of searchable convolutions of this backbone.
  size_t searchable_layers() const;
};

// How the searchable layers are built.
struct LayerSetup {
  bool mixture = false;
  ops::CandidateSpace space;   // mixture
  bool separable = true;       // mixture: depthwise proxy where in == out
  Architecture architecture;   // fixed: one choice per searchable layer
};

class BackboneImpl : public torch::nn::Module {
 public:
  BackboneImpl(const BackboneSpec& spec, const LayerSetup& setup);

  // x: [n, in_channels, spatial...] -> [n, num_outputs] or, dense,
  // [n, num_outputs, spatial...].
  at::Tensor forward(const at::Tensor& x);

  const BackboneSpec& spec() const { return spec_; }
  // The searchable layers in order (stem first).
  std::vector<SearchableConv>& searchable() { return searchable_; }
  const std::vector<SearchableConv>& searchable() const { return searchable_; }
  // Their current choices (argmax of alpha in MIXTURE mode).
  Architecture architecture() const;
  // Architecture logits, and every other parameter.
  std::vector<at::Tensor> arch_parameters();
  std::vector<at::Tensor> weight_parameters();
  // What forward() computes in evaluation mode, one operation at a time, on
  // x (the normalised input, [n, in_channels, spatial...]); returns the
  // output. Every searchable layer must be FIXED or frozen (else
  // dash::Unsupported naming it).
  GraphValue trace(GraphSink& g, const GraphValue& x) const;
  // Multiply-accumulates per sample of every convolution and the head, at
  // the sizes of the last forward (run one first).
  double macs_per_sample() const;
  // Data-parallel training: while set (not null), batch norm in training
  // mode normalises with the statistics of every rank's batch together
  // (dist::synced_batch_norm). Evaluation mode is unaffected.
  void sync_batch_norm(dist::Communicator* comm) { sync_ = comm; }

 private:
  at::Tensor norm(torch::nn::AnyModule& bn, const at::Tensor& x);
  at::Tensor norm(torch::nn::Module& bn, const at::Tensor& x);
  at::Tensor forward_wrn(const at::Tensor& x);
  at::Tensor forward_resnet1d(const at::Tensor& x);
  GraphValue trace_wrn(GraphSink& g, GraphValue h) const;
  GraphValue trace_resnet1d(GraphSink& g, GraphValue h) const;
  GraphValue head(GraphSink& g, const GraphValue& h) const;
  SearchableConv make_conv(const LayerSetup& setup, const ConvShape& shape);

  BackboneSpec spec_;
  std::vector<SearchableConv> searchable_;
  size_t next_layer_ = 0;

  struct Block {
    torch::nn::AnyModule bn1, bn2, bn3, shortcut_bn;
    SearchableConv conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
    torch::nn::AnyModule shortcut;  // empty when the identity fits
  };
  SearchableConv stem_{nullptr};
  std::vector<Block> blocks_;
  torch::nn::Conv1d stem1d_{nullptr};
  torch::nn::BatchNorm1d stem1d_bn_{nullptr};
  torch::nn::AnyModule head_bn_;
  torch::nn::AnyModule head_;  // Linear, or a 1x1 conv when dense
  torch::nn::Dropout dropout_{nullptr};
  at::Tensor output_scale_, output_shift_;  // [num_outputs]
  dist::Communicator* sync_ = nullptr;
};
TORCH_MODULE(Backbone);

// A 1D input this long or shorter gets no stem by default.
constexpr int64_t kLongestWithoutStem = 1024;
// The stem stride `stem_stride` asks for: 0 is automatic (none up to
// kLongestWithoutStem positions, above it the smallest power of 2 that
// brings the length to <= 512); 1 none; dense, causal and 2D tasks never get one.
int64_t stem_stride_for(const task::TaskSpec& spec, int64_t stem_stride);

// The backbone DASH uses for a task: a Wide ResNet (depth, width) for 2D
// inputs, ResNet1D (width) for 1D ones.
BackboneSpec backbone_for(const task::TaskSpec& spec, int depth, int width, double dropout,
                          int64_t stem_stride = 0);

}  // namespace dash::nn
