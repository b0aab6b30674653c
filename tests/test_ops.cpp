// The Fourier mixture and spectral_conv against independent references:
// LibTorch's direct convolution, the naive mixture through LibTorch autograd,
// and central finite differences in double precision.

#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

#include "ops/cpu/fftw_plans.h"
#include "ops/fast_size.h"
#include "ops/fourier_mixture.h"
#include "ops/spectral_conv.h"
#include "ops/spectral_tensors.h"
#include "support/reference.h"

namespace {

using dash::ops::CandidateSpace;
namespace ref = dash::reference;

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  const double denom = b.norm().item<double>();
  return (a - b).norm().item<double>() / (denom > 0 ? denom : 1.0);
}

at::TensorOptions f32() { return at::TensorOptions().dtype(at::kFloat); }
at::TensorOptions f64() { return at::TensorOptions().dtype(at::kDouble); }

// ---- fast sizes and geometry ------------------------------------------------

TEST(FastSize, SmallestEven7SmoothAtLeastN) {
  auto smooth = [](int64_t n) {
    for (int64_t p : {2, 3, 5, 7})
      while (n % p == 0) n /= p;
    return n == 1;
  };
  for (int64_t n = 1; n < 3000; ++n) {
    const int64_t m = dash::ops::fast_fft_size(n);
    ASSERT_GE(m, n);
    ASSERT_EQ(m % 2, 0);
    ASSERT_TRUE(smooth(m));
    for (int64_t k = n + (n % 2); k < m; k += 2) ASSERT_FALSE(smooth(k)) << n;
  }
  EXPECT_EQ(dash::ops::fast_fft_size(1270), 1280);  // the reference DASH uses 1270 = 2*5*127
  EXPECT_THROW(dash::ops::fast_fft_size(0), std::invalid_argument);
}

TEST(SpectralAxis, CropsToTapsThatReachTheInput) {
  // 32x32 image, receptive field 121 (k=9, d=15): only 63 taps can touch it,
  // and the exact linear result needs N >= 32 + 31.
  auto a = dash::ops::spectral_axis(32, 121);
  EXPECT_EQ(a.taps, 63);
  EXPECT_EQ(a.fft, 64);
  // length 1000, receptive field 271: nothing to crop, N >= 1135.
  auto b = dash::ops::spectral_axis(1000, 271);
  EXPECT_EQ(b.taps, 271);
  EXPECT_EQ(b.fft, dash::ops::fast_fft_size(1135));
}

// ---- spectral_conv against LibTorch's convolution ---------------------------

struct ConvCase {
  const char* name;
  std::vector<int64_t> x;  // [batch, in, spatial...]
  int64_t out;
  int64_t kernel;
  int64_t stride;
  bool depthwise;
};
void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

class SpectralConvVsDirect : public ::testing::TestWithParam<ConvCase> {};

