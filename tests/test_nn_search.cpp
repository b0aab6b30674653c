// Searchable layers, backbones, the training loop and the DASH stages.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <tuple>

#include "nn/architecture.h"
#include "nn/backbones.h"
#include "nn/searchable_conv.h"
#include "search/cost.h"
#include "search/dash.h"
#include "support/reference.h"
#include "task/loss_metric.h"
#include "train/trainer.h"

namespace {

using dash::nn::Architecture;
using dash::nn::Backbone;
using dash::nn::BackboneKind;
using dash::nn::BackboneSpec;
using dash::nn::ConvShape;
using dash::nn::LayerChoice;
using dash::nn::LayerSetup;
using dash::nn::SearchableConv;
using dash::ops::CandidateSpace;

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(1e-30, b.norm().item<double>());
}

TEST(SearchableConv, MixtureInEvalModeIsTheSoftmaxWeightedSumOfCandidates) {
  torch::manual_seed(1);
  CandidateSpace space{{3, 5}, {1, 3}};
  for (bool same_channels : {true, false}) {
    ConvShape shape{2, 4, same_channels ? 4 : 6, 2, true};
    SearchableConv conv(shape, space, /*separable=*/true);
    conv->eval();
    torch::NoGradGuard no_grad;
    conv->alpha().normal_();
    at::Tensor x = torch::randn({2, 4, 11, 9});
    at::Tensor y = conv->forward(x);
    // The layer's candidates are its parameters candidate_0 ... in k-major order.
    std::vector<at::Tensor> w;
    for (int64_t j = 0; j < space.size(); ++j) {
      w.push_back(conv->named_parameters()["candidate_" + std::to_string(j)]);
    }
    const int64_t groups = same_channels ? 4 : 1;  // separable only when in == out
    at::Tensor y_ref = dash::reference::naive_mixture(x, w, torch::softmax(conv->alpha(), 0), space, 2, groups) +
                       conv->named_parameters()["bias"].view({1, -1, 1, 1});
    EXPECT_LT(rel_err(y, y_ref), 2e-5);
  }
}

TEST(SearchableConv, PrunedCandidatesLeaveTheMixtureAndFrozenLayersComputeOneCandidate) {
  torch::manual_seed(3);
  // Wide candidates (d = 7) are pruned, so the mix is framed at 5 taps, not 15.
  CandidateSpace space{{3, 5}, {1, 7}};
  ConvShape shape{2, 4, 4, 1, true};
  SearchableConv conv(shape, space, /*separable=*/true);
  conv->eval();
  torch::NoGradGuard no_grad;
  conv->alpha().normal_();
  std::vector<at::Tensor> w;
  for (int64_t j = 0; j < space.size(); ++j) {
    w.push_back(conv->named_parameters()["candidate_" + std::to_string(j)]);
  }
  const at::Tensor bias = conv->named_parameters()["bias"].view({1, -1, 1, 1});
  at::Tensor x = torch::randn({2, 4, 12, 10});
  EXPECT_EQ(conv->active_field(), 29);
  conv->prune(1);  // (3, 7)
  conv->prune(3);  // (5, 7)
  EXPECT_EQ(conv->active_count(), 2);
  EXPECT_EQ(conv->active_field(), 5);
  // The reference: the softmax over the two left, the others at 0.
  at::Tensor kept = torch::softmax(conv->alpha().index({torch::tensor({0, 2})}), 0);
  at::Tensor probs = torch::zeros({4});
  probs[0] = kept[0];
  probs[2] = kept[1];
  EXPECT_LT(rel_err(conv->probabilities(), probs), 1e-6);
  at::Tensor y_ref = dash::reference::naive_mixture(x, w, probs, space, 1, 4) + bias;
  EXPECT_LT(rel_err(conv->forward(x), y_ref), 2e-5);
  EXPECT_NE(conv->choice_index() % 2, 1);  // never a pruned candidate
  // Frozen at (5, 1): exactly that depthwise convolution.
  conv->freeze(2);
  EXPECT_TRUE(conv->frozen());
  EXPECT_EQ(conv->choice(), (LayerChoice{5, 1}));
  EXPECT_EQ(conv->probabilities()[2].item<double>(), 1.0);
  at::Tensor y_frozen = dash::reference::direct_conv(x, w[2], conv->named_parameters()["bias"], 1, 1, 4);
  EXPECT_LT(rel_err(conv->forward(x), y_frozen), 1e-5);
}

TEST(SearchableConv, FixedIsADilatedSameConvolution) {
  torch::manual_seed(2);
  SearchableConv conv(ConvShape{1, 3, 5, 1, true}, LayerChoice{7, 3});
  at::Tensor x = torch::randn({2, 3, 40});
  auto params = conv->named_parameters();
  at::Tensor y_ref = dash::reference::direct_conv(x, params["weight"], params["bias"], 1, 3, 1);
  EXPECT_LT(rel_err(conv->forward(x), y_ref), 1e-6);
  EXPECT_EQ(conv->choice(), (LayerChoice{7, 3}));
}

// FIXED layers drop taps that cannot touch the input and run large kernels
// through the FFT (use_spectral): every path must equal LibTorch's dilated
// convolution with the full kernel, values and gradients.
TEST(SearchableConv, FixedMatchesDirectConvolutionOnEveryPath) {
  struct Case {
    int dims;
    std::vector<int64_t> spatial;
    int64_t k, d, stride;
  };
  const std::vector<Case> cases = {
      {2, {12, 9}, 9, 1, 1},   // spectral
      {2, {12, 9}, 7, 3, 2},   // spectral, stride 2, cropped on the short axis
      {2, {5, 14}, 9, 7, 1},   // cropped to 1 tap on one axis, 3 on the other
      {2, {10, 10}, 5, 1, 1},  // direct
      {1, {30}, 9, 1, 2},      // spectral
      {1, {30}, 9, 7, 1},      // direct after cropping (dilated 1D)
      {1, {6}, 7, 3, 1},       // cropped to 3 taps
  };
  for (const auto& c : cases) {
    torch::manual_seed(7);
    SearchableConv conv(ConvShape{c.dims, 3, 4, c.stride, true}, LayerChoice{c.k, c.d});
    std::vector<int64_t> xs{2, 3};
    xs.insert(xs.end(), c.spatial.begin(), c.spatial.end());
    at::Tensor x = torch::randn(xs, torch::requires_grad());
    at::Tensor y = conv->forward(x);
    auto params = conv->named_parameters();
    at::Tensor w = params["weight"], b = params["bias"];
    at::Tensor y_ref = dash::reference::direct_conv(x, w, b, c.stride, c.d, 1);
    ASSERT_EQ(y.sizes(), y_ref.sizes());
    EXPECT_LT(rel_err(y, y_ref), 2e-5) << "dims " << c.dims << " k " << c.k << " d " << c.d;
    const at::Tensor g = torch::randn_like(y);
    auto grads = torch::autograd::grad({y}, {x, w, b}, {g});
    auto grads_ref = torch::autograd::grad({y_ref}, {x, w, b}, {g});
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_LT(rel_err(grads[i], grads_ref[i]), 2e-5) << "gradient " << i << " k " << c.k << " d " << c.d;
    }
  }
  EXPECT_TRUE(dash::nn::use_spectral(2, 9, 7));
  EXPECT_FALSE(dash::nn::use_spectral(1, 9, 7));
  EXPECT_FALSE(dash::nn::use_spectral(2, 5, 1));
}

TEST(SearchableConv, CausalFixedSeesOnlyThePast) {
  torch::manual_seed(4);
  for (auto [k, d] : {std::pair<int64_t, int64_t>{3, 1}, {5, 3}, {9, 1}, {7, 15}}) {
    SearchableConv conv(ConvShape{1, 3, 4, 1, true, /*causal=*/true}, LayerChoice{k, d});
    at::Tensor x = torch::randn({2, 3, 50}, torch::requires_grad());
    auto params = conv->named_parameters();
    // Reference: left-pad by d(k-1), then a valid dilated convolution.
    at::Tensor y_ref = at::conv1d(at::constant_pad_nd(x, {d * (k - 1), 0}), params["weight"],
                                  params["bias"], std::vector<int64_t>{1}, std::vector<int64_t>{0},
                                  std::vector<int64_t>{d});
    at::Tensor y = conv->forward(x);
    EXPECT_LT(rel_err(y, y_ref), 1e-5) << "k=" << k << " d=" << d;
    // Output 20 does not move when inputs after 20 do (up to the FFT's
    // rounding on the spectral path).
    at::Tensor g = torch::autograd::grad({y.select(2, 20).sum()}, {x})[0];
    const double past = g.narrow(2, 0, 21).abs().max().item<double>();
    EXPECT_LT(g.narrow(2, 21, 29).abs().max().item<double>(), 1e-6 * past) << "k=" << k << " d=" << d;
  }
}

// Which input positions each output position of a (k, d) "same"
// convolution reads on an input of these sizes, from LibTorch's own dilated
// convolution of every unit input with an all-ones kernel: two candidates
// compute the same family of functions exactly when these agree.
at::Tensor reads(int64_t k, int64_t d, const std::vector<int64_t>& spatial) {
  int64_t positions = 1;
  for (int64_t n : spatial) positions *= n;
  std::vector<int64_t> xs{positions, 1};
  xs.insert(xs.end(), spatial.begin(), spatial.end());
  const at::Tensor x = torch::eye(positions, torch::kDouble).reshape(xs);
  std::vector<int64_t> ws{1, 1};
  for (size_t a = 0; a < spatial.size(); ++a) ws.push_back(k);
  const at::Tensor w = torch::ones(ws, torch::kDouble);
  return dash::reference::direct_conv(x, w, c10::nullopt, 1, d, 1).reshape({positions, positions}) > 0.5;
}

TEST(SearchableConv, CandidatesThatCroppingMakesAlikeAreFoundAsTheSame) {
  const CandidateSpace space2{{3, 5, 7, 9}, {1, 3, 7, 15}};
  const CandidateSpace space1{{3, 7, 11, 15, 19}, {1, 3, 7, 15}};
  struct Case {
    const CandidateSpace* space;
    std::vector<int64_t> spatial;
    int64_t distinct;  // -1: not counted by hand
  };
  // Fashion-MNIST's WRN-16-1 sees 28x28, 14x14 and 7x7: at 28 the d = 15
  // kernels all keep 3 taps (0, +-15) and k7d7 = k9d7; at 14 every d = 7
  // kernel keeps (0, +-7) and every d = 15 one the centre; at 7 both are
  // the centre, and k5d3 = k7d3 = k9d3.
  const std::vector<Case> cases = {{&space2, {28, 28}, 12}, {&space2, {14, 14}, 10}, {&space2, {7, 7}, 7},
                                   {&space2, {5, 14}, -1},  {&space1, {30}, -1},     {&space1, {6}, -1}};
  for (const auto& c : cases) {
    const CandidateSpace& space = *c.space;
    const std::vector<int64_t> first = dash::nn::same_function_as(space, c.spatial);
    ASSERT_EQ(static_cast<int64_t>(first.size()), space.size());
    std::vector<at::Tensor> read;
    for (int64_t j = 0; j < space.size(); ++j) read.push_back(reads(space.kernel_size(j), space.dilation(j), c.spatial));
    int64_t distinct = 0;
    for (int64_t j = 0; j < space.size(); ++j) {
      // The first earlier candidate that reads the same positions, or j.
      int64_t expected = j;
      for (int64_t i = 0; i < j && expected == j; ++i) {
        if (read[static_cast<size_t>(i)].equal(read[static_cast<size_t>(j)])) expected = i;
      }
      EXPECT_EQ(first[static_cast<size_t>(j)], expected)
          << "candidate " << j << " (k" << space.kernel_size(j) << "d" << space.dilation(j) << ") at size "
          << c.spatial[0];
      distinct += expected == j ? 1 : 0;
    }
    if (c.distinct >= 0) EXPECT_EQ(distinct, c.distinct) << "size " << c.spatial[0];
  }
}

