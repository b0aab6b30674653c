// The traced graph (BackboneImpl::trace), computed operation by operation
// with plain LibTorch calls, against forward(): what the ONNX exporter writes
// is this trace, so a difference here is a wrong export.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "nn/backbones.h"
#include "nn/graph.h"
#include "util/errors.h"

namespace {

using dash::nn::Architecture;
using dash::nn::Backbone;
using dash::nn::BackboneKind;
using dash::nn::BackboneSpec;
using dash::nn::GraphValue;
using dash::nn::LayerChoice;
using dash::nn::LayerSetup;
using dash::nn::PlainConv;

// Each operation by its textbook formula: direct convolution with explicit
// padding (forward() takes the spectral path for large kernels), batch norm
// from its running statistics.
class TorchSink final : public dash::nn::GraphSink {
 public:
  explicit TorchSink(const at::Tensor& input) { values_["input"] = input; }
  const at::Tensor& operator[](const GraphValue& v) const { return values_.at(v.name); }

  GraphValue conv(const GraphValue& x, const PlainConv& c, const std::string& name) override {
    const at::Tensor& in = values_.at(x.name);
    const size_t dims = x.spatial.size();
    std::vector<int64_t> pad(c.pads.begin(), c.pads.begin() + static_cast<long>(dims));
    EXPECT_EQ(std::vector<int64_t>(c.pads.begin() + static_cast<long>(dims), c.pads.end()), pad) << name;
    at::Tensor out = dims == 1 ? at::conv1d(in, c.weight, c.bias, {c.stride}, pad, {c.dilation}, c.groups)
                               : at::conv2d(in, c.weight, c.bias, {c.stride, c.stride}, pad,
                                            {c.dilation, c.dilation}, c.groups);
    return put(name, out);
  }
  GraphValue batch_norm(const GraphValue& x, const at::Tensor& w, const at::Tensor& b, const at::Tensor& mean,
                        const at::Tensor& var, double eps, const std::string& name) override {
    const at::Tensor& in = values_.at(x.name);
    std::vector<int64_t> shape(static_cast<size_t>(in.dim()), 1);
    shape[1] = -1;
    return put(name, (in - mean.view(shape)) / (var.view(shape) + eps).sqrt() * w.view(shape) + b.view(shape));
  }
  GraphValue relu(const GraphValue& x) override { return put("relu", values_.at(x.name).clamp_min(0)); }
  GraphValue add(const GraphValue& a, const GraphValue& b) override {
    return put("add", values_.at(a.name) + values_.at(b.name));
  }
  GraphValue global_mean(const GraphValue& x) override {
    const at::Tensor& in = values_.at(x.name);
    return put("mean", in.flatten(2).mean(2));
  }
  GraphValue linear(const GraphValue& x, const at::Tensor& w, const at::Tensor& b, const std::string& name) override {
    return put(name, values_.at(x.name).matmul(w.t()) + b);
  }
  GraphValue channel_affine(const GraphValue& x, const at::Tensor& scale, const at::Tensor& shift,
                            const std::string& name) override {
    const at::Tensor& in = values_.at(x.name);
    std::vector<int64_t> shape(static_cast<size_t>(in.dim()), 1);
    shape[1] = -1;
    return put(name, in * scale.view(shape) + shift.view(shape));
  }

  std::vector<std::string> names;  // every operation's module name, in order

