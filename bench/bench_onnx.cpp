// Per-sample inference latency of dash_infer against ONNX Runtime on the
// exported file, side by side in one run, and the sizes of the .dash and
// .onnx files; one JSON line per model and batch size:
//
//   dashnas_bench_onnx ORT_RUN.js NODE_MODULES [WORK_DIR]
//
// Two models: Fashion-MNIST (WRN-16-1 with the architecture a 300 s search
// found, bench/results/issue14) retrained 1 epoch on 1,000 images, and a 1D
// ResNet on synthetic 4,096-sample clips (its stem divides them by 8). The
// weights matter little for latency; the architecture is the real one.
// Rounds alternate dash_infer and ONNX Runtime; medians over 3 rounds. Both
// run on one thread (OMP_NUM_THREADS=1 for LibTorch, intraOpNumThreads 1 for
// ONNX Runtime, set by ort_run.js). ONNX Runtime's time is session.run
// alone, measured inside node.

#include <dash/dash.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace {

using json = nlohmann::json;

void check(dash_status s, const char* what) {
  if (s != DASH_OK) throw std::runtime_error(std::string(what) + ": " + dash_last_error());
}

long file_size(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? static_cast<long>(st.st_size) : -1;
}

dash_model* retrain(dash_task* task, const json& arch, const std::string& options) {
  dash_arch* a = nullptr;
  check(dash_arch_from_json(arch.dump().c_str(), &a), "dash_arch_from_json");
  dash_model* model = nullptr;
  check(dash_retrain(task, a, options.c_str(), nullptr, nullptr, &model), "dash_retrain");
  dash_arch_free(a);
  return model;
}

json layers(const std::vector<std::pair<int, int>>& kd) {
  json out = json::array();
  for (const auto& [k, d] : kd) out.push_back({{"kernel_size", k}, {"dilation", d}});
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median ms of one dash_infer call on x (n samples) over `repeats` calls.
double dash_ms(dash_model* model, const std::vector<float>& x, int64_t n, int repeats) {
  int64_t per = 0;
  check(dash_model_output_size(model, &per), "dash_model_output_size");
  std::vector<float> out(static_cast<size_t>(n * per));
  std::vector<double> ms;
  check(dash_infer(model, x.data(), n, out.data(), n * per), "dash_infer");  // warm-up
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    check(dash_infer(model, x.data(), n, out.data(), n * per), "dash_infer");
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(ms);
}

double ort_ms(const std::string& script, const std::string& modules, const std::string& onnx,
              const std::string& work, const std::vector<float>& x, const std::vector<int64_t>& shape,
              int repeats) {
  const std::string in = work + "/in.f32", out = work + "/out.f32", log = work + "/ort.log";
  std::ofstream(in, std::ios::binary).write(reinterpret_cast<const char*>(x.data()),
                                            static_cast<std::streamsize>(x.size() * sizeof(float)));
  std::string dims;
  for (int64_t s : shape) dims += (dims.empty() ? "" : ",") + std::to_string(s);
  const std::string cmd = "NODE_PATH='" + modules + "' node '" + script + "' '" + onnx + "' '" + in + "' " + dims +
                          " '" + out + "' " + std::to_string(repeats) + " > '" + log + "' 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream f(log);
    throw std::runtime_error("ONNX Runtime failed: " + std::string(std::istreambuf_iterator<char>(f), {}));
  }
  std::ifstream f(log);
  return json::parse(std::string(std::istreambuf_iterator<char>(f), {})).at("median_ms").get<double>();
}