TEST(SearchableConv, DilateKernelSpreadsTaps) {
  const at::Tensor w = torch::arange(1, 4, torch::kFloat).view({1, 1, 3});
  EXPECT_TRUE(dash::nn::dilate_kernel(w, 3).equal(
      torch::tensor({1.f, 0.f, 0.f, 2.f, 0.f, 0.f, 3.f}).view({1, 1, 7})));
  const at::Tensor w2 = torch::ones({2, 1, 3, 3});
  EXPECT_EQ(dash::nn::dilate_kernel(w2, 2).sizes(), (std::vector<int64_t>{2, 1, 5, 5}));
  EXPECT_EQ(dash::nn::dilate_kernel(w2, 2).sum().item<float>(), 18.f);
}

TEST(SearchableConv, ChoiceIsTheArgmaxOfAlpha) {
  SearchableConv conv(ConvShape{2, 2, 2, 1, false}, CandidateSpace{{3, 5, 7}, {1, 2}}, true);
  torch::NoGradGuard no_grad;
  conv->alpha().zero_();
  conv->alpha()[3] = 1.0;  // k-major: j=3 -> k=5 (3/2=1), d=2 (3%2=1)
  EXPECT_EQ(conv->choice(), (LayerChoice{5, 2}));
}

TEST(Backbone, WideResNetShapesAndSearchableLayers) {
  BackboneSpec spec;
  spec.kind = BackboneKind::kWideResNet;
  spec.in_channels = 1;
  spec.spatial = {12, 12};
  spec.num_outputs = 10;
  EXPECT_EQ(spec.searchable_layers(), 13u);  // DASH's 6n+1 for WRN-16
  LayerSetup mixture;
  mixture.mixture = true;
  mixture.space = {{3, 5}, {1, 2}};
  Backbone net(spec, mixture);
  EXPECT_EQ(net->searchable().size(), 13u);
  EXPECT_EQ(net->arch_parameters().size(), 13u);
  EXPECT_EQ(net->forward(torch::randn({3, 1, 12, 12})).sizes(), (std::vector<int64_t>{3, 10}));
  // Every parameter is either an architecture logit or a weight, never both.
  EXPECT_EQ(net->arch_parameters().size() + net->weight_parameters().size(), net->parameters().size());

  spec.dense = true;
  spec.num_outputs = 2;
  LayerSetup fixed;
  fixed.architecture = Architecture::plain(spec.name(), spec.searchable_layers());
  Backbone dense(spec, fixed);
  EXPECT_EQ(dense->forward(torch::randn({2, 1, 12, 12})).sizes(), (std::vector<int64_t>{2, 2, 12, 12}));
  EXPECT_TRUE(dense->arch_parameters().empty());
}

TEST(Backbone, ResNet1DShapesAndArchitectureMismatch) {
  BackboneSpec spec;
  spec.kind = BackboneKind::kResNet1D;
  spec.in_channels = 2;
  spec.spatial = {50};
  spec.num_outputs = 4;
  EXPECT_EQ(spec.searchable_layers(), 9u);
  LayerSetup fixed;
  fixed.architecture = Architecture::plain("resnet1d-1", 9);
  fixed.architecture.layers[4] = LayerChoice{7, 3};
  Backbone net(spec, fixed);
  EXPECT_EQ(net->forward(torch::randn({3, 2, 50})).sizes(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(net->architecture().layers[4], (LayerChoice{7, 3}));
  fixed.architecture.layers.pop_back();
  EXPECT_THROW(Backbone(spec, fixed), std::invalid_argument);
}

TEST(Backbone, LongSequencesGetAStemThatDividesTheirLength) {
  auto spec_of = [](const std::string& kind, int64_t length) {
    nlohmann::json j = {{"kind", kind}, {"input_shape", {1, length}}};
    j[kind == "dense" ? "num_outputs" : "num_classes"] = 10;
    return dash::task::TaskSpec::from_json(j);
  };
  EXPECT_EQ(dash::nn::stem_stride_for(spec_of("classification", 1000), 0), 1);
  EXPECT_EQ(dash::nn::stem_stride_for(spec_of("classification", 1025), 0), 4);  // 1025 / 2 > 512
  EXPECT_EQ(dash::nn::stem_stride_for(spec_of("classification", 4000), 0), 8);
  EXPECT_EQ(dash::nn::stem_stride_for(spec_of("classification", 4000), 1), 1);
  EXPECT_EQ(dash::nn::stem_stride_for(spec_of("dense", 4000), 0), 1);  // one output per position
  EXPECT_THROW(dash::nn::stem_stride_for(spec_of("dense", 4000), 4), std::invalid_argument);

  const auto spec = spec_of("classification", 4000);
  BackboneSpec bspec = dash::nn::backbone_for(spec, 16, 1, 0.0);
  EXPECT_EQ(bspec.name(), "resnet1d-1-stem8");
  LayerSetup fixed;
  fixed.architecture = Architecture::plain(bspec.name(), bspec.searchable_layers());
  Backbone net(bspec, fixed);
  net->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor x = torch::randn({3, 1, 4000});
  EXPECT_EQ(net->forward(x).sizes(), (std::vector<int64_t>{3, 10}));
  // Every searchable layer sees 500 positions, and the stem's 32 x 17 taps at
  // each of them count in the multiply-adds.
  for (const auto& conv : net->searchable()) EXPECT_EQ(conv->last_input_spatial().at(0), 500);
  BackboneSpec no_stem = bspec;
  no_stem.stem_stride = 1;
  no_stem.spatial = {500};
  no_stem.in_channels = 32;
  Backbone rest(no_stem, fixed);
  rest->eval();
  rest->forward(torch::randn({1, 32, 500}));
  EXPECT_DOUBLE_EQ(net->macs_per_sample(), rest->macs_per_sample() + 500.0 * 32 * 1 * 17);
  // The stem is the strided convolution it claims: a sample's first position
  // depends on input positions 0..8 only (kernel 17 centred, stride 8).
  at::Tensor y = x.clone();
  y.narrow(2, 9, 4000 - 9).normal_();
  auto stem_out = [&](const at::Tensor& in) {
    for (const auto& kv : net->named_children()) {
      if (kv.key() == "stem") return kv.value()->as<torch::nn::Conv1d>()->forward(in);
    }
    return at::Tensor();
  };
  const at::Tensor a = stem_out(x), b = stem_out(y);
  ASSERT_TRUE(a.defined());
  EXPECT_EQ(a.size(2), 500);
  EXPECT_TRUE(torch::allclose(a.select(2, 0), b.select(2, 0)));
  EXPECT_FALSE(torch::allclose(a.select(2, 1), b.select(2, 1)));
}

TEST(Architecture, JsonRoundTripAndClearErrors) {
  Architecture a = Architecture::plain("wrn-16-1", 3);
  a.layers[1] = {9, 15};
  EXPECT_EQ(Architecture::from_json(a.to_json()).layers, a.layers);
  auto bad = a.to_json();
  bad["layers"][2]["kernel_size"] = 4;
  try {
    Architecture::from_json(bad);
    FAIL() << "even kernel accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("layer 2"), std::string::npos) << e.what();
  }
  bad = a.to_json();
  bad["extra"] = 1;
  EXPECT_THROW(Architecture::from_json(bad), std::invalid_argument);
}

// A 1D task only a wide receptive field solves: the class is the sign of the
// product of two values 24 samples apart, anywhere in a noisy sequence.
dash::task::Dataset far_apart_task(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  dash::task::Dataset d;
  auto make = [](int64_t rows) {
    at::Tensor x = torch::randn({rows, 1, 48}) * 0.3;
    at::Tensor a = torch::randn({rows});
    at::Tensor b = torch::randn({rows});
    x.select(2, 10).copy_(a.unsqueeze(1));
    x.select(2, 34).copy_(b.unsqueeze(1));
    at::Tensor y = (a * b > 0).to(torch::kLong);
    return dash::task::Split{x, y};
  };
  d.train = make(n);
  d.valid = make(n / 4);
  d.test = make(n / 4);
  return d;
}

dash::task::TaskSpec binary_1d_spec() {
  return dash::task::TaskSpec::from_json(
      {{"kind", "classification"}, {"input_shape", {1, 48}}, {"num_classes", 2}});
}

TEST(Training, SameSeedSameArchitectureAndMetrics) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(128, 4);
  dash::search::SearchOptions so;
  so.space = {{3, 7}, {1, 4}};
  so.epochs = 2;
  so.batch_size = 32;
  so.hpo = false;
  so.warmup_steps = 2;
  so.cost_model = dash::search::CostModelKind::kMacs;
  so.seed = 11;
  auto a = dash::search::run_search(spec, data, so, nullptr);
  auto b = dash::search::run_search(spec, data, so, nullptr);
  EXPECT_EQ(a.architecture.layers, b.architecture.layers);
  EXPECT_EQ(a.report["search"]["probabilities"], b.report["search"]["probabilities"]);
  const auto& ha = a.report["search"]["history"];
  const auto& hb = b.report["search"]["history"];
  ASSERT_EQ(ha.size(), hb.size());
  for (size_t i = 0; i < ha.size(); ++i) {
    EXPECT_EQ(ha[i]["train_loss"], hb[i]["train_loss"]);
    EXPECT_EQ(ha[i]["valid_metric"], hb[i]["valid_metric"]);
  }
}

TEST(Training, SearchMovesTheArchitectureLogits) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(128, 5);
  dash::search::SearchOptions so;
  so.space = {{3, 7}, {1, 4}};
  so.epochs = 2;
  so.batch_size = 32;
  so.hpo = false;
  so.guard = false;
  so.warmup_steps = 2;
  so.cost_model = dash::search::CostModelKind::kMacs;
  auto out = dash::search::run_search(spec, data, so, nullptr);
  EXPECT_EQ(out.report["search"]["batch_size"].get<int64_t>(), 32);  // no budget: the batch asked for
  EXPECT_FALSE(out.report["search"].contains("batch_size_reason"));
  // 9 layers, 4 candidates each; the logits start within ~1e-3 of uniform.
  double spread = 0;
  for (const auto& layer : out.report["search"]["probabilities"]) {
    const auto p = layer.get<std::vector<double>>();
    spread = std::max(spread, *std::max_element(p.begin(), p.end()) - *std::min_element(p.begin(), p.end()));
  }
  EXPECT_GT(spread, 0.01);
}

// The guard's two trials train at the grid's first point, so whichever
// network it keeps, that point is the hyperparameters returned unless a later
// point beat it (a one-point grid: none can). Its lr differs from the task's
// default, which was returned before.
TEST(Search, TheGuardReturnsTheHyperparametersItsTrialsUsed) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(128, 5);
  dash::search::SearchOptions so;
  so.space = {{3, 7}, {1, 4}};
  so.epochs = 2;
  so.batch_size = 32;
  so.warmup_steps = 2;
  so.cost_model = dash::search::CostModelKind::kMacs;
  so.hpo = true;
  so.guard = true;
  so.grid = {{0.05, 0.9, 5e-4, 0.0}};
  ASSERT_NE(so.grid[0].lr, dash::train::Hyperparams{}.lr);
  auto out = dash::search::run_search(spec, data, so, nullptr);
  ASSERT_TRUE(out.report["guard"].contains("advantage")) << out.report["guard"].dump();
  EXPECT_EQ(out.hp.lr, 0.05);
  EXPECT_EQ(out.report["hyperparameters"]["lr"].get<double>(), 0.05);
  // The choice is the rule applied to the numbers the report gives.
  const auto& g = out.report["guard"];
  const double distance = 1.0 - g["backbone_valid"].get<double>();  // accuracy
  const double adv = g["advantage"].get<double>();
  const bool keep = adv > so.guard_stderrs * g["advantage_stderr"].get<double>() &&
                    adv >= so.guard_min_gain * distance;
  EXPECT_EQ(g["chosen"], keep ? "searched" : "backbone") << g.dump();
  EXPECT_EQ(g["guard_min_gain"].get<double>(), 0.18);
}