 private:
  GraphValue put(const std::string& name, const at::Tensor& t) {
    names.push_back(name);
    const std::string key = name + "#" + std::to_string(values_.size());
    values_[key] = t;
    return {key, t.size(1), {t.sizes().begin() + 2, t.sizes().end()}};
  }
  std::map<std::string, at::Tensor> values_;
};

// A FIXED backbone with trained-looking state: weights as initialised, batch
// norm statistics moved off 0/1 by a few training-mode passes.
Backbone fixed_backbone(const BackboneSpec& spec, const std::vector<LayerChoice>& layers) {
  LayerSetup setup;
  setup.architecture = Architecture{spec.name(), layers};
  Backbone net(spec, setup);
  std::vector<int64_t> shape = {8, spec.in_channels};
  shape.insert(shape.end(), spec.spatial.begin(), spec.spatial.end());
  torch::NoGradGuard no_grad;
  net->train();
  for (int i = 0; i < 3; ++i) net->forward(torch::randn(shape) * 2 + 0.5);
  net->eval();
  return net;
}

void expect_trace_matches_forward(const BackboneSpec& spec, const std::vector<LayerChoice>& layers) {
  torch::manual_seed(3);
  Backbone net = fixed_backbone(spec, layers);
  std::vector<int64_t> shape = {5, spec.in_channels};
  shape.insert(shape.end(), spec.spatial.begin(), spec.spatial.end());
  const at::Tensor x = torch::randn(shape);
  torch::NoGradGuard no_grad;
  const at::Tensor expected = net->forward(x);
  TorchSink sink(x);
  const GraphValue out = net->trace(sink, {"input", spec.in_channels, spec.spatial});
  ASSERT_EQ(sink[out].sizes(), expected.sizes()) << spec.name();
  EXPECT_EQ(out.channels, expected.size(1));
  EXPECT_EQ(out.spatial, std::vector<int64_t>(expected.sizes().begin() + 2, expected.sizes().end()));
  const double err = (sink[out] - expected).abs().max().item<double>();
  EXPECT_LT(err, 1e-4 * std::max(1.0, expected.abs().max().item<double>())) << spec.name();
  // Every searchable layer appears once, in order.
  std::vector<std::string> convs;
  for (const auto& n : sink.names) {
    if (n.rfind("conv", 0) == 0) convs.push_back(n);
  }
  ASSERT_EQ(convs.size(), layers.size());
  for (size_t i = 0; i < convs.size(); ++i) EXPECT_EQ(convs[i], "conv" + std::to_string(i));
}

BackboneSpec wrn(bool dense) {
  BackboneSpec s;
  s.kind = BackboneKind::kWideResNet;
  s.depth = 10;
  s.in_channels = 2;
  s.spatial = {12, 12};
  s.num_outputs = 3;
  s.dense = dense;
  s.output_scale = {2.0, 0.5, 1.0};
  s.output_shift = {-1.0, 3.0, 0.0};
  return s;
}

// Large kernels (spectral in forward), dilations cropped to one tap on the
// small maps, strides 2.
const std::vector<LayerChoice> kWrnLayers = {{9, 1}, {7, 3}, {5, 7}, {3, 15}, {9, 3}, {3, 1}, {7, 1}};

TEST(Export, TraceOfAWideResNetComputesWhatForwardDoes) {
  expect_trace_matches_forward(wrn(false), kWrnLayers);
}

TEST(Export, TraceOfADenseWideResNetComputesWhatForwardDoes) {
  expect_trace_matches_forward(wrn(true), kWrnLayers);
}

TEST(Export, TraceOfAResNet1DWithItsStemComputesWhatForwardDoes) {
  BackboneSpec s;
  s.kind = BackboneKind::kResNet1D;
  s.in_channels = 1;
  s.spatial = {100};
  s.num_outputs = 4;
  s.stem_stride = 4;
  expect_trace_matches_forward(s, {{9, 1}, {7, 3}, {5, 7}, {3, 15}, {9, 3}, {3, 1}, {7, 1}, {5, 1}, {3, 3}});
}

TEST(Export, TraceOfACausalDenseResNet1DComputesWhatForwardDoes) {
  BackboneSpec s;
  s.kind = BackboneKind::kResNet1D;
  s.in_channels = 2;
  s.spatial = {40};
  s.num_outputs = 1;
  s.dense = true;
  s.causal = true;
  s.output_scale = {4.0};
  s.output_shift = {10.0};
  expect_trace_matches_forward(s, {{9, 1}, {7, 3}, {5, 7}, {3, 15}, {9, 3}, {3, 1}, {7, 1}, {5, 1}, {3, 3}});
}

TEST(Export, ALayerThatStillMixesCandidatesIsUnsupportedByName) {
  BackboneSpec s = wrn(false);
  LayerSetup setup;
  setup.mixture = true;
  setup.space = {{3, 5}, {1, 2}};
  Backbone net(s, setup);
  net->eval();
  TorchSink sink(torch::randn({1, 2, 12, 12}));
  try {
    net->trace(sink, {"input", 2, {12, 12}});
    FAIL() << "a mixture was traced";
  } catch (const dash::Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("searchable layer 0 (conv0)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("4 candidates"), std::string::npos) << e.what();
  }
}

}  // namespace
