// Writes the fuzz targets' seed corpora from files dashnas itself produces:
// models trained and saved through the C ABI, .npy files from save_npy, the
// Fashion-MNIST IDX files Debian ships, task specs, options and architectures
// as the library prints them.
//
//   dash_fuzz_seeds <fuzz/corpus directory>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "api/options.h"
#include "dash/dash.h"
#include "task/io.h"

namespace {

namespace fs = std::filesystem;
fs::path g_out;

void check(dash_status s) {
  if (s != DASH_OK) throw std::runtime_error(std::string(dash_status_name(s)) + ": " + dash_last_error());
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + p.string());
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void seed(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(g_out / target);
  std::ofstream f(g_out / target / ("seed-" + name), std::ios::binary);
  f << bytes;
  std::printf("%s/seed-%s: %zu bytes\n", target.c_str(), name.c_str(), bytes.size());
}

std::string take(char** s) {
  std::string out = *s;
  dash_string_free(*s);
  return out;
}

// A tiny task the network learns something of in one epoch: sines of two
// frequencies (1D) or bright and dark quadrants (2D).
dash_task* tiny_task(const char* spec, int64_t sample, int64_t n) {
  dash_task* task = nullptr;
  check(dash_task_create(spec, &task));
  std::vector<float> x(static_cast<size_t>(n * sample));
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    y[i] = i % 2;
    for (int64_t t = 0; t < sample; ++t) {
      x[i * sample + t] = std::sin((y[i] ? 0.9f : 0.25f) * static_cast<float>(t) + 0.1f * i);
    }
  }
  check(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), y.data(), n));
  return task;
}

// Small networks (few, small kernels; the shallowest Wide ResNet) keep the
// model seeds, and so the fuzzer's inputs, small.
void model_seeds(const char* name, const char* spec, int64_t sample, const std::string& extra) {
  dash_task* task = tiny_task(spec, sample, 32);
  char* text = nullptr;
  check(dash_task_to_json(task, &text));
  seed("task_spec", name, take(&text));
  dash_arch* arch = nullptr;
  const std::string search = R"({"epochs": 1, "hpo": false, "threads": 1, "batch_size": 16, )"
                             R"("kernel_sizes": [3, 5], "dilations": [1, 2])" + extra + "}";
  check(dash_search(task, search.c_str(), nullptr, nullptr, &arch));
  check(dash_arch_to_json(arch, &text));
  seed("arch", std::string(name) + "-searched", take(&text));
  dash_model* model = nullptr;
  const std::string retrain = R"({"epochs": 1, "threads": 1, "batch_size": 16)" + extra + "}";
  check(dash_retrain(task, arch, retrain.c_str(), nullptr, nullptr, &model));
  const fs::path tmp = fs::temp_directory_path() / "dash_fuzz_seed.dash";
  check(dash_model_save(model, tmp.c_str()));
  const std::string file = read_file(tmp);
  fs::remove(tmp);
  // The model target's first byte is its mode: 1 repairs the checksum.
  if (std::string(name) == "1d") seed("model_file", std::string(name) + "-as-is", std::string(1, '\0') + file);
  seed("model_file", std::string(name) + "-crc-repaired", std::string(1, '\1') + file);
  dash_arch* plain = nullptr;
  check(dash_arch_plain(task, &plain));
  check(dash_arch_to_json(plain, &text));
  seed("arch", std::string(name) + "-plain", take(&text));
  dash_arch_free(plain);
  dash_model_free(model);
  dash_arch_free(arch);
  dash_task_free(task);
}

void npy_seeds() {
  const fs::path tmp = fs::temp_directory_path() / "dash_fuzz_seed.npy";
  auto one = [&](const std::string& name, const at::Tensor& t) {
    dash::task::save_npy(t, tmp);
    seed("npy", name, read_file(tmp));
  };
  one("float32-4x1x8", at::arange(32, at::kFloat).reshape({4, 1, 8}));
  one("float64-3", at::arange(3, at::kDouble));
  one("int64-labels", at::tensor({0, 1, 1, 0, 2}, at::kLong));
  one("uint8-2x3", at::arange(6, at::kByte).reshape({2, 3}));
  one("float32-scalar", at::scalar_tensor(1.5, at::kFloat));
  one("float32-empty", at::empty({0, 5}, at::kFloat));
  fs::remove(tmp);
}

void idx_seeds() {
  const fs::path dir = "/usr/share/datasets/fashion-mnist";
  // The IDX target's first byte is its mode: 1 reads gzip, 0 plain.
  const std::string labels_gz = read_file(dir / "t10k-labels-idx1-ubyte.gz");
  seed("idx", "t10k-labels-gz", std::string(1, '\1') + labels_gz);
  // Plain files: the first few records of the real ones, with their counts fixed.
  const at::Tensor labels = dash::task::load_idx(dir / "t10k-labels-idx1-ubyte.gz");
  const at::Tensor images = dash::task::load_idx(dir / "t10k-images-idx3-ubyte.gz");
  auto be32 = [](uint32_t v) {
    std::string s(4, '\0');
    for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
    return s;
  };
  const int64_t n = 3;
  std::string l = std::string("\0\0\x08\x01", 4) + be32(n);
  l.append(static_cast<const char*>(labels.data_ptr()), static_cast<size_t>(n));
  seed("idx", "t10k-labels-3", std::string(1, '\0') + l);
  std::string im = std::string("\0\0\x08\x03", 4) + be32(2) + be32(28) + be32(28);
  im.append(static_cast<const char*>(images.data_ptr()), 2 * 28 * 28);
  seed("idx", "t10k-images-2", std::string(1, '\0') + im);
}

void options_seeds() {
  // The options target's first byte picks the call: 1 search, 0 retrain.
  seed("options", "search-defaults",
       std::string(1, '\1') + dash::api::to_json(dash::api::SearchCall{}).dump());
  seed("options", "retrain-defaults",
       std::string(1, '\0') + dash::api::to_json(dash::api::RetrainCall{}).dump());
  seed("options", "search-sample",
       std::string(1, '\1') + R"({"time_budget_s": 12, "max_train": 500, "threads": 2, "kernel_sizes": [3, 5], "dilations": [1, 2]})");
  seed("options", "retrain-sample",
       std::string(1, '\0') + R"({"epochs": 3, "checkpoint_dir": "ckpt", "resume": true})");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <fuzz/corpus directory>\n", argv[0]);
    return 2;
  }
  g_out = argv[1];
  try {
    at::set_num_threads(1);
    model_seeds("1d", R"({"kind": "classification", "input_shape": [1, 32], "num_classes": 2})", 32, "");
    model_seeds("2d", R"({"kind": "classification", "input_shape": [1, 6, 6], "num_classes": 2})", 36,
                ", \"depth\": 10");
    seed("task_spec", "fashion-mnist", read_file(fs::path(DASH_SOURCE_DIR) / "scripts/tasks/fashion_mnist.json"));
    seed("task_spec", "dense", R"({"kind": "dense", "input_shape": [1, 16, 16], "num_outputs": 1, "loss": "mse"})");
    npy_seeds();
    idx_seeds();
    options_seeds();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dash_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