// The guard keeps the searched network only when its lead is both beyond
// guard_stderrs standard errors and at least guard_min_gain of what the
// backbone lacks of a perfect score. Worked numbers: an accuracy of 0.70
// lacks 0.30, so a lead of 0.05 removes 1/6 of it.
TEST(Search, TheGuardAsksForALeadThatIsCertainAndLarge) {
  using dash::search::guard_verdict;
  using dash::task::MetricKind;
  const auto small = guard_verdict(0.05, 0.01, 0.70, MetricKind::kAccuracy, 1.0, 0.2);
  EXPECT_NEAR(small.gain, 0.05 / 0.30, 1e-12);
  EXPECT_FALSE(small.keep);
  EXPECT_NE(small.why.find("17%"), std::string::npos) << small.why;
  EXPECT_NE(small.why.find("guard_min_gain (20%)"), std::string::npos) << small.why;
  EXPECT_TRUE(guard_verdict(0.05, 0.01, 0.70, MetricKind::kAccuracy, 1.0, 0.15).keep);
  EXPECT_TRUE(guard_verdict(0.05, 0.01, 0.70, MetricKind::kAccuracy, 1.0, 0.0).keep);
  // Large but uncertain: 0.09 removes 30%, within one standard error of 0.1.
  const auto noisy = guard_verdict(0.09, 0.1, 0.70, MetricKind::kAccuracy, 1.0, 0.2);
  EXPECT_FALSE(noisy.keep);
  EXPECT_NE(noisy.why.find("standard errors"), std::string::npos) << noisy.why;
  EXPECT_TRUE(guard_verdict(0.09, 0.1, 0.70, MetricKind::kAccuracy, 0.5, 0.2).keep);
  // Lower is better: a relative L2 error of 0.5 lowered by 0.13 is 26% of it.
  const auto l2 = guard_verdict(0.13, 0.005, 0.5, MetricKind::kRelativeL2, 1.0, 0.2);
  EXPECT_NEAR(l2.gain, 0.26, 1e-12);
  EXPECT_TRUE(l2.keep);
  EXPECT_FALSE(guard_verdict(0.09, 0.005, 0.5, MetricKind::kRelativeL2, 1.0, 0.2).keep);
  // A perfect backbone cannot be beaten; a non-finite lead never wins.
  EXPECT_FALSE(guard_verdict(0.0, 0.0, 1.0, MetricKind::kAccuracy, 1.0, 0.2).keep);
  EXPECT_FALSE(guard_verdict(std::nan(""), 0.01, 0.7, MetricKind::kAccuracy, 1.0, 0.0).keep);
}

// The report's record: probabilities over search time (at most 64 evenly
// spaced snapshots, ending at the search's last step), the learning rate of
// every epoch (the cosine schedule's value at the epoch's last step), and
// what each network costs to infer.
TEST(Search, TheReportTracesProbabilitiesAndLearningRates) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(256, 9);  // 8 steps per epoch
  dash::search::SearchOptions so;
  so.space = {{3, 7}, {1, 4}};
  so.epochs = 10;  // 80 steps: more than 64, so the trace is thinned once
  so.batch_size = 32;
  so.hpo = false;
  so.guard = false;
  so.warmup_steps = 4;
  so.patience = 1000;  // no early stop
  so.cost_model = dash::search::CostModelKind::kMacs;
  auto out = dash::search::run_search(spec, data, so, nullptr);
  const auto& search = out.report["search"];
  ASSERT_EQ(search["steps_done"].get<int64_t>(), 80);
  const auto& trace = search["trace"];
  ASSERT_GE(trace.size(), 32u);
  ASSERT_LE(trace.size(), 64u);
  EXPECT_EQ(trace.back()["step"].get<int64_t>(), 80);
  EXPECT_EQ(trace.back()["probabilities"], search["probabilities"]);
  const int64_t stride = trace[1]["step"].get<int64_t>() - trace[0]["step"].get<int64_t>();
  EXPECT_EQ(stride, 2);
  for (size_t i = 1; i < trace.size(); ++i) {
    EXPECT_EQ(trace[i]["step"].get<int64_t>() - trace[i - 1]["step"].get<int64_t>(), stride) << i;
    EXPECT_GE(trace[i]["seconds"].get<double>(), trace[i - 1]["seconds"].get<double>());
  }
  for (const auto& snap : trace) {
    for (const auto& layer : snap["probabilities"]) {
      double sum = 0;
      for (const auto& v : layer) sum += v.get<double>();
      EXPECT_NEAR(sum, 1.0, 1e-6);  // a float softmax
    }
  }
  // The logits stay put during the warm-up and move after it.
  EXPECT_LE(trace[0]["step"].get<int64_t>(), so.warmup_steps);
  EXPECT_NE(trace[0]["probabilities"], trace.back()["probabilities"]);

  const auto& history = search["history"];
  ASSERT_EQ(history.size(), 10u);
  for (size_t e = 0; e < history.size(); ++e) {
    const double progress = static_cast<double>(8 * (e + 1) - 1) / 80.0;
    const double lr = dash::train::Hyperparams{}.lr;
    EXPECT_NEAR(history[e]["lr"].get<double>(), lr * 0.5 * (1 + std::cos(M_PI * progress)), 1e-12) << e;
  }
  for (const char* name : {"searched", "backbone"}) {
    ASSERT_TRUE(out.report["networks"].contains(name)) << name;
    EXPECT_GT(out.report["networks"][name]["infer_ms_per_sample"].get<double>(), 0) << name;
  }
}

// Timed trials last at least min_trial_steps backbone steps while the share
// holds two of them: fewer grid points fit, but none is cut short.
TEST(Search, TrialsAreNoShorterThanMinTrialStepsWhereTwoFit) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(128, 5);
  dash::search::SearchOptions so;
  so.arch_search = false;
  so.batch_size = 32;
  so.time_budget_s = 4;
  so.grid = {{0.1, 0.9, 5e-4, 0.0}, {0.03, 0.9, 5e-4, 0.0}, {0.01, 0.9, 5e-4, 0.0}};
  const double share = so.time_budget_s * so.hpo_share;
  so.min_trial_steps = 0;
  auto free_grid = dash::search::run_search(spec, data, so, nullptr);
  EXPECT_NEAR(free_grid.report["hpo"]["seconds_per_trial"].get<double>(), share / 4, 1e-9);
  so.min_trial_steps = 1000000;  // far more than the share holds
  auto long_trials = dash::search::run_search(spec, data, so, nullptr);
  EXPECT_NEAR(long_trials.report["hpo"]["seconds_per_trial"].get<double>(), share / 2, 1e-9);
  // (A trial's own seconds are not asserted: it stops early to leave time for
  // its evaluations, by how much depends on the machine; under ASan 0.78 of 1.14 s.)
}

// Trial lengths round down to 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^e, so
// two runs that time a step a few percent apart plan the same trial.
TEST(Search, TrialStepsRoundDownToACoarseSeries) {
  using dash::search::round_down_coarse;
  EXPECT_EQ(round_down_coarse(214.0), 200);
  EXPECT_EQ(round_down_coarse(199.9), 150);
  EXPECT_EQ(round_down_coarse(200.0), 200);
  EXPECT_EQ(round_down_coarse(1234.0), 1200);
  EXPECT_EQ(round_down_coarse(7.9), 6);
  EXPECT_EQ(round_down_coarse(80.0), 80);
  EXPECT_EQ(round_down_coarse(1.0), 1);
  EXPECT_EQ(round_down_coarse(0.3), 1);
  EXPECT_EQ(round_down_coarse(std::nan("")), 1);
  // 140 and 150 ms per step for a 30 s trial (7% apart) plan the same 200.
  EXPECT_EQ(round_down_coarse(30 / 0.140), 200);
  EXPECT_EQ(round_down_coarse(30 / 0.150), 200);
}

// grid_runs_whole against the early stop itself, played out: for every
// pattern of which points beat the best so far, one process's run of the
// grid (points in order; at a change of learning rate it ends if the best
// is still the one it was at the previous change). Wherever that run
// reaches a point i, a round [i, i + n) that grid_runs_whole calls whole
// must have run to its end; and the rounds it refuses must be cut in some
// pattern (else a spread was missed).
TEST(Search, GridSpreadsOnlyRoundsOneProcessWouldRunWhole) {
  using dash::search::grid_runs_whole;
  auto grid_of = [](const std::vector<double>& lrs) {
    std::vector<dash::train::Hyperparams> g;
    for (double lr : lrs) g.push_back({lr, 0.9, 5e-4, 0.0});
    return g;
  };
  std::vector<double> dash_lrs;
  for (const auto& hp : dash::search::dash_grid()) dash_lrs.push_back(hp.lr);
  const std::vector<std::vector<double>> grids = {
      {0.1, 0.03, 0.01}, {0.1, 0.1, 0.01, 0.01, 0.001, 0.001}, {0.1, 0.1, 0.1, 0.01, 0.001, 0.001, 0.001}, dash_lrs};
  for (const auto& lrs : grids) {
    const auto grid = grid_of(lrs);
    const size_t m = grid.size();
    // (i, change seen at i, n) -> ran whole in every pattern that reached it / in none, seen at all.
    std::map<std::tuple<size_t, bool, size_t>, std::pair<bool, bool>> seen;
    // Patterns: each point after the first wins or not (the dash grid: the
    // first 12 points' bits, the rest repeat them, which reaches every
    // group boundary with the best both changed and unchanged).
    const size_t bits = std::min<size_t>(m - 1, 12);
    for (uint32_t wins = 0; wins < (1u << bits); ++wins) {
      auto won = [&](size_t k) { return k > 0 && ((wins >> ((k - 1) % bits)) & 1u); };
      std::vector<size_t> ran;
      std::vector<bool> changed_at;
      int64_t best = -1, at_change = -1;
      for (size_t k = 0; k < m; ++k) {
        if (k > 0 && grid[k].lr != grid[k - 1].lr) {
          if (at_change >= 0 && best == at_change) break;
          at_change = best;
        }
        ran.push_back(k);
        changed_at.push_back(at_change >= 0);
        if (best < 0 || won(k)) best = static_cast<int64_t>(k);
      }
      for (size_t i : ran) {
        for (size_t n = 2; n <= 3; ++n) {
          const bool whole = ran.back() + 1 >= std::min(i + n, m);
          const bool said = grid_runs_whole(grid, i, n, changed_at[i]);
          if (said) EXPECT_TRUE(whole) << "point " << i << " n " << n << " wins " << wins;
          auto& s = seen[{i, changed_at[i], n}];
          s.first = s.first || !whole;  // cut in some pattern
          s.second = said;
        }
      }
    }
    for (const auto& [key, s] : seen) {
      EXPECT_TRUE(s.first || s.second) << "round at " << std::get<0>(key) << " of " << std::get<2>(key)
                                       << " always runs whole but is not spread (grid of " << m << ")";
    }
  }
  // The two named grids with two ranks: the small grid's first two points
  // (the first change only records), not its last two; DASH's groups of 8.
  const auto small = dash::search::small_grid();
  EXPECT_TRUE(grid_runs_whole(small, 0, 2, false));
  EXPECT_FALSE(grid_runs_whole(small, 1, 2, true));
  const auto dash_grid = dash::search::dash_grid();
  EXPECT_TRUE(grid_runs_whole(dash_grid, 6, 2, false));
  EXPECT_TRUE(grid_runs_whole(dash_grid, 7, 2, false));  // across the first change
  EXPECT_FALSE(grid_runs_whole(dash_grid, 15, 2, true));
}

// A stage planned in steps ends after them, its cosine schedule runs over
// them (not over the clock), and so it learns the same whatever its time
// budget: the property that makes two trials, or the same trial in two runs,
// comparable on a loaded machine.
TEST(Training, AStagePlannedInStepsLearnsTheSameWhateverItsBudget) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(128, 3);  // 4 steps per epoch at batch 32
  auto train_for = [&](double budget_s) {
    torch::manual_seed(5);
    Architecture plain = Architecture::plain("resnet1d-1", 9);
    dash::nn::LayerSetup fixed;
    fixed.architecture = plain;
    dash::nn::Backbone net(dash::nn::backbone_for(spec, 3, 1, 0.0, 0), fixed);
    dash::train::StageOptions to;
    to.epochs = 0;
    to.max_steps = 10;  // two and a half epochs
    to.time_budget_s = budget_s;
    to.batch_size = 32;
    to.keep_best = false;
    to.seed = 9;
    auto r = dash::train::run_stage(net, spec, data, to, nullptr);
    return std::make_pair(r, net);
  };
  auto [a, net_a] = train_for(600);
  auto [b, net_b] = train_for(1200);
  EXPECT_EQ(a.steps_done, 10);
  EXPECT_EQ(b.steps_done, 10);
  ASSERT_EQ(a.history.size(), 3u);
  // The last step (the tenth) ran at progress 9/10 of the cosine.
  EXPECT_NEAR(a.history.back().lr, dash::train::Hyperparams{}.lr * 0.5 * (1 + std::cos(M_PI * 0.9)), 1e-12);
  const auto pa = net_a->parameters(), pb = net_b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(pa[i].equal(pb[i])) << "parameter " << i;
  // Without a budget, steps alone may end a stage of epochs 0.
  auto [c, net_c] = train_for(0);
  EXPECT_EQ(c.steps_done, 10);
}

