// dashnas_bench_search: what one search step costs against one step of the
// plain backbone, averaged over a search as it actually runs (warm-up,
// freezing, pruning and all), side by side in one process.
//
//   dashnas_bench_search [--threads N] [--budget SECONDS] [--plain-steps N] [--warmup-steps N]
//
// The plain step is the mean of 40 steps timed before the search and 40 after.
// mixing_over_plain: the steps up to the first freeze (every layer mixing, the
// first step's planning included), after_over_plain: the rest.
//
// Cases: Fashion-MNIST (28x28, batch 64, WRN-16-1, K={3,5,7,9} x D={1,3,7,15};
// Debian's dataset-fashion-mnist, 5,000 images) and a generated 1D task of
// length 1000 (batch 64, ResNet1D, K={3,7,11,15,19} x D={1,3,7,15}). One JSON
// line per case: search and plain ms per step, their ratio, steps, how many
// layers froze and candidates were pruned, whether the rule ended it, and
// whether measured FFT plans were read from an earlier run (fft_wisdom_read;
// DASH_FFTW_WISDOM=off measures them afresh, as a machine's first run does),
// and the processor's name.

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "ops/cpu/fftw_plans.h"
#include "search/dash.h"
#include "task/dataset.h"
#include "task/io.h"
#include "util/malloc_tuning.h"

