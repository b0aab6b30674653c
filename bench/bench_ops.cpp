// dashnas_bench_ops: forward+backward of one searchable layer, timed side by
// side for four ways of computing the same mixture:
//   ours      dash::ops::fourier_mixture (FFTW + oneDNN, spectral backward)
//   naive     every candidate as its own LibTorch convolution, summed
//   kmix      kernel mixing into the full receptive field, one direct convolution
//   torchfft  the same spectral algorithm on torch::fft with LibTorch autograd
// Each configuration prints one JSON line. Times are medians over --runs runs
// after warm-up, methods interleaved within each run so that machine noise hits
// all of them alike. Peak memory is the high-water mark of memory allocated
// through LibTorch's CPU allocator during one forward+backward, above what was
// live before it (inputs and parameters are not counted).
//
// With --device cuda (a -DDASH_WITH_CUDA=ON build) every method runs on the
// GPU, each step ends with a device synchronisation, and peak memory is not
// measured (null).
//
// Usage: dashnas_bench_ops [--config NAME] [--runs N] [--threads N] [--methods a,b]
//                          [--device cpu|cuda]

#include <c10/core/CPUAllocator.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <unordered_map>
#include <string>
#include <thread>
#include <vector>

#include "ops/fourier_mixture.h"
#include "support/reference.h"

namespace {

using dash::ops::CandidateSpace;
namespace ref = dash::reference;

// ---- peak memory through LibTorch's CPU allocator ---------------------------

// Data pointer and context are the same pointer (LibTorch's raw_allocate needs
// that); sizes are kept in a side table so frees can be counted.
class CountingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) const override {
    void* data = nullptr;
    if (posix_memalign(&data, 64, std::max<size_t>(bytes, 1)) != 0) throw std::bad_alloc();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      sizes_[data] = bytes;
      current_ += static_cast<int64_t>(bytes);
      peak_ = std::max(peak_, current_);
    }
    return c10::DataPtr(data, data, &release, c10::Device(c10::DeviceType::CPU));
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    peak_ = current_;
  }
  int64_t current() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return current_;
  }
  int64_t peak() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return peak_;
  }

 private:
  static void release(void* data) {
    if (!data) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = sizes_.find(data);
      if (it != sizes_.end()) {
        current_ -= static_cast<int64_t>(it->second);
        sizes_.erase(it);
      }
    }
    std::free(data);
  }

  static std::mutex mutex_;
  static std::unordered_map<void*, size_t> sizes_;
  static int64_t current_;
  static int64_t peak_;
};
std::mutex CountingAllocator::mutex_;
std::unordered_map<void*, size_t> CountingAllocator::sizes_;
int64_t CountingAllocator::current_ = 0;
int64_t CountingAllocator::peak_ = 0;

CountingAllocator* g_counter = nullptr;

// ---- configurations -----------------------------------------------------------

struct Config {
  std::string name;
  std::vector<int64_t> x;  // [batch, channels, spatial...]
  bool depthwise;
  CandidateSpace space;
};

std::vector<Config> all_configs() {
  const CandidateSpace k2d{{3, 5, 7, 9}, {1, 3, 7, 15}};
  const CandidateSpace k1d{{3, 7, 11, 15, 19}, {1, 3, 7, 15}};
  return {
      {"2d-dw", {64, 16, 32, 32}, true, k2d},
      {"2d-full", {64, 16, 32, 32}, false, k2d},
      {"1d-dw", {64, 32, 1000}, true, k1d},
      {"1d-full", {32, 32, 1000}, false, k1d},
      {"2d-dense", {8, 16, 128, 128}, true, k2d},
  };
}

using Method = std::function<at::Tensor(const at::Tensor&, const std::vector<at::Tensor>&,
                                        const at::Tensor&, const CandidateSpace&, int64_t)>;