TEST(Training, TheScheduleHoldsThenDecaysByACosine) {
  using dash::train::scheduled_lr;
  const double pi = M_PI;
  // decay_share 1 is the plain cosine over the whole stage.
  for (double p : {0.0, 0.1, 0.5, 0.9, 1.0}) EXPECT_EQ(scheduled_lr(0.1, p, 1.0), 0.1 * 0.5 * (1 + std::cos(pi * p)));
  // 0.25: the base rate up to 3/4, then a cosine over the last quarter.
  EXPECT_EQ(scheduled_lr(0.1, 0.0, 0.25), 0.1);
  EXPECT_EQ(scheduled_lr(0.1, 0.75, 0.25), 0.1);
  EXPECT_NEAR(scheduled_lr(0.1, 0.875, 0.25), 0.05, 1e-15);
  EXPECT_NEAR(scheduled_lr(0.1, 0.8, 0.25), 0.1 * 0.5 * (1 + std::cos(pi * 0.2)), 1e-15);
  EXPECT_NEAR(scheduled_lr(0.1, 1.0, 0.25), 0.0, 1e-15);
  EXPECT_NEAR(scheduled_lr(0.1, 0.75 + 1e-9, 0.25), 0.1, 1e-9);  // no jump where the decay starts
  EXPECT_NEAR(scheduled_lr(0.1, 7.0, 0.25), 0.0, 1e-15);         // progress is clamped
  EXPECT_EQ(scheduled_lr(0.1, -1.0, 0.25), 0.1);
}

// The plain 3-block ResNet1D the training-loop tests share, from seed 5.
dash::nn::Backbone small_plain_resnet1d(const dash::task::TaskSpec& spec) {
  torch::manual_seed(5);
  dash::nn::LayerSetup fixed;
  fixed.architecture = Architecture::plain("resnet1d-1", 9);
  return dash::nn::Backbone(dash::nn::backbone_for(spec, 3, 1, 0.0, 0), fixed);
}

// Two stages from the same weights and seed, planned for 10 and 20 steps:
// with a decay over the last 40% both hold the rate for their first 6
// steps, so the first epoch (4 steps) is the same step for step; with a
// cosine over the whole stage their rates differ from the second step on.
TEST(Training, StagesOfDifferentLengthsTakeTheSameStepsUntilTheShorterDecays) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(128, 3);  // 4 steps per epoch at batch 32
  auto train_for = [&](int64_t steps, double decay_share) {
    dash::nn::Backbone net = small_plain_resnet1d(spec);
    dash::train::StageOptions to;
    to.epochs = 0;
    to.max_steps = steps;
    to.batch_size = 32;
    to.keep_best = false;
    to.decay_share = decay_share;
    to.seed = 9;
    return dash::train::run_stage(net, spec, data, to, nullptr);
  };
  const double lr = dash::train::Hyperparams{}.lr;
  const auto short_hold = train_for(10, 0.4), long_hold = train_for(20, 0.4);
  ASSERT_GE(short_hold.history.size(), 2u);
  ASSERT_GE(long_hold.history.size(), 2u);
  EXPECT_EQ(short_hold.history[0].train_loss, long_hold.history[0].train_loss);
  EXPECT_EQ(short_hold.history[0].lr, lr);
  EXPECT_EQ(long_hold.history[0].lr, lr);
  // The shorter one's last (tenth) step ran at progress 0.9: 3/4 of its decay.
  EXPECT_NEAR(short_hold.history.back().lr, lr * 0.5 * (1 + std::cos(M_PI * 0.75)), 1e-12);
  const auto short_cos = train_for(10, 1.0), long_cos = train_for(20, 1.0);
  EXPECT_NE(short_cos.history[0].train_loss, long_cos.history[0].train_loss);
  EXPECT_THROW(train_for(10, 0.0), std::invalid_argument);
  EXPECT_THROW(train_for(10, 1.5), std::invalid_argument);
}

// A regression (the product of two values 24 apart, times 10) trained at a
// rate that blows it up. Without retries the stage fails and says to lower
// the rate; with them it steps back to the epoch's start and trains it again
// at 0.3 times the rate, from the stage's start where the epoch blows up
// again, until the loss stays finite; it ends every epoch and says so; past
// its retries it fails again, saying how often it stepped back.
TEST(Training, ANonFiniteLossStepsBackAtALowerRate) {
  const auto spec = dash::task::TaskSpec::from_json(
      {{"kind", "regression"}, {"input_shape", {1, 48}}, {"num_outputs", 1}});
  auto data = far_apart_task(128, 3);
  for (auto* split : {&data.train, &data.valid, &data.test}) {
    split->y = (split->x.select(1, 0).select(1, 10) * split->x.select(1, 0).select(1, 34) * 10).unsqueeze(1);
  }
  auto train = [&](double lr, int64_t retries, const dash::train::ProgressFn& progress = nullptr) {
    dash::nn::Backbone net = small_plain_resnet1d(spec);
    dash::train::StageOptions to;
    to.epochs = 3;
    to.batch_size = 32;
    to.keep_best = false;
    to.seed = 9;
    to.hp.lr = lr;
    to.diverge_retries = retries;
    auto r = dash::train::run_stage(net, spec, data, to, progress);
    for (const auto& p : net->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
    return r;
  };
  constexpr double kHigh = 10;
  const auto calm = train(kHigh * std::pow(dash::train::kDivergeBackoff, 3), 0);
  EXPECT_EQ(calm.lr_backoffs, 0);
  EXPECT_EQ(calm.lr_scale, 1.0);
  try {
    train(kHigh, 0);
    ADD_FAILURE() << "a non-finite loss without retries must fail";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("lower the learning rate"), std::string::npos) << e.what();
  }
  // Progress goes back only where the weights did, and that event says why:
  // one note per step back (two in a row, with no step between, share an
  // event).
  std::vector<dash::train::Progress> events;
  const auto r = train(kHigh, 3, [&](const dash::train::Progress& p) {
    events.push_back(p);
    return true;
  });
  int64_t went_back = 0, notes = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& b = events[i];
    const bool note = b.warning.find("stepped back to") != std::string::npos;
    for (size_t at = b.warning.find("stepped back to"); at != std::string::npos;
         at = b.warning.find("stepped back to", at + 1)) {
      ++notes;
    }
    if (i == 0) continue;
    const auto& a = events[i - 1];
    if (std::make_pair(b.epoch, b.step) < std::make_pair(a.epoch, a.step)) {
      ++went_back;
      EXPECT_TRUE(note) << "epoch " << a.epoch << " step " << a.step << " -> epoch " << b.epoch << " step "
                        << b.step << " without a note: '" << b.warning << "'";
    }
  }
  ASSERT_GE(r.lr_backoffs, 1);
  EXPECT_GE(went_back, 1);
  EXPECT_EQ(notes, r.lr_backoffs);
  EXPECT_NEAR(r.lr_scale, std::pow(dash::train::kDivergeBackoff, static_cast<double>(r.lr_backoffs)), 1e-12);
  ASSERT_EQ(r.history.size(), 3u);
  for (size_t i = 0; i < r.history.size(); ++i) {
    EXPECT_EQ(r.history[i].epoch, static_cast<int64_t>(i + 1));
    EXPECT_TRUE(std::isfinite(r.history[i].train_loss));
  }
  EXPECT_EQ(r.steps_done, 12);  // 3 epochs of 4 steps: the steps before a step back are not counted
  // The last (twelfth) step ran at progress 11/12 of the cosine, at the lower rate.
  EXPECT_NEAR(r.history.back().lr, kHigh * r.lr_scale * 0.5 * (1 + std::cos(M_PI * 11.0 / 12.0)), 1e-9);
  // Here the second epoch blew up at 10 and again, from its start, at 3:
  // its start (finite weights from a first epoch at 10) was ruined, so the
  // stage began again from its first weights, at 0.9.
  EXPECT_NE(r.warning.find("stepped back to the epoch's start"), std::string::npos) << r.warning;
  EXPECT_NE(r.warning.find("stepped back to the stage's start"), std::string::npos) << r.warning;
  try {
    train(kHigh * 1000, 1);
    ADD_FAILURE() << "a loss still non-finite past the retries must fail";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("after 1 steps back"), std::string::npos) << e.what();
  }
}

// The class compares two neighbouring values. Every searchable layer at k=3,
// d=15 combines only inputs 15 apart, so that network cannot compare them
// and stays at chance, while the plain backbone learns it. The guard trains
// the backbone first and scores it halfway; the searched network, not ahead
// of it at its own halfway point, is stopped there and the backbone kept.
// Length-48 sequences of noise whose class says whether the value at `first`
// beats the one at `second`, normalised (train 512 rows, valid 400); and
// search options whose only candidate is k=3, d=15 (the search can only
// choose it), one grid point, a small network.
dash::task::Dataset compare_two_positions(uint64_t seed, int64_t first, int64_t second) {
  torch::manual_seed(seed);
  auto make = [&](int64_t rows) {
    at::Tensor x = torch::randn({rows, 1, 48}) * 0.3;
    at::Tensor a = torch::randn({rows}), b = torch::randn({rows});
    x.select(2, first).copy_(3 * a.unsqueeze(1));
    x.select(2, second).copy_(3 * b.unsqueeze(1));
    return dash::task::Split{x, (a > b).to(torch::kLong)};
  };
  dash::task::Dataset raw;
  raw.train = make(512);
  raw.valid = make(400);
  return dash::search::prepare(raw, nullptr);
}

dash::search::SearchOptions only_dilation_15() {
  dash::search::SearchOptions so;
  so.space = {{3}, {15}};
  so.epochs = 1;
  so.batch_size = 32;
  so.width = 4;
  so.max_cost_ratio = 0;
  so.cost_model = dash::search::CostModelKind::kMacs;
  so.grid = {{0.1, 0.9, 5e-4, 0.0}};
  return so;
}

TEST(Search, TheGuardStopsASearchedNetworkNotAheadHalfway) {
  const auto spec = binary_1d_spec();
  const auto data = compare_two_positions(21, 20, 21);
  dash::search::SearchOptions so = only_dilation_15();
  so.hpo_epochs = 10;  // 160 steps; halfway at 80
  auto out = dash::search::run_search(spec, data, so, nullptr);
  const auto& g = out.report["guard"];
  ASSERT_TRUE(g.contains("midpoint")) << g.dump();
  const auto& trials = out.report["hpo"]["trials"];
  ASSERT_EQ(trials.size(), 2u);
  EXPECT_EQ(trials[0]["network"], "backbone");
  EXPECT_EQ(trials[0]["steps"].get<int64_t>(), 160);
  EXPECT_EQ(trials[1]["network"], "searched");
  // The rule applied to the numbers the report gives.
  const double adv = g["midpoint"]["advantage"].get<double>();
  const double se = g["midpoint"]["advantage_stderr"].get<double>();
  EXPECT_LT(adv, -so.guard_stderrs * se) << g.dump();  // the backbone had learnt, the other could not
  EXPECT_FALSE(adv > so.guard_stderrs * se);  // so not ahead: stopped
  EXPECT_EQ(g["midpoint"]["stopped"], true);
  EXPECT_EQ(trials[1]["steps"].get<int64_t>(), 80);
  EXPECT_EQ(trials[1]["stopped_at_midpoint"], true);
  EXPECT_EQ(g["chosen"], "backbone");
  EXPECT_NE(g["why"].get<std::string>().find("halfway"), std::string::npos) << g.dump();
  EXPECT_EQ(out.architecture.layers, Architecture::plain("resnet1d-1", 9).layers);
  EXPECT_EQ(out.report["hpo"]["trained_trial"]["network"], "backbone");
}