namespace {

using dash::task::Split;

struct Case {
  std::string name;
  dash::task::TaskSpec spec;
  dash::task::Dataset data;
};

Case fashion_mnist() {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  Case c{"fashion_mnist-28x28-b64", dash::task::TaskSpec::from_json(
                                        {{"kind", "classification"}, {"input_shape", {1, 28, 28}}, {"num_classes", 10}}),
         {}};
  at::Tensor x = dash::task::load_array(dir + "train-images-idx3-ubyte.gz").narrow(0, 0, 5500);
  at::Tensor y = dash::task::load_array(dir + "train-labels-idx1-ubyte.gz").narrow(0, 0, 5500);
  x = x.to(at::kFloat).reshape({-1, 1, 28, 28});
  c.data.train = Split{x.narrow(0, 0, 5000), y.narrow(0, 0, 5000).to(at::kLong)};
  c.data.valid = Split{x.narrow(0, 5000, 500), y.narrow(0, 5000, 500).to(at::kLong)};
  return c;
}

// Two-class sequences of length 1000 whose class is the sign of the product
// of two values 150 samples apart, at a random place: only a wide field sees it.
Case long_sequence() {
  Case c{"sequence-1x1000-b64", dash::task::TaskSpec::from_json(
                                    {{"kind", "classification"}, {"input_shape", {1, 1000}}, {"num_classes", 2}}),
         {}};
  torch::manual_seed(7);
  auto make = [](int64_t n) {
    at::Tensor x = torch::randn({n, 1, 1000}) * 0.3;
    at::Tensor at = torch::randint(0, 850, {n}, torch::kLong);
    at::Tensor a = torch::randn({n}), b = torch::randn({n});
    for (int64_t i = 0; i < n; ++i) {
      const int64_t p = at[i].item<int64_t>();
      x[i][0][p] = a[i];
      x[i][0][p + 150] = b[i];
    }
    return Split{x, (a * b > 0).to(at::kLong)};
  };
  c.data.train = make(2000);
  c.data.valid = make(256);
  return c;
}

// The processor's name (the ratio depends on it: one VM's plain step took 100
// ms, another's 150), from /proc/cpuinfo where there is one.
std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) break;
    std::string name = line.substr(colon + 1);
    name.erase(0, name.find_first_not_of(' '));
    for (char& c : name) c = (c == '"' || c == '\\') ? ' ' : c;
    return name;
  }
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  dash::util::tune_malloc_for_training();  // what the C ABI's calls do by default (option tune_malloc)
  const std::string cpu = cpu_model();
  int threads = 2;
  double budget = 120;
  int64_t plain_steps = 40;
  int64_t warmup_steps = dash::search::SearchOptions{}.warmup_steps;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--budget")) budget = std::atof(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--plain-steps")) plain_steps = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--warmup-steps")) warmup_steps = std::atoll(argv[i + 1]);
  }
  torch::set_num_threads(threads);
  std::vector<Case> cases;
  try {
    cases.push_back(fashion_mnist());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "skipping Fashion-MNIST: %s\n", e.what());
  }
  cases.push_back(long_sequence());
  for (auto& c : cases) {
    const auto data = dash::search::prepare(c.data, nullptr);
    // The plain backbone: the steps of an ordinary training stage, timed
    // before and after the search (machine noise that lasts a while hits
    // both sides of the ratio alike).
    const auto bspec = dash::nn::backbone_for(c.spec, dash::nn::BackboneSpec{}.depth, dash::nn::BackboneSpec{}.width, 0.0);
    dash::nn::LayerSetup fixed;
    fixed.architecture = dash::nn::Architecture::plain(bspec.name(), bspec.searchable_layers());
    auto time_plain = [&] {
      torch::manual_seed(0);
      dash::nn::Backbone plain(bspec, fixed);
      dash::train::StageOptions po;
      po.epochs = 1;
      po.batch_fraction = std::min(1.0, static_cast<double>(plain_steps) * 64.0 /
                                            static_cast<double>(data.train.size()));
      po.validate = false;
      const auto pr = dash::train::run_stage(plain, c.spec, data, po, nullptr);
      return pr.seconds * 1000.0 / static_cast<double>(pr.steps_done);
    };
    const double plain_before = time_plain();

    // The search, with the library's defaults, the grid and guard off.
    dash::search::SearchOptions so;
    so.time_budget_s = budget;
    so.hpo_share = 0.01;  // the search itself gets (almost) all of it
    so.hpo = false;
    so.guard = false;
    so.warmup_steps = warmup_steps;
    const auto plans0 = dash::ops::cpu::fft_plan_stats();
    const auto out = dash::search::run_search(c.spec, data, so, nullptr);
    const auto plans1 = dash::ops::cpu::fft_plan_stats();
    const double plain_after = time_plain();
    const double plain_ms = 0.5 * (plain_before + plain_after);
    const auto& s = out.report["search"];
    const double search_ms = s["seconds"].get<double>() * 1000.0 / s["steps_done"].get<double>();
    int64_t frozen = 0, first_freeze = -1;
    for (const auto& at : s["frozen_at_step"]) {
      const int64_t step = at.get<int64_t>();
      frozen += step >= 0;
      if (step >= 0 && (first_freeze < 0 || step < first_freeze)) first_freeze = step;
    }
    // Steps with every layer mixing (up to the first freeze, from the trace's
    // snapshot nearest below it) against the steps after.
    double mixing_ms = std::nan(""), after_ms = std::nan("");
    double t_mix = 0;
    int64_t n_mix = 0;
    for (const auto& snap : s["trace"]) {
      const int64_t step = snap["step"].get<int64_t>();
      if (step <= first_freeze || first_freeze < 0) {
        n_mix = step;
        t_mix = snap["seconds"].get<double>();
      }
    }
    const int64_t steps = s["steps_done"].get<int64_t>();
    if (n_mix > 0) mixing_ms = t_mix * 1000.0 / static_cast<double>(n_mix);
    if (steps > n_mix) after_ms = (s["seconds"].get<double>() - t_mix) * 1000.0 / static_cast<double>(steps - n_mix);
    std::printf(
        "{\"config\": \"%s\", \"threads\": %d, \"warmup_steps\": %lld, \"search_ms\": %.1f, \"plain_ms\": %.1f, "
        "\"plain_ms_before\": %.1f, \"plain_ms_after\": %.1f, \"search_over_plain\": %.2f, \"mixing_steps\": %lld, \"mixing_over_plain\": %.2f, \"after_over_plain\": %.2f, \"search_steps\": %lld, \"search_s\": %.1f, "
        "\"stopped_early\": %s, \"layers_frozen\": %lld, \"layers\": %zu, \"pruned\": %lld, "
        "\"cost_model_s\": %.1f, \"fft_plans\": %lld, \"fft_planning_s\": %.1f, \"fft_planner\": \"%s\", "
        "\"fft_wisdom_read\": %s, \"cpu\": \"%s\"}\n",
        c.name.c_str(), threads, static_cast<long long>(warmup_steps), search_ms, plain_ms, plain_before, plain_after, search_ms / plain_ms,
        static_cast<long long>(n_mix), mixing_ms / plain_ms, after_ms / plain_ms,
        static_cast<long long>(s["steps_done"].get<int64_t>()), s["seconds"].get<double>(),
        s["stopped_early"].get<bool>() ? "true" : "false", static_cast<long long>(frozen),
        s["frozen_at_step"].size(), static_cast<long long>(s["pruned_candidates"].get<int64_t>()),
        out.report["costs"]["seconds"].get<double>(),
        static_cast<long long>(plans1.created - plans0.created), plans1.planning_s - plans0.planning_s,
        dash::ops::cpu::fft_planner().c_str(), plans1.wisdom_read > 0 ? "true" : "false", cpu.c_str());
    std::fflush(stdout);
  }
  return 0;
}