struct Timing {
  std::vector<double> ms;
  double peak_mb = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void run_config(const Config& c, int runs, const std::string& only_methods,
                const at::Device& device) {
  torch::manual_seed(0);
  const int rank = static_cast<int>(c.x.size()) - 2;
  const int64_t channels = c.x[1];
  const int64_t groups = c.depthwise ? channels : 1;
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  at::Tensor x = torch::randn(c.x, opts).requires_grad_(true);
  auto weights = ref::random_candidates(c.space, channels, channels / groups, rank, opts);
  at::Tensor alpha = (torch::randn({c.space.size()}, opts) * 1e-3).requires_grad_(true);
  const bool cuda = device.is_cuda();

  std::vector<std::pair<std::string, Method>> methods{
      {"ours",
       [](const at::Tensor& x, const std::vector<at::Tensor>& w, const at::Tensor& p,
          const CandidateSpace& s, int64_t g) {
         return dash::ops::fourier_mixture(x, w, p, s, c10::nullopt, {1}, g);
       }},
      {"naive",
       [](const at::Tensor& x, const std::vector<at::Tensor>& w, const at::Tensor& p,
          const CandidateSpace& s, int64_t g) { return ref::naive_mixture(x, w, p, s, 1, g); }},
      {"kmix",
       [](const at::Tensor& x, const std::vector<at::Tensor>& w, const at::Tensor& p,
          const CandidateSpace& s, int64_t g) { return ref::kmix_mixture(x, w, p, s, 1, g); }},
      {"torchfft",
       [](const at::Tensor& x, const std::vector<at::Tensor>& w, const at::Tensor& p,
          const CandidateSpace& s, int64_t g) {
         return ref::torchfft_mixture(x, w, p, s, 1, g);
       }},
  };

  if (!only_methods.empty()) {
    std::vector<std::pair<std::string, Method>> kept;
    for (auto& m : methods) {
      if (("," + only_methods + ",").find("," + m.first + ",") != std::string::npos) kept.push_back(m);
    }
    methods = kept;
  }

  auto step = [&](const Method& m) {
    at::Tensor y = m(x, weights, torch::softmax(alpha, 0), c.space, groups);
    y.backward(torch::ones_like(y));
    x.mutable_grad().reset();
    alpha.mutable_grad().reset();
    for (auto& w : weights) w.mutable_grad().reset();
    if (cuda) torch::cuda::synchronize();
  };

  std::map<std::string, Timing> timings;
  for (auto& [name, m] : methods) {
    step(m);  // warm-up: plans, primitive caches, first-touch of memory
    g_counter->reset_peak();
    const int64_t before = g_counter->current();
    step(m);
    timings[name].peak_mb = static_cast<double>(g_counter->peak() - before) / (1 << 20);
  }
  for (int r = 0; r < runs; ++r) {
    for (auto& [name, m] : methods) {
      const auto t0 = std::chrono::steady_clock::now();
      step(m);
      const auto t1 = std::chrono::steady_clock::now();
      timings[name].ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
  }
  // A method left out with --methods prints null.
  auto ms = [&](const std::string& m) {
    return timings.count(m) ? median(timings[m].ms) : std::nan("");
  };
  auto num = [](double v, int digits) {
    if (std::isnan(v)) return std::string("null");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return std::string(buf);
  };
  auto peak = [&](const std::string& m) {
    return timings.count(m) && !cuda ? timings[m].peak_mb : std::nan("");
  };
  const double ours = ms("ours"), naive = ms("naive"), kmix = ms("kmix"), tfft = ms("torchfft");
  std::cout << "{\"config\": \"" << c.name << "\", \"ours_ms\": " << num(ours, 2)
            << ", \"naive_ms\": " << num(naive, 2) << ", \"kmix_ms\": " << num(kmix, 2)
            << ", \"torchfft_ms\": " << num(tfft, 2)
            << ", \"naive_over_ours\": " << num(naive / ours, 2)
            << ", \"kmix_over_ours\": " << num(kmix / ours, 2)
            << ", \"torchfft_over_ours\": " << num(tfft / ours, 2)
            << ", \"ours_peak_mb\": " << num(peak("ours"), 1)
            << ", \"naive_peak_mb\": " << num(peak("naive"), 1)
            << ", \"kmix_peak_mb\": " << num(peak("kmix"), 1)
            << ", \"torchfft_peak_mb\": " << num(peak("torchfft"), 1) << ", \"runs\": " << runs
            << ", \"threads\": " << at::get_num_threads() << ", \"device\": \"" << device.str()
            << "\"}" << std::endl;
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string only, methods, device_name = "cpu";
  int runs = 7;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--config") {
      only = value();
    } else if (a == "--runs") {
      runs = std::stoi(value());
    } else if (a == "--methods") {
      methods = value();
    } else if (a == "--threads") {
      threads = std::stoi(value());
    } else if (a == "--device") {
      device_name = value();
    } else if (a == "--help" || a == "-h") {
      std::cout << "usage: dashnas_bench_ops [--config NAME] [--runs N] [--threads N]"
                   " [--methods ours,naive,kmix,torchfft] [--device cpu|cuda]\n"
                   "configs: 2d-dw 2d-full 1d-dw 1d-full 2d-dense (default: all)\n";
      return 0;
    } else {
      std::cerr << "unknown argument " << a << " (try --help)\n";
      return 2;
    }
  }
  if (runs < 1 || threads < 1) {
    std::cerr << "--runs and --threads must be >= 1\n";
    return 2;
  }
  if (device_name != "cpu" && device_name != "cuda") {
    std::cerr << "--device must be cpu or cuda\n";
    return 2;
  }
  if (device_name == "cuda" && !torch::cuda::is_available()) {
    std::cerr << "--device cuda: no GPU is visible to LibTorch\n";
    return 2;
  }
  const at::Device device(device_name == "cuda" ? at::kCUDA : at::kCPU);
  torch::set_num_threads(threads);
  static CountingAllocator counter;
  g_counter = &counter;
  c10::SetCPUAllocator(&counter, /*priority=*/100);

  bool found = false;
  for (const auto& c : all_configs()) {
    if (!only.empty() && c.name != only) continue;
    found = true;
    run_config(c, runs, methods, device);
  }
  if (!found) {
    std::cerr << "unknown config '" << only << "' (try --help)\n";
    return 2;
  }
  return 0;
}