// A keep is looked at again when its gain is below guard_confirm_below x
// guard_min_gain (forced here): both networks go on from their trials for as
// long again, the searched one passes again, and the retrain starts from the
// second look's network (trained twice as long), not the first trial's. Here
// only a dilated layer (k=3, d=15) can compare two positions 30 apart, so the
// searched network wins clearly both times.
TEST(Search, ACloseKeepIsLookedAtAgain) {
  const auto spec = binary_1d_spec();
  const auto data = compare_two_positions(22, 8, 38);
  dash::search::SearchOptions so = only_dilation_15();
  so.hpo_epochs = 6;  // 96 steps a trial
  so.guard_confirm_below = 1e9;  // every keep is close
  auto out = dash::search::run_search(spec, data, so, nullptr);
  const auto& g = out.report["guard"];
  ASSERT_TRUE(g.contains("second_look")) << g.dump();
  const auto& look = g["second_look"];
  EXPECT_EQ(look["kept"], true) << g.dump();
  EXPECT_GT(look["advantage"].get<double>(), so.guard_stderrs * look["advantage_stderr"].get<double>());
  EXPECT_EQ(g["chosen"], "searched");
  const auto& trials = out.report["hpo"]["trials"];
  ASSERT_EQ(trials.size(), 4u) << trials.dump();
  for (size_t i : {2u, 3u}) {
    EXPECT_EQ(trials[i]["second_look"], true);
    EXPECT_EQ(trials[i]["steps"].get<int64_t>(), 96);
  }
  // Trained on from the first trial: not behind where that ended.
  EXPECT_GE(look["searched_valid"].get<double>(), trials[1]["valid_metric"].get<double>() - 0.02) << g.dump();
  const auto& trained = out.report["hpo"]["trained_trial"];
  EXPECT_EQ(trained["network"], "searched");
  EXPECT_EQ(trained["second_look"], true) << trained.dump();
  // The network handed on is the one the second look scored.
  ASSERT_TRUE(out.trained);
  out.trained->eval();
  EXPECT_NEAR(dash::train::evaluate(out.trained, spec, data.valid, 64).metric,
              look["searched_valid"].get<double>(), 1e-9);

  so.guard_confirm_below = 0;  // never
  out = dash::search::run_search(spec, data, so, nullptr);
  EXPECT_FALSE(out.report["guard"].contains("second_look"));
  EXPECT_EQ(out.report["hpo"]["trials"].size(), 2u);
}

TEST(Search, ABudgetTooShortForTheBatchHalvesIt) {
  using dash::search::search_batch_for;
  // 1 s per step at batch 64, 40 steps wanted.
  EXPECT_EQ(search_batch_for(100, 1.0, 64, 40), 64);  // 40 s fit
  EXPECT_EQ(search_batch_for(30, 1.0, 64, 40), 32);   // 40 s do not, 20 s do
  EXPECT_EQ(search_batch_for(6, 1.0, 64, 40), 8);     // down to the smallest batch
  EXPECT_EQ(search_batch_for(4, 1.0, 64, 40), 0);     // not even that: no search
  EXPECT_EQ(search_batch_for(18, 1.0, 48, 40), 12);   // 48, 24, 12; never 6
  EXPECT_EQ(search_batch_for(9, 1.0, 48, 40), 0);
  // A user's batch below the smallest is kept where it fits, never halved.
  EXPECT_EQ(search_batch_for(5, 0.1, 4, 40), 4);
  EXPECT_EQ(search_batch_for(3, 0.1, 4, 40), 0);
}

TEST(Training, WarmupKeepsTheLogitsAndTheStoppingRuleEndsTheSearch) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(256, 9);
  dash::search::SearchOptions so;
  so.space = {{3, 7}, {1, 4}};
  so.epochs = 20;  // 160 steps at most
  so.batch_size = 32;
  so.hpo = false;
  so.guard = false;
  so.cost_model = dash::search::CostModelKind::kMacs;
  // Only weight steps: the logits stay where they started, and the plain
  // backbone is kept rather than their random argmax.
  so.warmup_steps = 1000;
  so.epochs = 2;
  auto idle = dash::search::run_search(spec, data, so, nullptr);
  EXPECT_LT(idle.report["search"]["probabilities"][0][0].get<double>() - 0.25, 1e-2);
  EXPECT_TRUE(idle.report["search"].contains("undecided"));
  EXPECT_EQ(idle.architecture.layers, Architecture::plain("resnet1d-1", 9).layers);
  // With the rule on, every layer freezes and the search ends before its epochs.
  so.warmup_steps = 4;
  so.patience = 5;
  so.margin = 0.05;
  so.epochs = 20;
  auto out = dash::search::run_search(spec, data, so, nullptr);
  EXPECT_TRUE(out.report["search"]["stopped_early"].get<bool>());
  EXPECT_LT(out.report["search"]["steps_done"].get<int64_t>(), 160);
  for (const auto& at : out.report["search"]["frozen_at_step"]) EXPECT_GT(at.get<int64_t>(), 4);
  // A frozen layer's probabilities are one-hot at its choice.
  const auto& p0 = out.report["search"]["probabilities"][0];
  double top = 0;
  for (const auto& v : p0) top = std::max(top, v.get<double>());
  EXPECT_EQ(top, 1.0);
  // A margin no layer can reach: none is frozen, not even as a straggler
  // (that needs three quarters of the layers frozen first), and the search
  // runs its epochs.
  so.margin = 2.0;
  auto tied = dash::search::run_search(spec, data, so, nullptr);
  EXPECT_FALSE(tied.report["search"]["stopped_early"].get<bool>());
  EXPECT_EQ(tied.report["search"]["steps_done"].get<int64_t>(), 160);
  for (const auto& at : tied.report["search"]["frozen_at_step"]) EXPECT_EQ(at.get<int64_t>(), -1);
  EXPECT_TRUE(tied.report["search"]["frozen_short_of_margin"].empty());
}

// The supernet starts without the candidates that compute what an earlier
// one does at the layer's size: their probability is 0 from the first step,
// and the rest share it evenly.
TEST(Training, TheSearchLeavesOutCandidatesThatCroppingMakesAlike) {
  const auto spec = dash::task::TaskSpec::from_json(
      {{"kind", "classification"}, {"input_shape", {1, 8, 8}}, {"num_classes", 3}});
  torch::manual_seed(5);
  const dash::task::Dataset data{{torch::randn({32, 1, 8, 8}), torch::randint(3, {32}, torch::kLong)}, {}, {}};
  dash::search::SearchOptions so;
  so.epochs = 1;
  so.batch_size = 16;
  so.hpo = false;
  so.guard = false;
  so.warmup_steps = 1000;  // the logits stay where they started
  so.cost_model = dash::search::CostModelKind::kMacs;
  const auto out = dash::search::run_search(spec, data, so, nullptr);
  const CandidateSpace space = dash::search::default_space(2);
  const auto& layers = out.report["costs"]["layers"];
  const auto& left_out = out.report["search"]["identical_left_out"];
  const auto& start = out.report["search"]["trace"][0]["probabilities"];
  ASSERT_EQ(left_out.size(), layers.size());
  int64_t total = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto first = dash::nn::same_function_as(space, layers[i]["spatial"].get<std::vector<int64_t>>());
    std::vector<int64_t> expected, got;
    for (int64_t j = 0; j < space.size(); ++j) {
      if (first[static_cast<size_t>(j)] != j) expected.push_back(j);
    }
    for (const auto& e : left_out[i]) {
      got.push_back(e["candidate"].get<int64_t>());
      EXPECT_EQ(e["same_as"].get<int64_t>(), first[static_cast<size_t>(got.back())]);
    }
    EXPECT_EQ(got, expected) << "layer " << i;
    const double share = 1.0 / static_cast<double>(space.size() - static_cast<int64_t>(expected.size()));
    for (int64_t j = 0; j < space.size(); ++j) {
      const bool out_j = std::find(expected.begin(), expected.end(), j) != expected.end();
      EXPECT_NEAR(start[i][static_cast<size_t>(j)].get<double>(), out_j ? 0.0 : share, 1e-2 * share)
          << "layer " << i << " candidate " << j;
    }
    total += static_cast<int64_t>(expected.size());
  }
  // WRN-16-1 on 8x8 sees 8x8, 4x4 and 2x2 maps: most candidates are copies.
  EXPECT_GT(total, 6 * static_cast<int64_t>(layers.size()));

  // A decided search held to the backbone's cost: the cost limit moves
  // layers to cheaper candidates still in the mixture, never to a copy that
  // left it (whose logit stayed where it started).
  so.warmup_steps = 2;
  so.epochs = 4;
  so.max_cost_ratio = 1.0;
  const auto held = dash::search::run_search(spec, data, so, nullptr);
  ASSERT_FALSE(held.report["search"].contains("undecided")) << held.report["search"].dump();
  EXPECT_FALSE(held.report["cost_limit"]["moves"].empty()) << held.report["cost_limit"].dump();
  const auto& held_out = held.report["search"]["identical_left_out"];
  for (size_t i = 0; i < held.architecture.layers.size(); ++i) {
    const auto& c = held.architecture.layers[i];
    for (const auto& e : held_out[i]) {
      const int64_t j = e["candidate"].get<int64_t>();
      EXPECT_FALSE(space.kernel_size(j) == c.kernel_size && space.dilation(j) == c.dilation)
          << "layer " << i << " ended at k" << c.kernel_size << "d" << c.dilation << ", a copy left out";
    }
  }
}

TEST(Training, AStragglerIsFrozenShortOfTheMarginOnlyNearTheSearchsEnd) {
  using dash::search::kStragglerHolds;
  using dash::search::layer_settles;
  const int64_t patience = 10;
  const double margin = 0.05;
  // The margin rule, however many layers are frozen.
  EXPECT_TRUE(layer_settles(patience, margin, 0, 13, patience, margin));
  EXPECT_FALSE(layer_settles(patience - 1, 0.9, 12, 13, patience, margin));
  EXPECT_FALSE(layer_settles(patience, margin - 0.01, 0, 13, patience, margin));
  // A near-tie held kStragglerHolds x patience steps: frozen once at least
  // three quarters of the layers are (10 of 13, 3 of 4), not before (9 of 13).
  const int64_t long_hold = kStragglerHolds * patience;
  EXPECT_FALSE(layer_settles(long_hold, 0.01, 9, 13, patience, margin));
  EXPECT_TRUE(layer_settles(long_hold, 0.01, 10, 13, patience, margin));
  EXPECT_TRUE(layer_settles(long_hold, 0.0, 3, 4, patience, margin));
  EXPECT_FALSE(layer_settles(long_hold - 1, 0.01, 12, 13, patience, margin));
}

TEST(Training, TheChosenNetworkRespectsTheCostLimit) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(256, 10);
  dash::search::SearchOptions so;
  so.space = {{3, 7, 11}, {1, 4}};
  so.epochs = 3;
  so.batch_size = 32;
  so.hpo = false;
  so.guard = false;
  so.warmup_steps = 2;
  so.cost_model = dash::search::CostModelKind::kMacs;
  so.cost_weight = 0;  // let the data alone pick, then limit the cost
  so.field_penalty = 0;
  so.max_cost_ratio = 1.2;
  auto out = dash::search::run_search(spec, data, so, nullptr);
  const auto& limit = out.report["cost_limit"];
  EXPECT_LE(limit["ratio_after"].get<double>(), 1.2 + 1e-9);
  // Reported sizes: the searched network's MACs are those the limit allowed.
  const double searched = out.report["networks"]["searched"]["macs_per_sample"].get<double>();
  const double plain = out.report["networks"]["backbone"]["macs_per_sample"].get<double>();
  EXPECT_LE(searched, 1.2 * plain * (1 + 1e-9));
  EXPECT_GT(out.report["networks"]["backbone"]["params"].get<int64_t>(), 0);
}