TEST_P(SpectralConvVsDirect, ForwardAndGradientsMatch) {
  const ConvCase& c = GetParam();
  torch::manual_seed(7);
  const int rank = static_cast<int>(c.x.size()) - 2;
  const int64_t in = c.x[1];
  const int64_t groups = c.depthwise ? in : 1;
  std::vector<int64_t> wshape{c.out, in / groups};
  for (int axis = 0; axis < rank; ++axis) wshape.push_back(c.kernel);
  at::Tensor x = torch::randn(c.x, f32()).requires_grad_(true);
  at::Tensor w = (torch::randn(wshape, f32()) * 0.3).requires_grad_(true);
  at::Tensor b = torch::randn({c.out}, f32()).requires_grad_(true);

  at::Tensor y = dash::ops::spectral_conv(x, w, b, {c.stride}, groups);
  at::Tensor y_ref = ref::direct_conv(x, w, b, c.stride, 1, groups);
  ASSERT_EQ(y.sizes(), y_ref.sizes());
  EXPECT_LT(rel_err(y, y_ref), 1e-5) << c.name;

  at::Tensor r = torch::randn(y.sizes(), f32());
  auto g = torch::autograd::grad({(y * r).sum()}, {x, w, b});
  auto g_ref = torch::autograd::grad({(y_ref * r).sum()}, {x, w, b});
  EXPECT_LT(rel_err(g[0], g_ref[0]), 1e-4) << c.name << " dx";
  EXPECT_LT(rel_err(g[1], g_ref[1]), 1e-4) << c.name << " dw";
  EXPECT_LT(rel_err(g[2], g_ref[2]), 1e-5) << c.name << " dbias";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, SpectralConvVsDirect,
    ::testing::Values(ConvCase{"1d_full_odd", {3, 4, 21}, 5, 7, 1, false},
                      ConvCase{"1d_full_even_stride2", {2, 3, 20}, 6, 5, 2, false},
                      ConvCase{"1d_dw_stride3", {2, 6, 17}, 6, 9, 3, true},
                      ConvCase{"1d_kernel_longer_than_input", {2, 2, 5}, 3, 15, 1, false},
                      ConvCase{"1d_batch1_dw", {1, 4, 33}, 4, 31, 1, true},
                      ConvCase{"2d_full_square", {2, 3, 12, 12}, 4, 5, 1, false},
                      ConvCase{"2d_full_nonsquare_stride2", {2, 3, 9, 14}, 2, 7, 2, false},
                      ConvCase{"2d_dw_nonsquare_odd", {3, 5, 11, 8}, 5, 9, 1, true},
                      ConvCase{"2d_dw_even_stride2", {1, 4, 10, 16}, 4, 3, 2, true},
                      ConvCase{"2d_kernel_larger_than_image", {2, 2, 4, 6}, 3, 13, 1, false},
                      // Strided outputs transformed at M = N/s (s divides N): M odd
                      // (28x28, a 43-tap frame: N 50, M 25, the Fashion-MNIST mixture's),
                      // stride 3, and a kernel wider than the image.
                      ConvCase{"2d_full_stride2_folded_odd", {2, 3, 28, 28}, 4, 43, 2, false},
                      ConvCase{"1d_dw_stride3_folded", {2, 3, 26}, 3, 9, 3, true},
                      ConvCase{"2d_dw_stride2_kernel_wider_than_image", {2, 2, 7, 5}, 2, 15, 2, true}),
    [](const ::testing::TestParamInfo<ConvCase>& info) { return std::string(info.param.name); });

TEST(SpectralConv, RejectsWhatItCannotComputeWithClearErrors) {
  at::Tensor x = torch::randn({1, 4, 10});
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { dash::ops::spectral_conv(x, torch::randn({4, 4, 4}), {}, {1}, 1); })
                .find("odd"),
            std::string::npos);
  EXPECT_NE(message([&] { dash::ops::spectral_conv(x, torch::randn({4, 2, 3}), {}, {1}, 2); })
                .find("groups"),
            std::string::npos);
  EXPECT_NE(message([&] { dash::ops::spectral_conv(x, torch::randn({4, 3, 3}), {}, {1}, 1); })
                .find("input channels"),
            std::string::npos);
  EXPECT_NE(message([&] {
              dash::ops::spectral_conv(x, torch::randn({4, 4, 3}, f64()), {}, {1}, 1);
            }).find("dtype"),
            std::string::npos);
  EXPECT_NE(message([&] { dash::ops::spectral_conv(x, torch::randn({4, 4, 3}), {}, {0}, 1); })
                .find("stride"),
            std::string::npos);
}

// ---- the Fourier mixture ----------------------------------------------------

struct MixCase {
  const char* name;
  std::vector<int64_t> x;
  int64_t out;
  int64_t stride;
  bool depthwise;
  std::vector<int64_t> K, D;
};
void PrintTo(const MixCase& c, std::ostream* os) { *os << c.name; }

class FourierMixture : public ::testing::TestWithParam<MixCase> {
 protected:
  void SetUp() override {
    const MixCase& c = GetParam();
    torch::manual_seed(11);
    space_ = CandidateSpace{c.K, c.D};
    rank_ = static_cast<int>(c.x.size()) - 2;
    groups_ = c.depthwise ? c.x[1] : 1;
    x_ = torch::randn(c.x, f32()).requires_grad_(true);
    weights_ = ref::random_candidates(space_, c.out, c.x[1] / groups_, rank_, f32());
  }
  CandidateSpace space_;
  int rank_ = 1;
  int64_t groups_ = 1;
  at::Tensor x_;
  std::vector<at::Tensor> weights_;
};

