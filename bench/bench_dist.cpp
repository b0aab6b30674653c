// dashnas_bench_dist: data-parallel throughput on this machine. Fashion-MNIST
// (Debian's dataset-fashion-mnist, 5,000 images, WRN-16-1, batch 64 per
// rank): a retrain's steps (the plain network) and a search's steps (the
// supernet, K={3,5,7,9} x D={1,3,7,15}) with 1 rank and with N ranks (each a
// process, 1 thread, meeting on loopback through c10d's Gloo).
//
//   dashnas_bench_dist [--ranks N] [--steps S] [--repeats R] [--stage retrain|search|grid]
//                      [--grid dash|small]
//
// --stage grid [--grid dash|small]: a grid on the plain network (default
// DASH's 24 points, hpo_grid dash; small: lr 0.1, 0.03, 0.01), one epoch of
// S global steps per point, 1,000 valid images, N ranks with grid_spread off
// (every point data-parallel) and then auto (world_size points at once, one
// per rank, where one process would run them all), per repeat: the grid's
// seconds, points run, rounds spread, the choice, and off / auto.
//
// One JSON line per (repeat, stage, ranks): steps per second of each rank,
// samples per second of the whole run, the speed-up over the one-rank run
// of the same repeat, the share of a step spent averaging gradients, and the
// bytes each rank sends into one all-reduce (the gradients' size). Then one
// line per stage: the median speed-up over the repeats, with the smallest
// and the largest. Each repeat runs one rank and then N ranks, so the two
// runs of a ratio are minutes, not a whole benchmark, apart: on a shared
// VM single 40-step runs gave 1.31x and 2.03x for the same retrain.

#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "support/free_port.h"
#include "search/dash.h"
#include "task/io.h"
#include "util/malloc_tuning.h"