// Where timing every candidate at the step's batch would overrun the cost
// model's time, the candidates are timed at fewer samples and scaled, rather
// than replaced by MACs (Darcy's 85x85 maps fell back to MACs in every run).
// Networks timed in turns: one median per network, and a network with 9x9
// kernels in every searchable layer (~9x the convolutions' work) is timed as
// the slower one.
TEST(Costs, TrainStepsAreTimedInTurns) {
  const auto spec = dash::task::TaskSpec::from_json(
      {{"kind", "classification"}, {"input_shape", {1, 24, 24}}, {"num_classes", 3}});
  const BackboneSpec b = dash::nn::backbone_for(spec, 10, 1, 0.0, 0);
  Architecture plain = Architecture::plain(b.name(), b.searchable_layers());
  Architecture wide = plain;
  for (auto& l : wide.layers) l = {9, 1};
  const auto ms = dash::search::train_step_ms(b, {plain, wide}, torch::randn({16, 1, 24, 24}), 30);
  ASSERT_EQ(ms.size(), 2u);
  EXPECT_GT(ms[0], 0);
  EXPECT_GT(ms[1], 1.5 * ms[0]) << ms[0] << " " << ms[1];
  // A limit below one round still times one.
  EXPECT_EQ(dash::search::train_step_ms(b, {plain}, torch::randn({4, 1, 24, 24}), 0).size(), 1u);
}

// In a timed grid every trial of the plain backbone is planned at the same
// number of steps (report.hpo.backbone_trial_steps, on the coarse series),
// and trains them all when the budget has room.
TEST(Search, TimedTrialsOfTheBackboneArePlannedAtTheSameSteps) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(128, 5);
  dash::search::SearchOptions so;
  so.arch_search = false;
  so.batch_size = 32;
  so.time_budget_s = 6;
  so.grid = {{0.1, 0.9, 5e-4, 0.0}, {0.1, 0.9, 5e-4, 0.0}};  // equal points: the second cannot win, both run
  auto out = dash::search::run_search(spec, data, so, nullptr);
  const auto& hpo = out.report["hpo"];
  const int64_t n = hpo["backbone_trial_steps"].get<int64_t>();
  EXPECT_EQ(n, dash::search::round_down_coarse(static_cast<double>(n)));
  ASSERT_EQ(hpo["trials"].size(), 2u) << hpo.dump();
  for (const auto& t : hpo["trials"]) {
    EXPECT_EQ(t["planned_steps"].get<int64_t>(), n) << t.dump();
    EXPECT_LE(t["steps"].get<int64_t>(), n);
  }
  // The same seed, hyperparameters and steps: the same trial, to the bit
  // (where the budget let both finish their plan).
  if (hpo["trials"][0]["steps"].get<int64_t>() == n && hpo["trials"][1]["steps"].get<int64_t>() == n) {
    EXPECT_EQ(hpo["trials"][0]["valid_metric"], hpo["trials"][1]["valid_metric"]);
  }
}

TEST(Costs, ATightLimitTimesCandidatesAtFewerSamplesInsteadOfCountingMacs) {
  BackboneSpec b;
  b.kind = BackboneKind::kWideResNet;
  b.depth = 10;
  b.in_channels = 1;
  b.spatial = {32, 32};  // large enough that fewer samples take less time
  b.num_outputs = 2;
  const CandidateSpace space{{3, 5, 7}, {1, 2}};
  torch::manual_seed(0);
  const at::Tensor sample = torch::randn({64, 1, 32, 32});
  using dash::search::CostModelKind;
  const auto full = dash::search::measure_costs(b, space, sample, CostModelKind::kMeasured);
  ASSERT_EQ(full.kind, CostModelKind::kMeasured);
  EXPECT_EQ(full.timing_batch, 64);
  EXPECT_GT(full.timing_scale, 0);
  EXPECT_LE(full.timing_scale, 1);
  // The backbone's own timings (a probe and three steps), and half the
  // candidates' time.
  const double backbone_s = 4.0 * full.backbone_step_ms / 1000.0;
  const double limit = backbone_s + std::max(0.0, full.seconds - backbone_s) / 2.0;
  const auto tight = dash::search::measure_costs(b, space, sample, CostModelKind::kMeasured, limit);
  std::printf("limit %.2f s (unlimited took %.2f s): %s, timing batch %lld %s\n", limit, full.seconds,
              tight.kind == CostModelKind::kMeasured ? "measured" : "macs", static_cast<long long>(tight.timing_batch),
              tight.fallback.c_str());
  // Fewer samples were tried before MACs were: measured at under 64, or
  // MACs only after trying fewer (a fixed cost per call dominates at these
  // small sizes, so fewer samples may not save enough).
  if (tight.kind == CostModelKind::kMeasured) {
    EXPECT_EQ(tight.fallback, "");
    EXPECT_GE(tight.timing_batch, 16);  // fewer samples time the cost of a call, not the work
    EXPECT_LT(tight.timing_batch, 64);
    EXPECT_EQ(tight.to_json()["timing_batch"], tight.timing_batch);
    ASSERT_EQ(tight.layers.size(), full.layers.size());
    for (const auto& layer : tight.layers) {
      ASSERT_EQ(layer.ms.size(), static_cast<size_t>(space.size()));
      for (double ms : layer.ms) EXPECT_GT(ms, 0);
    }
    // Scaled from fewer samples, the plain layers still fit in the step they
    // are part of, so every network's estimated step is positive.
    EXPECT_GT(tight.timing_scale, 0);
    EXPECT_LE(tight.timing_scale, 1);
    double plain_sum = 0;
    for (size_t l = 0; l < tight.layers.size(); ++l) {
      plain_sum += tight.layers[l].ms[static_cast<size_t>(tight.plain_index(l))];
    }
    EXPECT_LE(plain_sum, tight.backbone_step_ms * (1 + 1e-9));
    std::vector<int64_t> cheapest, dearest;
    for (const auto& layer : tight.layers) {
      cheapest.push_back(std::min_element(layer.ms.begin(), layer.ms.end()) - layer.ms.begin());
      dearest.push_back(std::max_element(layer.ms.begin(), layer.ms.end()) - layer.ms.begin());
    }
    EXPECT_GT(tight.step_ms(cheapest), 0);
    EXPECT_GE(tight.step_ms(dearest), tight.step_ms(cheapest));
  } else {
    EXPECT_NE(tight.fallback.find("even at"), std::string::npos) << tight.fallback;
    EXPECT_EQ(tight.fallback.find("even at 64 of 64"), std::string::npos) << tight.fallback;
  }
  // No time at all: MACs, saying why.
  const auto none = dash::search::measure_costs(b, space, sample, CostModelKind::kMeasured, 1e-6);
  EXPECT_EQ(none.kind, CostModelKind::kMacs);
  EXPECT_NE(none.fallback, "");
  EXPECT_EQ(none.timing_batch, 0);
}

TEST(Training, ResumeFromACheckpointEqualsAnUninterruptedRun) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(96, 6);
  BackboneSpec bspec = dash::nn::backbone_for(spec, 16, 1, 0.0);
  LayerSetup fixed;
  fixed.architecture = Architecture::plain(bspec.name(), bspec.searchable_layers());
  const std::string ckpt = ::testing::TempDir() + "dash_resume_test.ckpt";
  std::remove(ckpt.c_str());

  dash::train::StageOptions opt;
  opt.epochs = 3;
  opt.batch_size = 32;
  opt.seed = 3;
  opt.keep_best = false;
  torch::manual_seed(1);
  Backbone straight(bspec, fixed);
  auto full = dash::train::run_stage(straight, spec, data, opt, nullptr);

  torch::manual_seed(1);
  Backbone first(bspec, fixed);
  dash::train::StageOptions part = opt;
  part.epochs = 3;
  part.checkpoint = ckpt;
  // Stop after the first epoch by cancelling from the progress callback.
  EXPECT_THROW(dash::train::run_stage(first, spec, data, part, [](const dash::train::Progress& p) {
                 return !(p.epoch == 2 && p.step == 1);
               }),
               dash::train::Cancelled);
  torch::manual_seed(99);  // a fresh process would have another RNG state
  Backbone resumed(bspec, fixed);
  part.resume = true;
  auto rest = dash::train::run_stage(resumed, spec, data, part, nullptr);
  ASSERT_EQ(rest.history.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_DOUBLE_EQ(rest.history[i].train_loss, full.history[i].train_loss) << "epoch " << i + 1;
  }
  auto p1 = straight->parameters();
  auto p2 = resumed->parameters();
  for (size_t i = 0; i < p1.size(); ++i) EXPECT_TRUE(torch::equal(p1[i], p2[i])) << "parameter " << i;
  std::remove(ckpt.c_str());
}

// Every augmented sample must be its input moved by whole positions within
// the bound (zeros where the move brought the edge in), possibly mirrored:
// checked by trying every allowed move, pixel by pixel.
TEST(Augment, EachSampleIsItsInputShiftedWithinTheBoundOrMirrored) {
  torch::manual_seed(5);
  const at::Tensor x = torch::rand({40, 2, 24, 13}) + 0.5;  // no zeros inside
  const auto aug = dash::train::Augment::named("shift_flip");
  at::Generator gen = at::detail::createCPUGenerator(11);
  const at::Tensor y = dash::train::augment_batch(x, aug, gen);
  ASSERT_EQ(y.sizes(), x.sizes());
  const int64_t mh = 2, mw = 1;  // floor(24 / 12), floor(13 / 12)
  auto moved = [&](const at::Tensor& s, int64_t dh, int64_t dw) {
    at::Tensor out = torch::zeros_like(s);
    for (int64_t c = 0; c < s.size(0); ++c) {
      for (int64_t h = 0; h < s.size(1); ++h) {
        for (int64_t w = 0; w < s.size(2); ++w) {
          const int64_t sh = h - dh, sw = w - dw;
          if (sh >= 0 && sh < s.size(1) && sw >= 0 && sw < s.size(2)) out[c][h][w] = s[c][sh][sw];
        }
      }
    }
    return out;
  };
  int mirrored = 0, shifted = 0;
  for (int64_t b = 0; b < x.size(0); ++b) {
    bool found = false;
    for (bool flip : {false, true}) {
      const at::Tensor src = flip ? x[b].flip({-1}) : x[b];
      for (int64_t dh = -mh; dh <= mh && !found; ++dh) {
        for (int64_t dw = -mw; dw <= mw && !found; ++dw) {
          if (torch::equal(moved(src, dh, dw), y[b])) {
            found = true;
            mirrored += flip;
            shifted += (dh != 0 || dw != 0);
          }
        }
      }
    }
    EXPECT_TRUE(found) << "sample " << b << " is no allowed move of its input";
  }
  // 40 draws: both kinds occur (each misses with probability < 1e-6).
  EXPECT_GT(mirrored, 0);
  EXPECT_LT(mirrored, 40);
  EXPECT_GT(shifted, 0);
  // "none" hands the batch back untouched; a 1D batch shifts along its length.
  EXPECT_TRUE(torch::equal(dash::train::augment_batch(x, dash::train::Augment::named("none"), gen), x));
  const at::Tensor seq = torch::rand({8, 1, 120}) + 0.5;
  const at::Tensor s = dash::train::augment_batch(seq, dash::train::Augment::named("shift"), gen);
  const at::Tensor zeros = s.eq(0).sum({1, 2});  // the move's length, at most floor(120 / 12)
  EXPECT_LE(zeros.max().item<int64_t>(), 10);
  EXPECT_GT(zeros.sum().item<int64_t>(), 0);
}