TEST_P(FourierMixture, OneHotEqualsThatCandidatesDirectConvolution) {
  const MixCase& c = GetParam();
  for (int64_t j = 0; j < space_.size(); ++j) {
    at::Tensor p = torch::zeros({space_.size()}, f32());
    p[j] = 1.0;
    at::Tensor y =
        dash::ops::fourier_mixture(x_, weights_, p, space_, c10::nullopt, {c.stride}, groups_);
    at::Tensor y_ref = ref::direct_conv(x_, weights_[j], c10::nullopt, c.stride,
                                        space_.dilation(j), groups_);
    EXPECT_LT(rel_err(y, y_ref), 2e-5) << c.name << " k=" << space_.kernel_size(j)
                                       << " d=" << space_.dilation(j);
  }
}

TEST_P(FourierMixture, RandomProbabilitiesEqualWeightedSumOfCandidates) {
  const MixCase& c = GetParam();
  at::Tensor p = torch::softmax(torch::randn({space_.size()}, f32()), 0);
  at::Tensor y =
      dash::ops::fourier_mixture(x_, weights_, p, space_, c10::nullopt, {c.stride}, groups_);
  at::Tensor y_ref = ref::naive_mixture(x_, weights_, p, space_, c.stride, groups_);
  EXPECT_LT(rel_err(y, y_ref), 2e-5) << c.name;
}

TEST_P(FourierMixture, GradientsEqualNaiveMixtureThroughAutograd) {
  const MixCase& c = GetParam();
  at::Tensor alpha = torch::randn({space_.size()}, f32()).requires_grad_(true);
  std::vector<at::Tensor> inputs{x_, alpha};
  inputs.insert(inputs.end(), weights_.begin(), weights_.end());

  at::Tensor y = dash::ops::fourier_mixture(x_, weights_, torch::softmax(alpha, 0), space_,
                                            c10::nullopt, {c.stride}, groups_);
  at::Tensor y_ref =
      ref::naive_mixture(x_, weights_, torch::softmax(alpha, 0), space_, c.stride, groups_);
  at::Tensor r = torch::randn(y_ref.sizes(), f32());
  auto g = torch::autograd::grad({(y * r).sum()}, inputs);
  auto g_ref = torch::autograd::grad({(y_ref * r).sum()}, inputs);
  EXPECT_LT(rel_err(g[0], g_ref[0]), 1e-4) << c.name << " dx";
  EXPECT_LT(rel_err(g[1], g_ref[1]), 1e-4) << c.name << " dalpha";
  for (size_t j = 2; j < g.size(); ++j) {
    EXPECT_LT(rel_err(g[j], g_ref[j]), 1e-4) << c.name << " dw candidate " << j - 2;
  }
}

TEST_P(FourierMixture, TorchFftReferenceAgrees) {
  // The benchmark's torch::fft variant must compute the same function.
  const MixCase& c = GetParam();
  at::Tensor p = torch::softmax(torch::randn({space_.size()}, f32()), 0);
  at::Tensor y = ref::torchfft_mixture(x_, weights_, p, space_, c.stride, groups_);
  at::Tensor y_ref = ref::naive_mixture(x_, weights_, p, space_, c.stride, groups_);
  EXPECT_LT(rel_err(y, y_ref), 2e-5) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FourierMixture,
    ::testing::Values(
        MixCase{"1d_dw", {2, 3, 40}, 3, 1, true, {3, 5, 7}, {1, 3, 7}},
        MixCase{"1d_full_stride2_odd", {2, 3, 41}, 4, 2, false, {3, 7, 11}, {1, 3, 7, 15}},
        MixCase{"1d_dw_field_exceeds_input", {1, 4, 12}, 4, 1, true, {3, 5, 9}, {1, 7, 15}},
        MixCase{"2d_dw_paper_space", {2, 3, 16, 16}, 3, 1, true, {3, 5, 7, 9}, {1, 3, 7, 15}},
        MixCase{"2d_full_nonsquare_stride2", {2, 3, 9, 14}, 2, 2, false, {3, 5}, {1, 3}},
        MixCase{"2d_dw_even_stride2_batch1", {1, 2, 12, 10}, 2, 2, true, {3, 5, 7}, {1, 3}},
        MixCase{"2d_full_odd", {2, 2, 11, 11}, 3, 1, false, {3, 5, 7, 9}, {1, 3, 7, 15}}),
    [](const ::testing::TestParamInfo<MixCase>& info) { return std::string(info.param.name); });

