// ONNX export through the C ABI, checked against ONNX Runtime: for each kind
// of network the library trains (2D Wide ResNets with large searched
// dilations, one on Fashion-MNIST, a 1D ResNet with its downsampling stem, a regression and a
// causal dense network, each with its output affine map), ONNX Runtime
// (onnxruntime-node, run by tests/onnx/ort_run.js) must give what dash_infer
// gives, on random and real inputs, at batch 1 and 37. Without Node.js or
// onnxruntime-node those tests are skipped, saying so.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "support.h"
#include "dash/dash.h"

namespace {

using namespace dash_test;
using json = nlohmann::json;

// A trained model and a generator of its task's "real" inputs and targets.
struct Case {
  std::string name;
  std::vector<int64_t> input_shape;  // per sample
  dash_model* model = nullptr;
  std::vector<float> (*real)(int64_t n, uint32_t seed) = nullptr;
};

int64_t per_sample(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// 2D, 3 classes: horizontal stripes, vertical stripes or a blob, plus noise,
// in raw units far from 0/1 so that the normalisation matters.
std::vector<float> images(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  std::vector<float> x(static_cast<size_t>(n * 144));
  for (int64_t i = 0; i < n; ++i) {
    for (int r = 0; r < 12; ++r) {
      for (int c = 0; c < 12; ++c) {
        const float v = i % 3 == 0 ? (r % 4 < 2) : i % 3 == 1 ? (c % 4 < 2) : ((r - 6) * (r - 6) + (c - 6) * (c - 6) < 10);
        x[static_cast<size_t>(i * 144 + r * 12 + c)] = 100.0f + 50.0f * v + 10.0f * noise(rng);
      }
    }
  }
  return x;
}

// Fashion-MNIST test images (as the dataset package ships them), pixel
// values 0-255 as a user passes them to dash_infer.
std::vector<float> fashion_images(int64_t n, uint32_t seed) {
  const std::string cmd = "gzip -dc /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
  FILE* f = popen(cmd.c_str(), "r");
  std::vector<unsigned char> bytes(static_cast<size_t>(16 + (seed + n) * 784));
  const size_t got = f ? std::fread(bytes.data(), 1, bytes.size(), f) : 0;
  if (f) pclose(f);
  EXPECT_EQ(got, bytes.size()) << cmd;
  return std::vector<float>(bytes.begin() + 16 + seed * 784, bytes.end());
}

// 1D, long enough (1100) for the automatic stem: a slow or a fast sine.
std::vector<float> long_clips(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> phase(0.0f, 6.2831853f);
  std::vector<float> x(static_cast<size_t>(n * 1100));
  for (int64_t i = 0; i < n; ++i) {
    const float f = i % 2 ? 0.3f : 0.05f, p = phase(rng);
    for (int t = 0; t < 1100; ++t) x[static_cast<size_t>(i * 1100 + t)] = std::sin(f * t + p);
  }
  return x;
}

// n samples of `per` standard normal values: the 2D regression's 10x10 maps
// (100), the dense 1D task's 2 channels of 40 (80).
std::vector<float> gaussian(int64_t n, int64_t per, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * per));
  for (auto& v : x) v = g(rng);
  return x;
}
std::vector<float> maps(int64_t n, uint32_t seed) { return gaussian(n, 100, seed); }
std::vector<float> sequences(int64_t n, uint32_t seed) { return gaussian(n, 80, seed); }

dash_model* train(const std::string& spec, const std::vector<float>& x, const std::vector<float>& y_float,
                  const std::vector<int64_t>& y_class, int64_t n, const json& layers, const std::string& backbone) {
  dash_task* task = nullptr;
  EXPECT_EQ(dash_task_create(spec.c_str(), &task), DASH_OK) << dash_last_error();
  const void* y = y_class.empty() ? static_cast<const void*>(y_float.data()) : y_class.data();
  EXPECT_EQ(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), y, n), DASH_OK) << dash_last_error();
  dash_arch* arch = nullptr;
  const json a = {{"backbone", backbone}, {"layers", layers}};
  EXPECT_EQ(dash_arch_from_json(a.dump().c_str(), &arch), DASH_OK) << dash_last_error();
  dash_model* model = nullptr;
  EXPECT_EQ(dash_retrain(task, arch, R"({"epochs": 2, "threads": 1, "batch_size": 16, "depth": 10})", nullptr,
                         nullptr, &model),
            DASH_OK)
      << dash_last_error();
  dash_arch_free(arch);
  dash_task_free(task);
  return model;
}