void measure(const std::string& name, dash_model* model, const std::vector<int64_t>& input_shape,
             const std::string& script, const std::string& modules, const std::string& work) {
  const std::string dash_path = work + "/" + name + ".dash", onnx_path = work + "/" + name + ".onnx";
  check(dash_model_save(model, dash_path.c_str()), "dash_model_save");
  check(dash_model_export_onnx(model, onnx_path.c_str(), nullptr), "dash_model_export_onnx");
  int64_t per = 1;
  for (int64_t s : input_shape) per *= s;
  std::mt19937 rng(1);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (int64_t n : {1, 64}) {
    std::vector<float> x(static_cast<size_t>(n * per));
    for (auto& v : x) v = g(rng);
    std::vector<int64_t> shape = {n};
    shape.insert(shape.end(), input_shape.begin(), input_shape.end());
    const int repeats = n == 1 ? 50 : 10;
    std::vector<double> d, o;
    for (int round = 0; round < 3; ++round) {
      d.push_back(dash_ms(model, x, n, repeats));
      o.push_back(ort_ms(script, modules, onnx_path, work, x, shape, repeats));
    }
    const double dm = median(d) / static_cast<double>(n), om = median(o) / static_cast<double>(n);
    std::printf("%s\n", json{{"bench", "onnx_latency"},
                             {"model", name},
                             {"batch", n},
                             {"dash_infer_ms_per_sample", dm},
                             {"onnxruntime_ms_per_sample", om},
                             {"dash_over_onnxruntime", dm / om},
                             {"dash_file_bytes", file_size(dash_path)},
                             {"onnx_file_bytes", file_size(onnx_path)},
                             {"rounds", 3},
                             {"calls_per_round", repeats},
                             {"threads", 1}}
                            .dump()
                            .c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: dashnas_bench_onnx ORT_RUN.js NODE_MODULES [WORK_DIR]\n");
    return 2;
  }
  const std::string script = argv[1], modules = argv[2], work = argc > 3 ? argv[3] : "/tmp/dashnas_bench_onnx";
  std::system(("mkdir -p '" + work + "'").c_str());
  try {
    const std::string fm = "/usr/share/datasets/fashion-mnist/";
    dash_task* task = nullptr;
    check(dash_task_create(R"({"kind": "classification", "input_shape": [1, 28, 28], "num_classes": 10})", &task),
          "dash_task_create");
    check(dash_task_load_files(task, DASH_SPLIT_TRAIN, (fm + "train-images-idx3-ubyte.gz").c_str(),
                               (fm + "train-labels-idx1-ubyte.gz").c_str()),
          "dash_task_load_files");
    // The argmax of the 300 s search in bench/results/issue14/fashion_mnist_300s_dash.json.
    const json fm_arch = {{"backbone", "wrn-16-1"},
                          {"layers", layers({{7, 1}, {3, 1}, {3, 3}, {3, 3}, {3, 15}, {3, 1}, {3, 1}, {3, 15},
                                             {3, 7}, {3, 15}, {3, 1}, {3, 1}, {3, 15}})}};
    dash_model* model = retrain(task, fm_arch, R"({"epochs": 1, "max_train": 1000, "threads": 1})");
    measure("fashion_mnist_wrn16", model, {1, 28, 28}, script, modules, work);
    dash_model_free(model);
    dash_task_free(task);

    const int64_t len = 4096, n = 200;
    check(dash_task_create(R"({"kind": "classification", "input_shape": [1, 4096], "num_classes": 10})", &task),
          "dash_task_create");
    std::vector<float> x(static_cast<size_t>(n * len));
    std::vector<int64_t> y(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      y[static_cast<size_t>(i)] = i % 10;
      for (int64_t t = 0; t < len; ++t) {
        x[static_cast<size_t>(i * len + t)] = std::sin(0.01f * static_cast<float>((i % 10 + 1) * t));
      }
    }
    check(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), y.data(), n), "dash_task_set_data");
    const json seq_arch = {{"backbone", "resnet1d-1-stem8"},
                           {"layers", layers({{7, 7}, {3, 15}, {5, 1}, {9, 3}, {3, 1}, {7, 1}, {3, 15}, {5, 3}, {3, 1}})}};
    model = retrain(task, seq_arch, R"({"epochs": 1, "threads": 1})");
    measure("sequence_4096_resnet1d_stem8", model, {1, len}, script, modules, work);
    dash_model_free(model);
    dash_task_free(task);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dashnas_bench_onnx: %s\n", e.what());
    return 1;
  }
  return 0;
}