// Central differences in float64 on a tiny layer: checks the analytic backward
// of the whole chain (softmax -> kernel mixing -> spectral conv) at 1e-6.
TEST(FourierMixtureFiniteDifferences, DoublePrecisionTinyCase) {
  torch::manual_seed(3);
  for (bool depthwise : {false, true}) {
    for (int rank : {1, 2}) {
      CandidateSpace space{{3, 5}, {1, 2}};
      const int64_t channels = 2, groups = depthwise ? channels : 1;
      std::vector<int64_t> xs{2, channels, 6};
      if (rank == 2) xs = {1, channels, 5, 4};
      at::Tensor x = torch::randn(xs, f64()).requires_grad_(true);
      at::Tensor alpha = torch::randn({space.size()}, f64()).requires_grad_(true);
      auto weights = ref::random_candidates(space, channels, channels / groups, rank, f64());
      const int64_t stride = rank == 1 ? 2 : 1;
      auto forward = [&] {
        return dash::ops::fourier_mixture(x, weights, torch::softmax(alpha, 0), space,
                                          c10::nullopt, {stride}, groups);
      };
      at::Tensor r = torch::randn(forward().sizes(), f64());
      std::vector<at::Tensor> params{x, alpha};
      params.insert(params.end(), weights.begin(), weights.end());
      auto grads = torch::autograd::grad({(forward() * r).sum()}, params);

      torch::NoGradGuard no_grad;
      const double eps = 1e-6;
      for (size_t i = 0; i < params.size(); ++i) {
        at::Tensor flat = params[i].view({-1});
        at::Tensor g = grads[i].reshape({-1});
        for (int64_t e = 0; e < flat.numel(); ++e) {
          const double saved = flat[e].item<double>();
          flat[e] = saved + eps;
          const double up = (forward() * r).sum().item<double>();
          flat[e] = saved - eps;
          const double down = (forward() * r).sum().item<double>();
          flat[e] = saved;
          const double numeric = (up - down) / (2 * eps);
          EXPECT_NEAR(g[e].item<double>(), numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
              << "rank " << rank << (depthwise ? " depthwise" : " full") << " parameter " << i
              << " element " << e;
        }
      }
    }
  }
}

// ---- plan caches and threads -------------------------------------------------

// The device-generic channel products (complex elementwise and batched
// complex matmul, what the CUDA backend runs through cuBLAS) against the CPU
// backend's hand-written loops and oneDNN products: two independent ways to
// the same three formulas.
TEST(GenericProducts, MatchTheCpuBackend) {
  torch::manual_seed(11);
  auto& cpu = dash::ops::cpu_spectral_backend();
  for (auto dtype : {at::kFloat, at::kDouble}) {
    const double tol = dtype == at::kFloat ? 1e-5 : 1e-12;
    for (bool depthwise : {true, false}) {
      dash::ops::ChannelGeometry c;
      c.batch = 3;
      c.in_channels = 4;
      c.out_channels = depthwise ? 4 : 5;
      c.depthwise = depthwise;
      c.bins = 7;
      const auto opts = at::TensorOptions().dtype(dtype);
      at::Tensor X, H, dY;
      if (depthwise) {
        X = torch::randn({c.batch, c.in_channels, c.bins, 2}, opts);
        H = torch::randn({c.in_channels, c.bins, 2}, opts);
        dY = torch::randn({c.batch, c.in_channels, c.bins, 2}, opts);
      } else {
        X = torch::randn({c.batch, c.bins, c.in_channels, 2}, opts);
        H = torch::randn({c.out_channels, c.bins, c.in_channels, 2}, opts);
        dY = torch::randn({c.batch, c.bins, c.out_channels, 2}, opts);
      }
      const double scale = 0.37;
      const std::string what = std::string(depthwise ? "depthwise " : "full ") + c10::toString(dtype);
      EXPECT_LT(rel_err(dash::ops::generic_product_forward(X, H, c, scale),
                        cpu.product_forward(X, H, c, scale)),
                tol)
          << what;
      at::Tensor consumed = dY.clone();
      EXPECT_LT(rel_err(dash::ops::generic_product_input_grad(dY, H, c, scale),
                        cpu.product_input_grad_consume(consumed, H, c, scale)),
                tol)
          << what;
      EXPECT_LT(rel_err(dash::ops::generic_product_kernel_grad(X, dY, c, scale),
                        cpu.product_kernel_grad(X, dY, c, scale)),
                tol)
          << what;
    }
  }
}

// The CUDA backend (a -DDASH_WITH_CUDA=ON build on a machine with a GPU):
// the mixture and all its gradients on the GPU against the naive mixture on
// the GPU and against our own CPU results.
TEST(FourierMixtureCuda, MatchesTheNaiveMixtureAndTheCpu) {
#if defined(DASH_WITH_CUDA)
  constexpr bool kBuiltWithCuda = true;
#else
  constexpr bool kBuiltWithCuda = false;  // the body still compiles, so CI checks it
#endif
  if (!kBuiltWithCuda) GTEST_SKIP() << "built without -DDASH_WITH_CUDA=ON";
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU is visible";
  torch::manual_seed(21);
  const CandidateSpace space{{3, 5, 7}, {1, 2}};
  for (int rank : {1, 2}) {
    for (bool depthwise : {true, false}) {
      const int64_t channels = 6, groups = depthwise ? channels : 1;
      const std::vector<int64_t> shape =
          rank == 1 ? std::vector<int64_t>{3, channels, 50} : std::vector<int64_t>{3, channels, 13, 11};
      const at::Tensor x = torch::randn(shape, f32());
      const auto w = ref::random_candidates(space, channels, channels / groups, rank, f32());
      const at::Tensor alpha = torch::randn({space.size()}, f32());
      // Forward and gradients of <y, g> for x, every weight and alpha.
      auto run = [&](const at::Device& device, bool naive) {
        at::Tensor xd = x.to(device).requires_grad_(true);
        std::vector<at::Tensor> wd;
        for (const auto& t : w) wd.push_back(t.detach().to(device).requires_grad_(true));
        at::Tensor ad = alpha.to(device).requires_grad_(true);
        const at::Tensor p = torch::softmax(ad, 0);
        at::Tensor y = naive ? ref::naive_mixture(xd, wd, p, space, 1, groups)
                             : dash::ops::fourier_mixture(xd, wd, p, space, c10::nullopt, {1}, groups);
        at::Tensor g = torch::cos(torch::arange(y.numel(), f32()).view(y.sizes())).to(device);
        (y * g).sum().backward();
        std::vector<at::Tensor> out{y.cpu(), xd.grad().cpu(), ad.grad().cpu()};
        for (const auto& t : wd) out.push_back(t.grad().cpu());
        return out;
      };
      const auto gpu = run(at::kCUDA, false);
      const auto gpu_naive = run(at::kCUDA, true);
      const auto cpu = run(at::kCPU, false);
      for (size_t i = 0; i < gpu.size(); ++i) {
        const std::string what = "rank " + std::to_string(rank) + (depthwise ? " dw" : " full") +
                                 " output " + std::to_string(i);
        EXPECT_LT(rel_err(gpu[i], gpu_naive[i]), 1e-4) << what << " vs the naive mixture";
        EXPECT_LT(rel_err(gpu[i], cpu[i]), 1e-4) << what << " vs the CPU";
      }
    }
  }
}

TEST(PlanCache, PlansAreMadeOnceAndReused) {
  torch::manual_seed(5);
  CandidateSpace space{{3, 5}, {1, 3}};
  at::Tensor x = torch::randn({3, 4, 23, 19}, f32());
  auto weights = ref::random_candidates(space, 4, 1, 2, f32());
  at::Tensor p = torch::softmax(torch::randn({space.size()}), 0);
  auto run = [&] {
    at::Tensor xg = x.clone().requires_grad_(true);
    at::Tensor y = dash::ops::fourier_mixture(xg, weights, p, space, c10::nullopt, {1}, 4);
    y.sum().backward();
  };
  run();
  const auto first = dash::ops::cpu::fft_plan_stats();
  run();
  run();
  const auto later = dash::ops::cpu::fft_plan_stats();
  EXPECT_EQ(later.created, first.created) << "a repeated shape must not plan again";
  EXPECT_GT(later.reused, first.reused);
}

TEST(PlanCache, ANewBatchSizeMakesNoNewPlanAndGivesTheSameSamples) {
  // Plans cover one sample, so the last, short batch of an epoch (or an
  // evaluation batch) reuses the training batch's plans; every sample's
  // result is that of the sample alone.
  torch::manual_seed(6);
  CandidateSpace space{{3, 5}, {1, 3}};
  at::Tensor x = torch::randn({5, 4, 21, 18}, f32());
  auto weights = ref::random_candidates(space, 4, 1, 2, f32());
  at::Tensor p = torch::softmax(torch::randn({space.size()}), 0);
  auto forward = [&](const at::Tensor& xb) {
    return dash::ops::fourier_mixture(xb, weights, p, space, c10::nullopt, {1}, 4);
  };
  const at::Tensor full = forward(x);
  const auto before = dash::ops::cpu::fft_plan_stats();
  const at::Tensor part = forward(x.narrow(0, 1, 2).contiguous());
  const auto after = dash::ops::cpu::fft_plan_stats();
  EXPECT_EQ(after.created, before.created) << "batch 2 after batch 5 must not plan again";
  EXPECT_LT(rel_err(part, full.narrow(0, 1, 2)), 1e-6);
  EXPECT_LT(rel_err(part, ref::naive_mixture(x.narrow(0, 1, 2), weights, p, space, 1, 4)), 2e-5);
}

TEST(PlanCache, MeasuredPlansAreKeptForLaterProcessesAndNeverReachTheEstimatePlanner) {
  namespace cpu = dash::ops::cpu;
  const std::filesystem::path root =
      std::filesystem::temp_directory_path() / ("dash_wisdom_" + std::to_string(static_cast<long>(getpid())));
  std::filesystem::remove_all(root);
  const std::string planner = cpu::fft_planner();
  torch::manual_seed(12);
  CandidateSpace space{{3, 5}, {1, 3}};
  // A full (groups 1) 2D mixture on a shape no other test uses: new plans.
  auto mixture_matches_reference = [&](int64_t channels, int64_t h, int64_t w) {
    at::Tensor x = torch::randn({2, channels, h, w}, f32());
    auto weights = ref::random_candidates(space, channels, channels, 2, f32());
    at::Tensor p = torch::softmax(torch::randn({space.size()}), 0);
    at::Tensor y = dash::ops::fourier_mixture(x, weights, p, space, c10::nullopt, {1}, 1);
    return rel_err(y, ref::naive_mixture(x, weights, p, space, 1, 1)) < 2e-5;
  };
  const auto file = [&](const char* dir) { return root / dir / "fftw-wisdom-f32"; };

  // Measured plans are saved where the option says, as FFTW's wisdom.
  cpu::set_fft_planner("measure");
  cpu::set_fft_wisdom((root / "a").string());
  EXPECT_EQ(cpu::fft_wisdom_dir(), (root / "a").string());
  auto before = cpu::fft_plan_stats();
  EXPECT_TRUE(mixture_matches_reference(3, 17, 13));
  auto after = cpu::fft_plan_stats();
  EXPECT_GT(after.created, before.created);
  EXPECT_GT(after.wisdom_written, before.wisdom_written);
  ASSERT_TRUE(std::filesystem::exists(file("a")));
  std::ifstream saved(file("a"));
  std::string head;
  saved >> head;
  EXPECT_EQ(head.rfind("(fftw-3", 0), 0u) << "not FFTW wisdom: " << head;

  // Another directory's file is read before the next plan is made; a file
  // that is not wisdom is ignored and replaced.
  std::filesystem::create_directories(root / "b");
  std::filesystem::copy_file(file("a"), file("b"));
  cpu::set_fft_wisdom((root / "b").string());
  before = cpu::fft_plan_stats();
  EXPECT_TRUE(mixture_matches_reference(3, 15, 11));
  after = cpu::fft_plan_stats();
  EXPECT_EQ(after.wisdom_read, before.wisdom_read + 1);
  std::filesystem::create_directories(root / "c");
  std::ofstream(file("c")) << "not wisdom\n";
  cpu::set_fft_wisdom((root / "c").string());
  before = cpu::fft_plan_stats();
  EXPECT_TRUE(mixture_matches_reference(3, 13, 9));
  after = cpu::fft_plan_stats();
  EXPECT_EQ(after.wisdom_read, before.wisdom_read);
  std::ifstream replaced(file("c"));
  replaced >> head;
  EXPECT_EQ(head.rfind("(fftw-3", 0), 0u) << "the bad file was not replaced: " << head;

  // The estimate planner (bit-reproducible between processes) reads and
  // writes none, and "off" writes nowhere.
  cpu::set_fft_planner("estimate");
  cpu::set_fft_wisdom((root / "d").string());
  before = cpu::fft_plan_stats();
  EXPECT_TRUE(mixture_matches_reference(3, 11, 7));
  after = cpu::fft_plan_stats();
  EXPECT_EQ(after.wisdom_read, before.wisdom_read);
  EXPECT_EQ(after.wisdom_written, before.wisdom_written);
  EXPECT_FALSE(std::filesystem::exists(root / "d"));
  cpu::set_fft_planner("measure");
  cpu::set_fft_wisdom("off");
  EXPECT_EQ(cpu::fft_wisdom_dir(), "");
  before = cpu::fft_plan_stats();
  EXPECT_TRUE(mixture_matches_reference(3, 9, 7));
  after = cpu::fft_plan_stats();
  EXPECT_EQ(after.wisdom_written, before.wisdom_written);

  cpu::set_fft_planner(planner);
  std::filesystem::remove_all(root);
}

TEST(PlanCache, TwoThreadsRunTheOperatorAtOnce) {
  torch::manual_seed(9);
  CandidateSpace space{{3, 5, 7}, {1, 3}};
  struct Job {
    at::Tensor x;
    std::vector<at::Tensor> w;
    int64_t groups;
    at::Tensor y, dx;
  };
  // Shapes never seen before, so both threads plan and execute concurrently;
  // two jobs share a shape, one differs, one is a full (oneDNN) layer.
  std::vector<Job> jobs;
  for (auto shape : {std::vector<int64_t>{4, 6, 29, 31}, std::vector<int64_t>{4, 6, 29, 31},
                     std::vector<int64_t>{2, 6, 37}, std::vector<int64_t>{3, 6, 27, 25}}) {
    Job j;
    j.x = torch::randn(shape, f32());
    j.groups = shape.size() == 4 && shape[2] == 27 ? 1 : 6;
    j.w = ref::random_candidates(space, 6, 6 / j.groups, static_cast<int>(shape.size()) - 2, f32());
    jobs.push_back(j);
  }
  at::Tensor p = torch::softmax(torch::randn({space.size()}), 0);
  auto compute = [&](const Job& j) {
    at::Tensor x = j.x.clone().requires_grad_(true);
    at::Tensor y = dash::ops::fourier_mixture(x, j.w, p, space, c10::nullopt, {1}, j.groups);
    y.sum().backward();
    return std::make_pair(y.detach(), x.grad());
  };
  std::vector<std::pair<at::Tensor, at::Tensor>> concurrent(jobs.size());
  for (int round = 0; round < 3; ++round) {
    std::vector<std::thread> threads;
    for (size_t t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        for (size_t i = t; i < jobs.size(); i += 2) concurrent[i] = compute(jobs[i]);
      });
    }
    for (auto& th : threads) th.join();
    for (size_t i = 0; i < jobs.size(); ++i) {
      auto serial = compute(jobs[i]);
      at::Tensor y_ref = ref::naive_mixture(jobs[i].x, jobs[i].w, p, space, 1, jobs[i].groups);
      EXPECT_LT(rel_err(concurrent[i].first, y_ref), 2e-5) << "job " << i;
      EXPECT_LT(rel_err(concurrent[i].first, serial.first), 1e-6) << "job " << i;
      EXPECT_LT(rel_err(concurrent[i].second, serial.second), 1e-6) << "job " << i;
    }
  }
}

}  // namespace