json layers(const std::vector<std::pair<int, int>>& kd) {
  json out = json::array();
  for (const auto& [k, d] : kd) out.push_back({{"kernel_size", k}, {"dilation", d}});
  return out;
}

// Freed at exit, so that the leak checker sees every model released.
struct Cases {
  std::vector<Case> all;
  ~Cases() {
    for (const Case& c : all) dash_model_free(c.model);
  }
};

const std::vector<Case>& cases() {
  static const Cases trained{[] {
    std::vector<Case> c;
    const int64_t n = 64;
    {  // large kernels, dilations cropped to one tap on the 3x3 maps
      std::vector<int64_t> y(n);
      for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = i % 3;
      c.push_back({"wrn_classification", {1, 12, 12},
                   train(R"({"kind": "classification", "input_shape": [1, 12, 12], "num_classes": 3})",
                         images(n, 1), {}, y, n, layers({{9, 1}, {7, 3}, {5, 7}, {3, 15}, {9, 3}, {3, 1}, {7, 1}}),
                         "wrn-10-1"),
                   images});
    }
    {  // real data: 256 Fashion-MNIST training images, the 300 s search's argmax
      dash_task* task = nullptr;
      EXPECT_EQ(dash_task_create(R"({"kind": "classification", "input_shape": [1, 28, 28], "num_classes": 10})",
                                 &task),
                DASH_OK);
      const std::string fm = "/usr/share/datasets/fashion-mnist/";
      EXPECT_EQ(dash_task_load_files(task, DASH_SPLIT_TRAIN, (fm + "train-images-idx3-ubyte.gz").c_str(),
                                     (fm + "train-labels-idx1-ubyte.gz").c_str()),
                DASH_OK)
          << dash_last_error();
      const json a = {{"backbone", "wrn-10-1"}, {"layers", layers({{7, 1}, {3, 3}, {3, 15}, {3, 7}, {3, 15}, {5, 1}, {3, 15}})}};
      dash_arch* arch = nullptr;
      EXPECT_EQ(dash_arch_from_json(a.dump().c_str(), &arch), DASH_OK) << dash_last_error();
      dash_model* model = nullptr;
      EXPECT_EQ(dash_retrain(task, arch, R"({"epochs": 1, "max_train": 256, "threads": 1, "batch_size": 32, "depth": 10})",
                             nullptr, nullptr, &model),
                DASH_OK)
          << dash_last_error();
      dash_arch_free(arch);
      dash_task_free(task);
      c.push_back({"wrn_fashion_mnist", {1, 28, 28}, model, fashion_images});
    }
    {
      std::vector<int64_t> y(n);
      for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = i % 2;
      c.push_back({"resnet1d_classification", {1, 1100},
                   train(R"({"kind": "classification", "input_shape": [1, 1100], "num_classes": 2})",
                         long_clips(n, 1), {}, y, n,
                         layers({{9, 1}, {7, 3}, {5, 7}, {3, 15}, {9, 3}, {3, 1}, {7, 1}, {5, 1}, {3, 3}}),
                         "resnet1d-1-stem4"),
                   long_clips});
    }
    {  // targets far from 0 with unequal scales: a non-trivial output affine map
      const std::vector<float> x = maps(n, 1);
      std::vector<float> y(static_cast<size_t>(n * 2));
      for (int64_t i = 0; i < n; ++i) {
        y[static_cast<size_t>(2 * i)] = 500.0f + 40.0f * x[static_cast<size_t>(i * 100 + 55)];
        y[static_cast<size_t>(2 * i + 1)] = -3.0f + 0.1f * x[static_cast<size_t>(i * 100)];
      }
      c.push_back({"wrn_regression", {1, 10, 10},
                   train(R"({"kind": "regression", "input_shape": [1, 10, 10], "num_outputs": 2})", x, y, {}, n,
                         layers({{5, 1}, {9, 1}, {3, 3}, {7, 1}, {3, 7}, {5, 3}, {3, 1}}), "wrn-10-1"),
                   maps});
    }
    {  // causal by default: the running sum of channel 0, offset
      const std::vector<float> x = sequences(n, 1);
      std::vector<float> y(static_cast<size_t>(n * 40));
      for (int64_t i = 0; i < n; ++i) {
        float sum = 0;
        for (int t = 0; t < 40; ++t) {
          sum += x[static_cast<size_t>(i * 80 + t)];
          y[static_cast<size_t>(i * 40 + t)] = 20.0f + 5.0f * sum;
        }
      }
      c.push_back({"resnet1d_dense_causal", {2, 40},
                   train(R"({"kind": "dense", "input_shape": [2, 40], "num_outputs": 1})", x, y, {}, n,
                         layers({{9, 1}, {7, 3}, {5, 7}, {3, 15}, {9, 3}, {3, 1}, {7, 1}, {5, 1}, {3, 3}}),
                         "resnet1d-1-causal-dense"),
                   sequences});
    }
    return c;
  }()};
  return trained.all;
}