TEST(Augment, IsRefusedWhereTheTargetWouldNotMoveWithTheInput) {
  auto spec = dash::task::TaskSpec::from_json(
      {{"kind", "dense"}, {"input_shape", {1, 12, 12}}, {"num_outputs", 1}});
  dash::task::Dataset data;
  const at::Tensor x = torch::randn({8, 1, 12, 12});
  data.train = {x, x};
  dash::search::RetrainOptions ro;
  ro.epochs = 1;
  ro.augment = dash::train::Augment::named("shift");
  const Architecture plain = Architecture::plain(dash::nn::backbone_for(spec, 16, 1, 0).name(), 13);
  try {
    dash::search::run_retrain(spec, data, plain, {0.01, 0.9, 5e-4, 0.0}, ro, nullptr);
    FAIL() << "a dense task accepted augment shift";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("classification and multilabel tasks only"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(dash::train::Augment::named("rotate"), std::invalid_argument);
}

// A stage that its after_step ended (the search's stopping rule) and is
// resumed from its checkpoint stays ended: no step more, the same weights.
TEST(Training, AStageThatStoppedEarlyStaysStoppedWhenResumed) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(96, 6);
  BackboneSpec bspec = dash::nn::backbone_for(spec, 16, 1, 0.0);
  LayerSetup fixed;
  fixed.architecture = Architecture::plain(bspec.name(), bspec.searchable_layers());
  const std::string ckpt = ::testing::TempDir() + "dash_stopped_test.ckpt";
  std::remove(ckpt.c_str());
  dash::train::StageOptions opt;
  opt.epochs = 4;
  opt.batch_size = 32;
  opt.seed = 3;
  opt.keep_best = false;
  opt.checkpoint = ckpt;
  opt.after_step = [](int64_t step) { return step == 5; };  // in the second epoch (3 steps each)
  torch::manual_seed(1);
  Backbone first(bspec, fixed);
  const auto a = dash::train::run_stage(first, spec, data, opt, nullptr);
  ASSERT_TRUE(a.stopped_early);
  ASSERT_EQ(a.steps_done, 5);
  torch::manual_seed(99);
  Backbone resumed(bspec, fixed);
  opt.resume = true;
  const auto b = dash::train::run_stage(resumed, spec, data, opt, nullptr);
  EXPECT_TRUE(b.stopped_early);
  EXPECT_EQ(b.steps_done, 5);
  EXPECT_EQ(b.epochs_done, a.epochs_done);
  auto p1 = first->parameters();
  auto p2 = resumed->parameters();
  for (size_t i = 0; i < p1.size(); ++i) EXPECT_TRUE(torch::equal(p1[i], p2[i])) << "parameter " << i;
  std::remove(ckpt.c_str());
}

TEST(Training, FoldMetricsScoreContiguousNearEqualParts) {
  torch::manual_seed(5);
  const at::Tensor out = torch::randn({25, 3});
  const at::Tensor y = torch::randint(3, {25}, torch::kLong);
  const auto folds = dash::train::fold_metrics(dash::task::MetricKind::kAccuracy, out, y, 10);
  ASSERT_EQ(folds.size(), 10u);
  const auto pred = out.argmax(1);
  for (int f = 0; f < 10; ++f) {
    // Rows [25f/10, 25(f+1)/10): sizes 2 or 3, every row in one fold.
    const int start = 25 * f / 10, end = 25 * (f + 1) / 10;
    int right = 0;
    for (int i = start; i < end; ++i) right += pred[i].item<int64_t>() == y[i].item<int64_t>();
    EXPECT_DOUBLE_EQ(folds[f], static_cast<double>(right) / (end - start)) << "fold " << f;
  }
  // Fewer rows than folds: a fold per row.
  EXPECT_EQ(dash::train::fold_metrics(dash::task::MetricKind::kAccuracy, out.narrow(0, 0, 4), y.narrow(0, 0, 4), 10)
                .size(),
            4u);
}

TEST(Training, KeepBestNeedsAClearLeadOverTheLastEpoch) {
  using dash::train::FoldScores;
  using dash::task::MetricKind;
  const std::vector<double> last_folds{0.90, 0.92, 0.88, 0.91, 0.89, 0.93, 0.90, 0.87, 0.92, 0.91};
  const FoldScores last{30, 1000, last_folds};
  auto shifted = [&](std::vector<double> by) {
    std::vector<double> f = last_folds;
    for (size_t i = 0; i < f.size(); ++i) f[i] += by[i % by.size()];
    return f;
  };
  // A small lead that flips sign between folds: noise, the last weights.
  const FoldScores noisy{22, 1000, shifted({0.02, -0.01, 0.01, -0.02, 0.015})};
  const auto keep_last = dash::train::choose_kept(MetricKind::kAccuracy, noisy, last, 2.0);
  EXPECT_FALSE(keep_last.best);
  EXPECT_NE(keep_last.why.find("within 2 standard errors"), std::string::npos) << keep_last.why;
  // A lead in every fold: the best epoch.
  const FoldScores clear{22, 1000, shifted({0.03, 0.04, 0.035})};
  EXPECT_TRUE(dash::train::choose_kept(MetricKind::kAccuracy, clear, last, 2.0).best);
  // Lower is better: the same shifts mean the reverse.
  EXPECT_FALSE(dash::train::choose_kept(MetricKind::kRelativeL2, clear, last, 2.0).best);
  const FoldScores lower{22, 1000, shifted({-0.03, -0.04, -0.035})};
  EXPECT_TRUE(dash::train::choose_kept(MetricKind::kRelativeL2, lower, last, 2.0).best);
  // The last epoch itself was the best.
  EXPECT_FALSE(dash::train::choose_kept(MetricKind::kAccuracy, FoldScores{30, 1000, last_folds}, last, 2.0).best);
  // Not comparable (other rows scored, no folds): the best, saying why.
  const auto rows = dash::train::choose_kept(MetricKind::kAccuracy, FoldScores{22, 900, clear.folds}, last, 2.0);
  EXPECT_TRUE(rows.best);
  EXPECT_NE(rows.why.find("different rows"), std::string::npos) << rows.why;
  EXPECT_TRUE(dash::train::choose_kept(MetricKind::kAccuracy, FoldScores{22, 0, {}}, last, 2.0).best);
}

// Epochs of equal quality (every fold's score the same mean plus noise):
// the best of many beats the last by chance. Simulated 400 times for 30
// and 700 epochs of 10 folds, the best epoch (by mean) against the last
// with choose_kept: a bar of 2 standard errors keeps the best in a quarter
// and more than half of the stages; the bar grown by chance_lead_stderrs
// keeps it in under a fifth of both. A real lead (the last epoch worse by
// 5 noise widths in every fold) is kept all the same.
TEST(Training, TheBestOfManyEqualEpochsNeedsALeadBeyondChance) {
  using dash::train::chance_lead_stderrs;
  EXPECT_EQ(chance_lead_stderrs(1), 0.0);
  EXPECT_NEAR(chance_lead_stderrs(700), std::sqrt(2 * std::log(700.0)), 1e-12);
  std::mt19937 rng(11);
  std::normal_distribution<double> noise(0.0, 0.01);
  auto share_keeping_best = [&](int64_t epochs, double bar, double last_drop) {
    int kept = 0;
    constexpr int kStages = 400;
    for (int stage = 0; stage < kStages; ++stage) {
      std::vector<std::vector<double>> folds(static_cast<size_t>(epochs), std::vector<double>(10));
      for (auto& e : folds)
        for (auto& f : e) f = 0.9 + noise(rng);
      for (auto& f : folds.back()) f -= last_drop;
      size_t best = 0;
      auto mean = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); };
      for (size_t e = 1; e < folds.size(); ++e)
        if (mean(folds[e]) > mean(folds[best])) best = e;
      const dash::train::FoldScores b{static_cast<int64_t>(best + 1), 300, folds[best]};
      const dash::train::FoldScores l{epochs, 300, folds.back()};
      kept += dash::train::choose_kept(dash::task::MetricKind::kAccuracy, b, l, bar).best;
    }
    return static_cast<double>(kept) / kStages;
  };
  for (const int64_t epochs : {30, 700}) {
    const double plain = share_keeping_best(epochs, 2.0, 0.0);
    const double grown = share_keeping_best(epochs, std::max(2.0, chance_lead_stderrs(epochs)), 0.0);
    EXPECT_GT(plain, epochs == 30 ? 0.2 : 0.5) << epochs << " epochs";
    EXPECT_LT(grown, 0.2) << epochs << " epochs";
    EXPECT_EQ(share_keeping_best(epochs, std::max(2.0, chance_lead_stderrs(epochs)), 0.05), 1.0) << epochs;
  }
}

// End to end: a last epoch that wrecks the network (its weights scaled up
// step by step) hands the stage back the best epoch's weights; without the
// wrecking the stage ends with what it says it kept. Either way the network
// returned validates at kept_valid.
TEST(Training, AStageKeepsTheLastWeightsUnlessTheyGotClearlyWorse) {
  const auto spec = binary_1d_spec();
  // The class shifts the whole signal: a plain network learns it in an epoch
  // or two, not perfectly.
  torch::manual_seed(6);
  auto make = [](int64_t rows) {
    at::Tensor y = torch::randint(2, {rows}, torch::kLong);
    at::Tensor x = torch::randn({rows, 1, 48}) + 0.4 * (2 * y.to(torch::kFloat) - 1).view({rows, 1, 1});
    return dash::task::Split{x, y};
  };
  const dash::task::Dataset data{make(256), make(200), make(10)};
  BackboneSpec bspec = dash::nn::backbone_for(spec, 16, 1, 0.0);
  LayerSetup fixed;
  fixed.architecture = Architecture::plain(bspec.name(), bspec.searchable_layers());
  for (const bool wreck : {true, false}) {
    torch::manual_seed(1);
    Backbone net(bspec, fixed);
    dash::train::StageOptions opt;
    opt.epochs = 5;
    opt.batch_size = 32;
    opt.seed = 3;
    opt.hp.lr = 0.1;
    const int64_t per_epoch = dash::train::steps_per_epoch(data.train.size(), opt.batch_size, 1.0);
    if (wreck) {
      opt.after_step = [&](int64_t step) {
        if (step > 4 * per_epoch) {
          torch::NoGradGuard no_grad;
          for (auto& p : net->parameters()) p.add_(torch::randn_like(p) * 3.0);
        }
        return false;
      };
    }
    const auto r = dash::train::run_stage(net, spec, data, opt, nullptr);
    ASSERT_EQ(r.epochs_done, 5);
    EXPECT_FALSE(r.kept_why.empty());
    if (wreck) {
      EXPECT_LT(r.kept_epoch, 5) << r.kept_why;
      EXPECT_EQ(r.kept_epoch, r.best_epoch);
      // 5 epochs scored: the bar is keep_best_stderrs (2 > sqrt(2 ln 5) = 1.79).
      EXPECT_NE(r.kept_why.find("more than 2 standard errors"), std::string::npos) << r.kept_why;
    }
    const double now = dash::train::evaluate(net, spec, data.valid, 64).metric;
    EXPECT_DOUBLE_EQ(now, r.kept_valid) << r.kept_why;
    EXPECT_DOUBLE_EQ(r.kept_valid, r.history.at(static_cast<size_t>(r.kept_epoch - 1)).valid_metric);
  }
}

TEST(Training, StopsAtTheWallClockBudget) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(256, 7);
  BackboneSpec bspec = dash::nn::backbone_for(spec, 16, 1, 0.0);
  LayerSetup fixed;
  fixed.architecture = Architecture::plain(bspec.name(), bspec.searchable_layers());
  Backbone net(bspec, fixed);
  dash::train::StageOptions opt;
  opt.epochs = 1000;
  opt.batch_size = 16;
  opt.time_budget_s = 0.5;
  auto r = dash::train::run_stage(net, spec, data, opt, nullptr);
  EXPECT_TRUE(r.budget_hit);
  EXPECT_LT(r.epochs_done, 1000);
  EXPECT_LT(r.seconds, 5.0);
}

#if defined(__SANITIZE_ADDRESS__)
constexpr double kSlowdown = 3;  // ASan's instrumented steps
#else
constexpr double kSlowdown = 1;
#endif

