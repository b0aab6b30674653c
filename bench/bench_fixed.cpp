// dashnas_bench_fixed: a FIXED (k, d) layer after the search, forward+backward,
// as LibTorch's dilated convolution versus spectral_conv of the dilated kernel,
// side by side in one process. The numbers behind SearchableConv's choice of
// algorithm for large receptive fields.
//
//   dashnas_bench_fixed [--runs N] [--threads N]
//
// One JSON line per case: {"case", "k", "d", "direct_ms", "spectral_ms",
// "direct_over_spectral"}, medians of --runs runs after one warm-up.

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "nn/searchable_conv.h"
#include "ops/spectral_conv.h"

namespace {

struct Case {
  std::string name;
  int64_t batch, in, out, stride;
  std::vector<int64_t> spatial;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_ms(F&& f, int runs) {
  f();  // warm-up: plans, caches
  std::vector<double> ms;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(ms);
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5, threads = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
  }
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  const std::vector<Case> cases = {
      {"wrn-28x28-16ch", 64, 16, 16, 1, {28, 28}},
      {"wrn-14x14-32ch", 64, 32, 32, 1, {14, 14}},
      {"wrn-7x7-64ch", 64, 64, 64, 1, {7, 7}},
      {"dense-43x43-16ch", 32, 16, 16, 1, {43, 43}},
      {"resnet1d-97-64ch", 64, 64, 64, 1, {97}},
  };
  const std::vector<std::pair<int64_t, int64_t>> kd = {{3, 1}, {5, 1}, {7, 1}, {9, 1},
                                                       {3, 3}, {5, 3}, {3, 7}, {9, 7}};
  for (const auto& c : cases) {
    const int dims = static_cast<int>(c.spatial.size());
    std::vector<int64_t> xs{c.batch, c.in};
    xs.insert(xs.end(), c.spatial.begin(), c.spatial.end());
    const at::Tensor x = torch::randn(xs).requires_grad_();
    for (const auto& [k, d] : kd) {
      std::vector<int64_t> ws{c.out, c.in};
      for (int a = 0; a < dims; ++a) ws.push_back(k);
      const at::Tensor w = (torch::randn(ws) * 0.1).requires_grad_();
      const int64_t pad = d * (k - 1) / 2;
      auto direct = [&] {
        at::Tensor y = dims == 1 ? at::conv1d(x, w, {}, {c.stride}, {pad}, {d})
                                 : at::conv2d(x, w, {}, {c.stride, c.stride}, {pad, pad}, {d, d});
        y.sum().backward();
      };
      auto spectral = [&] {
        at::Tensor y = dash::ops::spectral_conv(x, dash::nn::dilate_kernel(w, d), c10::nullopt,
                                                {c.stride}, 1);
        y.sum().backward();
      };
      const double a = time_ms(direct, runs), b = time_ms(spectral, runs);
      std::printf("{\"case\": \"%s\", \"k\": %lld, \"d\": %lld, \"direct_ms\": %.2f, "
                  "\"spectral_ms\": %.2f, \"direct_over_spectral\": %.2f}\n",
                  c.name.c_str(), (long long)k, (long long)d, a, b, a / b);
      std::fflush(stdout);
    }
  }
  return 0;
}