std::string node_path() {
  const char* env = std::getenv("DASH_ONNXRUNTIME_MODULES");
  return env && *env ? env : DASH_ONNXRUNTIME_MODULES;
}

// Runs the exported model with ONNX Runtime; false (and why) if it cannot run.
bool ort_run(const std::string& model, const std::vector<float>& x, std::vector<int64_t> shape,
             std::vector<float>* y, std::string* why) {
  static int calls = 0;
  const std::string in = scratch("ort_in_" + std::to_string(calls) + ".f32");
  const std::string out = scratch("ort_out_" + std::to_string(calls++) + ".f32");
  write_all(in, std::string(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float)));
  std::string dims;
  for (int64_t s : shape) dims += (dims.empty() ? "" : ",") + std::to_string(s);
  const std::string log = out + ".log";
  const std::string cmd = "NODE_PATH='" + node_path() + "' node '" + DASH_ORT_RUN + "' '" + model + "' '" + in +
                          "' " + dims + " '" + out + "' > '" + log + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    *why = "ONNX Runtime did not run (" + cmd + "): " + read_all(log);
    return false;
  }
  const std::string bytes = read_all(out);
  y->resize(bytes.size() / sizeof(float));
  std::memcpy(y->data(), bytes.data(), y->size() * sizeof(float));
  return true;
}

class OnnxRuntime : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string cmd = "NODE_PATH='" + node_path() + "' node -e \"require('onnxruntime-node')\" > /dev/null 2>&1";
    available_ = std::system(cmd.c_str()) == 0;
  }
  void SetUp() override {
    if (!available_) {
      GTEST_SKIP() << "ONNX Runtime is not installed: no node, or no onnxruntime-node under " << node_path()
                   << " (scripts/test.sh installs it from the npm registry; it could not be reached?)";
    }
  }
  static bool available_;
};
bool OnnxRuntime::available_ = false;

void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0;
  double worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double diff = std::abs(double(got[i]) - want[i]);
    const double rel = diff / std::max(1e-30, std::abs(double(want[i])));
    worst = std::max(worst, std::min(diff, rel));
    if (diff > 1e-4 && rel > 1e-4) ++bad;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << want.size()
                     << " outputs differ by more than 1e-4 (absolute and relative); worst " << worst;
}

std::string exported(const Case& c, const std::string& options, const std::string& tag) {
  const std::string path = scratch("onnx/" + c.name + tag + ".onnx");
  EXPECT_EQ(dash_model_export_onnx(c.model, path.c_str(), options.c_str()), DASH_OK) << dash_last_error();
  return path;
}

TEST_F(OnnxRuntime, EveryKindOfNetworkComputesWhatDashInferDoes) {
  for (const Case& c : cases()) {
    ASSERT_NE(c.model, nullptr) << c.name;
    const std::string path = exported(c, "", "");
    for (int64_t n : {1, 37}) {
      std::vector<float> random(static_cast<size_t>(n * per_sample(c.input_shape)));
      std::mt19937 rng(7);
      std::normal_distribution<float> g(0.0f, 3.0f);
      for (auto& v : random) v = g(rng);
      for (const auto& [kind, x] : {std::pair<std::string, std::vector<float>>{"random", random},
                                    {"real", c.real(n, 11)}}) {
        std::vector<int64_t> shape = {n};
        shape.insert(shape.end(), c.input_shape.begin(), c.input_shape.end());
        std::vector<float> got;
        std::string why;
        ASSERT_TRUE(ort_run(path, x, shape, &got, &why)) << why;
        expect_close(got, infer(c.model, x, n), c.name + ", " + kind + " input, batch " + std::to_string(n));
      }
    }
  }
}