namespace {

// The first `train` images as train, the next `valid` as valid.
dash::task::Dataset fashion_mnist(int64_t train = 5000, int64_t valid = 0) {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  at::Tensor x = dash::task::load_array(dir + "train-images-idx3-ubyte.gz").narrow(0, 0, train + valid);
  at::Tensor y = dash::task::load_array(dir + "train-labels-idx1-ubyte.gz").narrow(0, 0, train + valid);
  x = x.to(at::kFloat).reshape({-1, 1, 28, 28});
  y = y.to(at::kLong);
  dash::task::Dataset d;
  d.train = {x.narrow(0, 0, train), y.narrow(0, 0, train)};
  d.valid = {x.narrow(0, train, valid), y.narrow(0, train, valid)};
  return dash::search::prepare(d, nullptr);
}

// One rank of the grid stage: writes "grid MODE seconds points rounds lr".
int run_grid_rank(int rank, int world, int port, int64_t steps, const std::string& grid, const std::string& mode,
                  const std::string& out) {
  torch::set_num_threads(1);
  const auto spec = dash::task::TaskSpec::from_json(
      {{"kind", "classification"}, {"input_shape", {1, 28, 28}}, {"num_classes", 10}});
  dash::task::Dataset data = fashion_mnist(steps * 64 * world, 1000);
  dash::dist::DistOptions o;
  o.world_size = world;
  o.rank = rank;
  o.init = "tcp://127.0.0.1:" + std::to_string(port);
  dash::search::SearchOptions so;
  so.comm = dash::dist::connect(o, "bench-grid", false);
  const int64_t per = data.train.size() / world;  // a shard each; valid every world-th row
  data.train = {data.train.x.narrow(0, rank * per, per), data.train.y.narrow(0, rank * per, per)};
  const at::Tensor rows = torch::arange(rank, data.valid.size(), world, torch::kLong);
  data.valid = {data.valid.x.index_select(0, rows), data.valid.y.index_select(0, rows)};
  so.arch_search = false;
  so.hpo_grid = grid;
  so.hpo_epochs = 1;
  so.batch_size = 64;
  so.grid_spread = mode;
  const auto outcome = dash::search::run_search(spec, data, so, nullptr);
  const auto& hpo = outcome.report["hpo"];
  std::ofstream(out) << "grid " << mode << " " << hpo["seconds"].get<double>() << " " << hpo["trials"].size()
                     << " " << hpo["spread_rounds"].get<int64_t>() << " " << outcome.hp.lr << "\n";
  return 0;
}

// One rank: `steps` steps of each stage; prints "stage seconds steps
// allreduce_seconds bytes" lines to `out`.
int run_rank(int rank, int world, int port, int64_t steps, const std::string& only, const std::string& out) {
  torch::set_num_threads(1);
  const auto spec = dash::task::TaskSpec::from_json(
      {{"kind", "classification"}, {"input_shape", {1, 28, 28}}, {"num_classes", 10}});
  dash::task::Dataset data = fashion_mnist();
  std::shared_ptr<dash::dist::Communicator> comm;
  if (world > 1) {
    dash::dist::DistOptions o;
    o.world_size = world;
    o.rank = rank;
    o.init = "tcp://127.0.0.1:" + std::to_string(port);
    comm = dash::dist::connect(o, "bench", false);
    const int64_t per = data.train.size() / world;
    data.train = {data.train.x.narrow(0, rank * per, per), data.train.y.narrow(0, rank * per, per)};
  }
  std::ofstream lines(out);
  const auto bspec = dash::nn::backbone_for(spec, 16, 1, 0.0);
  for (const std::string stage : {"retrain", "search"}) {
    if (!only.empty() && stage != only) continue;
    dash::nn::LayerSetup setup;
    if (stage == "search") {
      setup.mixture = true;
      setup.space = dash::search::default_space(2);
    } else {
      setup.architecture = dash::nn::Architecture::plain(bspec.name(), bspec.searchable_layers());
    }
    dash::nn::Backbone net(bspec, setup);
    dash::train::StageOptions so;
    so.epochs = 0;
    so.max_steps = steps + 2;  // two warm-up steps, not timed below
    so.search = stage == "search";
    so.validate = false;
    so.comm = comm;
    int64_t step = 0;
    std::chrono::steady_clock::time_point t0;
    double reduce0 = 0, all0 = 0;
    int64_t count0 = 0;
    so.after_step = [&](int64_t s) {
      step = s;
      if (s == 2) {
        t0 = std::chrono::steady_clock::now();
        reduce0 = comm ? comm->gradient_seconds_total() : 0;
        all0 = comm ? comm->collective_seconds_total() : 0;
        count0 = comm ? comm->collectives() : 0;
      }
      return false;
    };
    dash::train::run_stage(net, spec, data, so, nullptr);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double reduce = comm ? comm->gradient_seconds_total() - reduce0 : 0;
    const double all = comm ? comm->collective_seconds_total() - all0 : 0;
    const int64_t count = comm ? comm->collectives() - count0 : 0;
    lines << stage << " " << seconds << " " << (step - 2) << " " << reduce << " "
          << (comm ? comm->last_gradient_bytes() : 0) << " " << all << " " << count << "\n";
  }
  return 0;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Per repeat: `ranks` ranks with grid_spread off, then with auto.
int grid_driver(const char* self, int ranks, int64_t steps, int repeats, const std::string& grid) {
  std::vector<double> ratios;
  for (int repeat = 0; repeat < repeats; ++repeat) {
    double off_s = 0;
    for (const std::string mode : {"off", "auto"}) {
      const int p = dash_test::free_loopback_port();
      std::vector<pid_t> pids;
      const std::string file = "/tmp/dashnas_bench_grid." + std::to_string(getpid());
      for (int r = 0; r < ranks; ++r) {
        const pid_t pid = fork();
        if (pid == 0) {
          const std::string rs = std::to_string(r), ws = std::to_string(ranks), ps = std::to_string(p),
                            ss = std::to_string(steps), o = r == 0 ? file : "/dev/null";
          execl("/proc/self/exe", self, "--rank", rs.c_str(), "--world", ws.c_str(), "--port", ps.c_str(),
                "--steps", ss.c_str(), "--stage", "grid", "--grid", grid.c_str(), "--spread", mode.c_str(),
                "--out", o.c_str(),
                static_cast<char*>(nullptr));
          _exit(127);
        }
        pids.push_back(pid);
      }
      for (pid_t pid : pids) waitpid(pid, nullptr, 0);
      std::ifstream in(file);
      std::string stage, got;
      double seconds = 0, lr = 0;
      int64_t points = 0, rounds = 0;
      if (!(in >> stage >> got >> seconds >> points >> rounds >> lr)) {
        std::fprintf(stderr, "grid stage, %s: rank 0 wrote nothing\n", mode.c_str());
        return 1;
      }
      std::remove(file.c_str());
      if (mode == "off") off_s = seconds;
      const double ratio = mode == "off" ? 1.0 : off_s / seconds;
      if (mode != "off") ratios.push_back(ratio);
      std::printf(
          "{\"bench\": \"dist\", \"task\": \"fashion_mnist-28x28-b64\", \"repeat\": %d, \"stage\": \"grid\", "
          "\"grid\": \"%s\", \"ranks\": %d, \"threads_per_rank\": 1, \"grid_spread\": \"%s\", "
          "\"steps_per_point\": %lld, "
          "\"seconds\": %.2f, \"points\": %lld, \"rounds_spread\": %lld, \"chosen_lr\": %g, "
          "\"speedup_over_off\": %.3f}\n",
          repeat, grid.c_str(), ranks, mode.c_str(), static_cast<long long>(steps), seconds,
          static_cast<long long>(points), static_cast<long long>(rounds), lr, ratio);
      std::fflush(stdout);
    }
  }
  std::sort(ratios.begin(), ratios.end());
  std::printf(
      "{\"bench\": \"dist\", \"task\": \"fashion_mnist-28x28-b64\", \"stage\": \"grid\", \"grid\": \"%s\", "
      "\"ranks\": %d, \"repeats\": %zu, \"speedup_over_off_median\": %.3f, \"min\": %.3f, \"max\": %.3f}\n",
      grid.c_str(), ranks, ratios.size(), median_of(ratios), ratios.front(), ratios.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  dash::util::tune_malloc_for_training();  // what the C ABI's calls do by default (option tune_malloc)
  int ranks = 2, rank = -1, world = 1, port = 0;
  int64_t steps = 30;
  int repeats = 3;
  std::string out, only;  // only: one stage, or both when empty
  std::string spread = "off";  // a grid rank's grid_spread
  std::string grid = "dash";   // the grid stage's hpo_grid
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--ranks")) ranks = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--rank")) rank = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--world")) world = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--port")) port = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--out")) out = argv[i + 1];
    else if (!std::strcmp(argv[i], "--repeats")) repeats = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--stage")) only = argv[i + 1];
    else if (!std::strcmp(argv[i], "--spread")) spread = argv[i + 1];
    else if (!std::strcmp(argv[i], "--grid")) grid = argv[i + 1];
  }
  if (!only.empty() && only != "retrain" && only != "search" && only != "grid") {
    std::fprintf(stderr, "--stage must be retrain, search or grid, got '%s'\n", only.c_str());
    return 2;
  }
  if (grid != "dash" && grid != "small") {
    std::fprintf(stderr, "--grid must be dash or small, got '%s'\n", grid.c_str());
    return 2;
  }
  if (rank >= 0 && only == "grid") return run_grid_rank(rank, world, port, steps, grid, spread, out);
  if (rank >= 0) return run_rank(rank, world, port, steps, only, out);
  if (only == "grid") return grid_driver(argv[0], ranks, steps, repeats, grid);

  // The driver: per repeat, one rank alone, then `ranks` ranks at once, each
  // a process.
  const char* stages[2] = {"retrain", "search"};
  std::vector<double> speedups[2];
  for (int repeat = 0; repeat < repeats; ++repeat) {
    double alone_rate[2] = {0, 0};
    for (int w : {1, ranks}) {
      const int p = dash_test::free_loopback_port();
      std::vector<pid_t> pids;
      std::vector<std::string> files;
      for (int r = 0; r < w; ++r) {
        files.push_back("/tmp/dashnas_bench_dist." + std::to_string(getpid()) + "." + std::to_string(r));
        const pid_t pid = fork();
        if (pid == 0) {
          const std::string rs = std::to_string(r), ws = std::to_string(w), ps = std::to_string(p),
                            ss = std::to_string(steps);
          execl("/proc/self/exe", argv[0], "--rank", rs.c_str(), "--world", ws.c_str(), "--port", ps.c_str(),
                "--steps", ss.c_str(), "--stage", only.empty() ? "" : only.c_str(), "--out", files.back().c_str(),
                static_cast<char*>(nullptr));
          _exit(127);
        }
        pids.push_back(pid);
      }
      for (pid_t pid : pids) waitpid(pid, nullptr, 0);
      std::ifstream in(files[0]);  // rank 0's figures (every rank takes the same steps)
      std::string stage;
      double seconds = 0, reduce = 0, all = 0;
      int64_t done = 0, bytes = 0, count = 0;
      while (in >> stage >> seconds >> done >> reduce >> bytes >> all >> count) {
        const int i = stage == "retrain" ? 0 : 1;
        const double steps_per_s = static_cast<double>(done) / seconds;
        const double samples_per_s = steps_per_s * 64.0 * w;
        if (w == 1) alone_rate[i] = samples_per_s;
        const double speedup = alone_rate[i] > 0 ? samples_per_s / alone_rate[i] : 0.0;
        if (w > 1) speedups[i].push_back(speedup);
        std::printf(
            "{\"bench\": \"dist\", \"task\": \"fashion_mnist-28x28-b64\", \"repeat\": %d, \"stage\": \"%s\", "
            "\"ranks\": %d, \"threads_per_rank\": 1, \"steps\": %lld, \"steps_per_s\": %.3f, "
            "\"samples_per_s\": %.1f, \"speedup\": %.3f, \"allreduce_share\": %.3f, \"allreduce_bytes\": %lld, "
            "\"collectives_per_step\": %.1f, \"collective_share\": %.3f}\n",
            repeat, stage.c_str(), w, static_cast<long long>(done), steps_per_s, samples_per_s, speedup,
            reduce / seconds, static_cast<long long>(bytes),
            static_cast<double>(count) / static_cast<double>(std::max<int64_t>(1, done)), all / seconds);
      }
      for (const auto& f : files) std::remove(f.c_str());
      std::fflush(stdout);
    }
  }
  for (int i = 0; i < 2 && ranks > 1; ++i) {
    std::vector<double> v = speedups[i];
    if (v.empty()) continue;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    const double median = median_of(v);
    std::printf(
        "{\"bench\": \"dist\", \"task\": \"fashion_mnist-28x28-b64\", \"stage\": \"%s\", \"ranks\": %d, "
        "\"repeats\": %zu, \"steps\": %lld, \"speedup_median\": %.3f, \"speedup_min\": %.3f, "
        "\"speedup_max\": %.3f}\n",
        stages[i], ranks, n, static_cast<long long>(steps), median, v.front(), v.back());
  }
  return 0;
}