// The promise of time_budget_s: a call returns within T + max(2 s, 5%), its
// evaluations (validation, the guard's and grid's comparisons, the final
// test) included, here on splits far too large to score whole in the time.
TEST(Budget, SearchAndRetrainReturnInTimeWhenTheirEvaluationsCannotFit) {
  const auto spec = dash::task::TaskSpec::from_json(
      {{"kind", "classification"}, {"input_shape", {1, 16, 16}}, {"num_classes", 4}});
  torch::manual_seed(8);
  auto split = [](int64_t n) {
    return dash::task::Split{torch::randn({n, 1, 16, 16}), torch::randint(4, {n}, torch::kLong)};
  };
  dash::task::Dataset data{split(512), split(4000), split(8000)};
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  const double slack = 2.0 * kSlowdown;

  dash::search::SearchOptions so;
  so.batch_size = 32;
  so.time_budget_s = 6;
  auto t0 = Clock::now();
  const auto found = dash::search::run_search(spec, data, so, nullptr);
  EXPECT_LE(since(t0), so.time_budget_s + slack) << found.report.dump();

  dash::search::RetrainOptions ro;
  ro.batch_size = 32;
  ro.time_budget_s = 3;
  t0 = Clock::now();
  const auto r = dash::search::run_retrain(spec, data, found.architecture, found.hp, ro, nullptr);
  EXPECT_LE(since(t0), ro.time_budget_s + slack) << r.report.dump();
  const int64_t scored = r.report["test_samples"].get<int64_t>();
  EXPECT_GE(scored, 32);
  EXPECT_LE(scored, 8000);
  if (scored < 8000) {  // a partial test score is said, never silent
    EXPECT_NE(r.report["retrain"]["warning"].get<std::string>().find("test samples"), std::string::npos);
  }

  // A budget that cannot hold a single step fails and says so.
  ro.time_budget_s = 1e-4;
  try {
    dash::search::run_retrain(spec, data, found.architecture, found.hp, ro, nullptr);
    FAIL() << "a retrain with a budget under one step returned";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cannot train anything"), std::string::npos) << e.what();
  }
}

TEST(Budget, AnEvaluationGivenATimeLimitScoresAnEvenlySpreadSubset) {
  const auto spec = dash::task::TaskSpec::from_json(
      {{"kind", "classification"}, {"input_shape", {1, 16, 16}}, {"num_classes", 4}});
  BackboneSpec bspec = dash::nn::backbone_for(spec, 16, 1, 0.0);
  LayerSetup fixed;
  fixed.architecture = Architecture::plain(bspec.name(), bspec.searchable_layers());
  Backbone net(bspec, fixed);
  net->eval();
  {  // a network that always answers class 0: zero weights, the head's bias favours 0
    torch::NoGradGuard no_grad;
    for (auto& p : net->parameters()) p.zero_();
    at::Tensor head_bias;
    for (const auto& kv : net->named_parameters()) {
      if (kv.value().dim() == 1 && kv.value().size(0) == 4 && kv.key().find("bias") != std::string::npos) {
        head_bias = kv.value();
      }
    }
    ASSERT_TRUE(head_bias.defined());
    head_bias[0] = 10.0;
  }
  // Sorted by class, as user data often is: the first half class 0, the rest 3.
  const int64_t n = 4000;
  const at::Tensor y = torch::cat({torch::zeros({n / 2}, torch::kLong), torch::full({n / 2}, 3, torch::kLong)});
  const dash::task::Split split{torch::randn({n, 1, 16, 16}), y};
  const auto t0 = std::chrono::steady_clock::now();
  const auto whole = dash::train::evaluate(net, spec, split, 50);
  const double whole_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(whole.samples, n);
  EXPECT_DOUBLE_EQ(whole.metric, 0.5);
  // No time for more than the first, small chunk (50 / 8 rows): half of them
  // from each class (the head alone would all be class 0: 1.0).
  const auto first = dash::train::evaluate(net, spec, split, 50, 1e-6);
  EXPECT_EQ(first.samples, 6);
  EXPECT_DOUBLE_EQ(first.metric, 0.5);
  // Time for about a third: the head alone (all class 0) would score 1.0;
  // rows spread over the split see both classes.
  const auto part = dash::train::evaluate(net, spec, split, 50, whole_s / 3);
  EXPECT_GT(part.samples, 50);
  EXPECT_GT(part.metric, 0.3);
  EXPECT_LT(part.metric, 0.75) << part.samples << " samples scored";
}

TEST(Training, ADenseMaskGetsItsPosWeightFromTheTrainSplit) {
  auto spec = dash::task::TaskSpec::from_json({{"kind", "dense"},
                                               {"input_shape", {1, 12, 12}},
                                               {"num_outputs", 1},
                                               {"loss", "bce_with_logits"}});
  dash::task::Dataset data;
  torch::manual_seed(3);
  at::Tensor x = torch::randn({16, 1, 12, 12});
  data.train = {x, x.gt(2.0).to(at::kFloat)};  // ~2% positives
  data.valid = {x.narrow(0, 0, 4), data.train.y.narrow(0, 0, 4)};
  const double expected = dash::task::balancing_pos_weight(data.train.y);
  ASSERT_GT(expected, 10.0);
  dash::search::RetrainOptions ro;
  ro.epochs = 1;
  ro.batch_size = 8;
  const Architecture plain = Architecture::plain(dash::nn::backbone_for(spec, 16, 1, 0).name(), 13);
  const dash::train::Hyperparams hp{0.01, 0.9, 5e-4, 0.0};
  auto r = dash::search::run_retrain(spec, data, plain, hp, ro, nullptr);
  ASSERT_TRUE(r.report.contains("pos_weight"));
  EXPECT_DOUBLE_EQ(r.report["pos_weight"]["value"].get<double>(), expected);
  EXPECT_EQ(r.report["metric_name"], "map");
  spec.pos_weight = 2.0;  // the user's own weight is kept and not reported as derived
  auto u = dash::search::run_retrain(spec, data, plain, hp, ro, nullptr);
  EXPECT_FALSE(u.report.contains("pos_weight"));
}

TEST(Training, ARetrainThatCannotTrainEnoughStepsSaysSo) {
  const auto spec = binary_1d_spec();
  const auto data = far_apart_task(256, 7);
  dash::search::RetrainOptions ro;
  ro.batch_size = 16;
  // Well under 300 steps on any CPU, and more than one step even under
  // ASan on a loaded machine (0.23 s was seen against a budget of 0.2).
  ro.time_budget_s = 0.6;
  const dash::train::Hyperparams hp{0.05, 0.9, 5e-4, 0.0};
  std::vector<dash::train::Progress> events;
  const dash::train::ProgressFn log = [&](const dash::train::Progress& p) {
    events.push_back(p);
    return true;
  };
  auto r = dash::search::run_retrain(spec, data, Architecture::plain("resnet1d-1", 9), hp, ro, log);
  ASSERT_TRUE(r.report["retrain"]["warning"].is_string());
  const std::string said = r.report["retrain"]["warning"].get<std::string>();
  EXPECT_NE(said.find("fewer than the 300"), std::string::npos);
  // Through progress: at most once (none if the stage stopped before its
  // first few steps), from a training step, saying what the report says.
  const auto warned = [&] {
    return std::count_if(events.begin(), events.end(), [](const auto& p) { return !p.warning.empty(); });
  };
  ASSERT_LE(warned(), 1);
  for (const auto& p : events) {
    // (the report's text may go on: a test pass the budget cut short)
    if (!p.warning.empty()) EXPECT_TRUE(p.step >= 1 && said.rfind(p.warning, 0) == 0) << p.step << " " << p.warning;
  }

  // Given a measured step time, the warning is the first event, before any step.
  events.clear();
  ro.expected_step_s = 0.03;  // 20 steps in 0.6 s
  r = dash::search::run_retrain(spec, data, Architecture::plain("resnet1d-1", 9), hp, ro, log);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].step, 0);
  EXPECT_NE(events[0].warning.find("afford about 20 steps of 30 ms"), std::string::npos) << events[0].warning;
  EXPECT_EQ(warned(), 1);
  EXPECT_EQ(r.report["retrain"]["warning"].get<std::string>().rfind(events[0].warning, 0), 0u);
}

TEST(Training, ASearchedWideFieldBeatsThePlainBackbone) {
  // The class needs two values 24 samples apart at once. The plain backbone
  // (k=3 everywhere, 9 layers) has a receptive field of 19 and cannot see both;
  // one layer at k=7, d=4 (field 25) can.
  const auto spec = binary_1d_spec();
  const auto data = dash::search::prepare(far_apart_task(1024, 8), nullptr);
  dash::search::RetrainOptions ro;
  ro.epochs = 6;
  ro.batch_size = 32;
  ro.width = 4;  // 16 channels: the reference's 4 for two classes learn too slowly for a test
  const dash::train::Hyperparams hp{0.05, 0.9, 5e-4, 0.0};
  Architecture plain = Architecture::plain("resnet1d-1", 9);
  Architecture wide = plain;
  wide.layers[0] = {7, 4};
  auto p = dash::search::run_retrain(spec, data, plain, hp, ro, nullptr);
  auto w = dash::search::run_retrain(spec, data, wide, hp, ro, nullptr);
  // Measured: plain 0.465 (chance), wide 0.738.
  EXPECT_LT(p.test_metric, 0.6);
  EXPECT_GT(w.test_metric, 0.65);
  EXPECT_GT(w.test_metric, p.test_metric + 0.1);
}

}  // namespace

TEST(Retrain, StartsFromTheWeightsTheSearchsWinningTrialTrained) {
  const auto spec = dash::task::TaskSpec::from_json(
      {{"kind", "classification"}, {"input_shape", {1, 12, 12}}, {"num_classes", 3}});
  torch::manual_seed(11);
  auto split = [](int64_t n) {
    return dash::task::Split{torch::randn({n, 1, 12, 12}), torch::randint(3, {n}, torch::kLong)};
  };
  const dash::task::Dataset data{split(64), split(32), {}};
  dash::search::SearchOptions so;
  so.arch_search = false;
  so.batch_size = 16;
  so.hpo_epochs = 1;
  so.grid = {{0.05, 0.9, 5e-4, 0.0}, {0.01, 0.9, 5e-4, 0.0}};
  const auto found = dash::search::run_search(spec, data, so, nullptr);
  ASSERT_TRUE(found.trained) << found.report.dump();
  EXPECT_TRUE(found.report["hpo"].contains("trained_trial"));
  std::vector<at::Tensor> trial;
  for (const auto& p : found.trained->parameters()) trial.push_back(p.detach().clone());

  // A retrain at a rate too small to move anything ends where it started:
  // at the trial's weights when warm, elsewhere when cold.
  const dash::train::Hyperparams still{1e-9, 0.0, 0.0, 0.0};
  dash::search::RetrainOptions ro;
  ro.epochs = 1;
  ro.batch_size = 16;
  ro.warm = found.trained;
  auto warm = dash::search::run_retrain(spec, data, found.architecture, still, ro, nullptr);
  EXPECT_EQ(warm.report["warm_start"]["used"], true) << warm.report["warm_start"].dump();
  auto params = warm.model->parameters();
  ASSERT_EQ(params.size(), trial.size());
  for (size_t i = 0; i < trial.size(); ++i) {
    EXPECT_LT((params[i].detach() - trial[i]).abs().max().item<double>(), 1e-6) << "parameter " << i;
  }
  // The trial itself is only read (several handles may share it).
  const auto after = found.trained->parameters();
  for (size_t i = 0; i < trial.size(); ++i) EXPECT_TRUE(after[i].equal(trial[i])) << "parameter " << i;

  ro.warm_start = false;
  auto cold = dash::search::run_retrain(spec, data, found.architecture, still, ro, nullptr);
  EXPECT_EQ(cold.report["warm_start"]["used"], false);
  EXPECT_EQ(cold.report["warm_start"]["why"], "warm_start is off");
  double moved = 0;
  params = cold.model->parameters();
  for (size_t i = 0; i < trial.size(); ++i) {
    moved = std::max(moved, (params[i].detach() - trial[i]).abs().max().item<double>());
  }
  EXPECT_GT(moved, 1e-3);

  // Another width than the trial's: a cold start that says why.
  ro.warm_start = true;
  ro.width = 2;
  auto wider = dash::search::run_retrain(spec, data, found.architecture, still, ro, nullptr);
  EXPECT_EQ(wider.report["warm_start"]["used"], false);
  EXPECT_NE(wider.report["warm_start"]["why"].get<std::string>().find("does not fit"), std::string::npos)
      << wider.report["warm_start"].dump();
}