// A fixed batch at the newest opset, and normalisation left to the caller
// with the normaliser the model carries.
TEST_F(OnnxRuntime, OptionsChangeTheGraphNotWhatItComputes) {
  const Case& c = cases()[0];
  const int64_t n = 37;
  const std::vector<float> x = c.real(n, 12);
  const std::vector<float> want = infer(c.model, x, n);
  std::vector<float> got;
  std::string why;
  const std::string fixed = exported(c, R"({"opset": 17, "dynamic_batch": false, "batch_size": 37})", "_fixed");
  ASSERT_TRUE(ort_run(fixed, x, {n, 1, 12, 12}, &got, &why)) << why;
  expect_close(got, want, "opset 17, batch fixed at 37");
  EXPECT_FALSE(ort_run(fixed, c.real(1, 12), {1, 1, 12, 12}, &got, &why)) << "a fixed batch of 37 ran at 1";

  const json info = json::parse(take([&] {
    char* s = nullptr;
    EXPECT_EQ(dash_model_info(c.model, &s), DASH_OK);
    return s;
  }()));
  const float mean = info["normalizer"]["mean"][0].get<float>(), std = info["normalizer"]["std"][0].get<float>();
  std::vector<float> normalised = x;
  for (auto& v : normalised) v = (v - mean) / std;
  const std::string outside = exported(c, R"({"normalize_input": false})", "_outside");
  ASSERT_TRUE(ort_run(outside, normalised, {n, 1, 12, 12}, &got, &why)) << why;
  expect_close(got, want, "normalisation by the caller");
}

// The file says what it is: the version, backbone, task and architecture
// (protobuf stores strings as they are).
TEST(Onnx, TheFileCarriesTheTaskArchitectureAndVersion) {
  const Case& c = cases()[2];
  const std::string bytes = read_all(exported(c, "", "_meta"));
  char* s = nullptr;
  ASSERT_OK(dash_model_info(c.model, &s));
  const json info = json::parse(take(s));
  for (const std::string& want : {std::string("dashnas_version"), std::string(dash_version()),
                                  info["architecture"].dump(), info["task"].dump(), std::string("resnet1d-1-stem4")}) {
    EXPECT_NE(bytes.find(want), std::string::npos) << want;
  }
}

TEST(Onnx, BadCallsAreRefusedAndLeaveNoFile) {
  dash_model* model = cases()[4].model;
  const std::string path = scratch("onnx/refused.onnx");
  EXPECT_STATUS(dash_model_export_onnx(nullptr, path.c_str(), nullptr), DASH_INVALID_ARGUMENT, "model");
  EXPECT_STATUS(dash_model_export_onnx(model, nullptr, nullptr), DASH_INVALID_ARGUMENT, "path");
  EXPECT_STATUS(dash_model_export_onnx(model, path.c_str(), "{opset"), DASH_INVALID_ARGUMENT, "not valid JSON");
  EXPECT_STATUS(dash_model_export_onnx(model, path.c_str(), "[13]"), DASH_INVALID_ARGUMENT, "JSON object");
  EXPECT_STATUS(dash_model_export_onnx(model, path.c_str(), R"({"opset": 10})"), DASH_INVALID_ARGUMENT,
                "\"opset\" must be an integer from 11 to 17");
  EXPECT_STATUS(dash_model_export_onnx(model, path.c_str(), R"({"dynamic": true})"), DASH_INVALID_ARGUMENT,
                "unknown ONNX export option \"dynamic\"");
  EXPECT_STATUS(dash_model_export_onnx(model, path.c_str(), R"({"batch_size": 4})"), DASH_INVALID_ARGUMENT,
                "needs \"dynamic_batch\": false");
  EXPECT_STATUS(dash_model_export_onnx(model, path.c_str(), R"({"normalize_input": 1})"), DASH_INVALID_ARGUMENT,
                "true or false");
  EXPECT_NE(access(path.c_str(), F_OK), 0) << "a refused export left " << path;
  EXPECT_STATUS(dash_model_export_onnx(model, "/proc/self/no/such/dir/m.onnx", nullptr), DASH_IO_ERROR, "m.onnx");
  // And the model still exports.
  ASSERT_OK(dash_model_export_onnx(model, path.c_str(), nullptr));
  EXPECT_GT(read_all(path).size(), 1000u);
}

}  // namespace
