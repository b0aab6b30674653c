#pragma once
// What the C ABI tests share: a small 1D task, training it, files and
// status checks. Only the public header: these tests see what users see.

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "dash/dash.h"

namespace dash_test {

inline std::string last_error() { return dash_last_error(); }

// The text of a string the library returned, which it frees.
inline std::string take(char* s) {
  std::string out = s ? s : "";
  dash_string_free(s);
  return out;
}

#define EXPECT_STATUS(call, status, text)                                                  \
  do {                                                                                     \
    const dash_status s_ = (call);                                                         \
    EXPECT_EQ(s_, status) << dash_status_name(s_) << ": " << dash_last_error();             \
    EXPECT_NE(last_error().find(text), std::string::npos)                                  \
        << "message '" << dash_last_error() << "' lacks '" << (text) << "'";               \
  } while (0)

#define ASSERT_OK(call) ASSERT_EQ((call), DASH_OK) << dash_last_error()

inline std::string scratch(const std::string& name) {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/dash_capi_XXXXXX";
    const char* d = mkdtemp(tmpl);
    return std::string(d ? d : "/tmp");
  }();
  return dir + "/" + name;
}

inline std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

// A 1D task a small network learns in a few steps: class 1 clips hold a
// faster sine than class 0, at a random phase, plus noise.
inline const char* kSpec = R"({"kind": "classification", "input_shape": [1, 32], "num_classes": 2})";
inline constexpr int64_t kLen = 32;

inline void make_clips(int64_t n, uint32_t seed, std::vector<float>* x, std::vector<int64_t>* y) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> phase(0.0f, 6.2831853f);
  std::normal_distribution<float> noise(0.0f, 0.1f);
  x->resize(static_cast<size_t>(n * kLen));
  y->resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t label = i % 2;
    const float freq = label ? 0.9f : 0.25f;
    const float ph = phase(rng);
    for (int64_t t = 0; t < kLen; ++t) (*x)[i * kLen + t] = std::sin(freq * t + ph) + noise(rng);
    (*y)[i] = label;
  }
}

inline dash_task* make_task(int64_t n_train = 96) {
  dash_task* task = nullptr;
  EXPECT_EQ(dash_task_create(kSpec, &task), DASH_OK) << dash_last_error();
  std::vector<float> x;
  std::vector<int64_t> y;
  make_clips(n_train, 1, &x, &y);
  EXPECT_EQ(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), y.data(), n_train), DASH_OK)
      << dash_last_error();
  make_clips(40, 2, &x, &y);
  EXPECT_EQ(dash_task_set_data(task, DASH_SPLIT_TEST, x.data(), y.data(), 40), DASH_OK)
      << dash_last_error();
  return task;
}

inline const char* kSearchOptions = R"({"epochs": 1, "hpo": false, "threads": 1, "batch_size": 16})";
inline const char* kRetrainOptions = R"({"epochs": 3, "threads": 1, "batch_size": 16})";

inline dash_model* train_model(dash_task* task) {
  dash_arch* arch = nullptr;
  EXPECT_EQ(dash_search(task, kSearchOptions, nullptr, nullptr, &arch), DASH_OK) << dash_last_error();
  dash_model* model = nullptr;
  EXPECT_EQ(dash_retrain(task, arch, kRetrainOptions, nullptr, nullptr, &model), DASH_OK)
      << dash_last_error();
  dash_arch_free(arch);
  return model;
}

inline std::vector<float> infer(dash_model* model, const std::vector<float>& x, int64_t n) {
  int64_t per = 0;
  EXPECT_EQ(dash_model_output_size(model, &per), DASH_OK);
  std::vector<float> out(static_cast<size_t>(n * per));
  EXPECT_EQ(dash_infer(model, x.data(), n, out.data(), n * per), DASH_OK) << dash_last_error();
  return out;
}

}  // namespace dash_test

namespace dash_test {

// Retrain options that checkpoint every epoch into `dir`.
inline std::string checkpointed_options(const std::string& dir, int epochs, bool resume) {
  return R"({"epochs": )" + std::to_string(epochs) +
         R"(, "threads": 1, "batch_size": 16, "checkpoint_dir": ")" + dir + R"(", "resume": )" +
         (resume ? "true" : "false") + "}";
}

}  // namespace dash_test
