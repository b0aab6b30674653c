// The C ABI as users meet it: this binary links only libdashnas.so and the
// public header (no LibTorch, no internals), so it tests what ships.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support.h"
#include "dash/dash.h"

extern "C" dash_status set_data_with_raw_split(dash_task* task, int split, const float* x,
                                               const void* y, int64_t n);

namespace {

using namespace dash_test;

// ---- version, statuses ---------------------------------------------------------

TEST(CApi, VersionMatchesHeader) {
  EXPECT_STREQ(dash_version(), DASH_VERSION_STRING);
  EXPECT_EQ(dash_abi_version(), DASH_ABI_VERSION);
  EXPECT_STREQ(dash_status_name(DASH_OK), "DASH_OK");
  EXPECT_STREQ(dash_status_name(DASH_BAD_FILE), "DASH_BAD_FILE");
  EXPECT_STREQ(dash_status_name(static_cast<dash_status>(99)), "DASH_UNKNOWN_STATUS");
  EXPECT_NE(dash_last_error(), nullptr);
}

// ---- bad input: tasks ------------------------------------------------------------

TEST(CApi, TaskCreateRejectsBadSpecs) {
  dash_task* task = reinterpret_cast<dash_task*>(0x1);  // must stay untouched
  EXPECT_STATUS(dash_task_create(nullptr, &task), DASH_INVALID_ARGUMENT, "spec_json is NULL");
  EXPECT_STATUS(dash_task_create(kSpec, nullptr), DASH_INVALID_ARGUMENT, "out is NULL");
  EXPECT_STATUS(dash_task_create("{not json", &task), DASH_INVALID_ARGUMENT, "not valid JSON");
  EXPECT_STATUS(dash_task_create(R"({"kind": "clustering", "input_shape": [1, 8]})", &task),
                DASH_INVALID_ARGUMENT, "kind");
  EXPECT_STATUS(dash_task_create(R"({"kind": "classification", "input_shape": [1, 8]})", &task),
                DASH_INVALID_ARGUMENT, "num_classes");
  EXPECT_STATUS(dash_task_create(
                    R"({"kind": "classification", "input_shape": [1, 8], "num_classes": 2, "colour": 1})",
                    &task),
                DASH_INVALID_ARGUMENT, "colour");
  EXPECT_EQ(task, reinterpret_cast<dash_task*>(0x1));
  EXPECT_NE(last_error().find("dash_task_create"), std::string::npos);
}

TEST(CApi, SetDataRejectsBadInput) {
  dash_task* task = nullptr;
  ASSERT_OK(dash_task_create(kSpec, &task));
  std::vector<float> x;
  std::vector<int64_t> y;
  make_clips(4, 1, &x, &y);
  EXPECT_STATUS(dash_task_set_data(nullptr, DASH_SPLIT_TRAIN, x.data(), y.data(), 4),
                DASH_INVALID_ARGUMENT, "task is NULL");
  EXPECT_STATUS(dash_task_set_data(task, DASH_SPLIT_TRAIN, nullptr, y.data(), 4),
                DASH_INVALID_ARGUMENT, "x is NULL");
  EXPECT_STATUS(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), nullptr, 4),
                DASH_INVALID_ARGUMENT, "y is NULL");
  EXPECT_STATUS(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), y.data(), 0),
                DASH_INVALID_ARGUMENT, "n must be >= 1");
  EXPECT_STATUS(set_data_with_raw_split(task, 7, x.data(), y.data(), 4), DASH_INVALID_ARGUMENT,
                "split 7");
  y[2] = 5;
  EXPECT_STATUS(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), y.data(), 4),
                DASH_INVALID_ARGUMENT, "label 5 is out of range");
  y[2] = 0;
  x[3 * kLen + 1] = std::nanf("");
  EXPECT_STATUS(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), y.data(), 4),
                DASH_INVALID_ARGUMENT, "NaN");
  x[3 * kLen + 1] = INFINITY;
  EXPECT_STATUS(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), y.data(), 4),
                DASH_INVALID_ARGUMENT, "Inf");
  int64_t size = -1;
  ASSERT_OK(dash_task_split_size(task, DASH_SPLIT_TRAIN, &size));
  EXPECT_EQ(size, 0);  // nothing was stored by the failing calls
  dash_task_free(task);
}

TEST(CApi, EmptySplitsAreErrors) {
  dash_task* task = nullptr;
  ASSERT_OK(dash_task_create(kSpec, &task));
  dash_arch* arch = nullptr;
  EXPECT_STATUS(dash_search(task, kSearchOptions, nullptr, nullptr, &arch), DASH_INVALID_ARGUMENT,
                "train split is empty");
  EXPECT_EQ(arch, nullptr);
  ASSERT_OK(dash_arch_plain(task, &arch));
  dash_model* model = nullptr;
  EXPECT_STATUS(dash_retrain(task, arch, kRetrainOptions, nullptr, nullptr, &model),
                DASH_INVALID_ARGUMENT, "train split is empty");
  dash_arch_free(arch);
  dash_task_free(task);
}

TEST(CApi, LoadFilesReportsMissingTruncatedAndMismatchedFiles) {
  dash_task* task = nullptr;
  ASSERT_OK(dash_task_create(kSpec, &task));
  EXPECT_STATUS(dash_task_load_files(task, DASH_SPLIT_TRAIN, "/nonexistent/x.npy", "/nonexistent/y.npy"),
                DASH_IO_ERROR, "/nonexistent/x.npy");
  // A valid .npy header promising more data than the file holds.
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 1, 32), }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ');
  header += '\n';
  std::string npy = std::string("\x93NUMPY\x01\x00", 8);
  npy += static_cast<char>(header.size() & 0xff);
  npy += static_cast<char>(header.size() >> 8);
  npy += header;
  write_all(scratch("x_trunc.npy"), npy + std::string(100, '\0'));
  EXPECT_STATUS(dash_task_load_files(task, DASH_SPLIT_TRAIN, scratch("x_trunc.npy").c_str(),
                                     scratch("x_trunc.npy").c_str()),
                DASH_BAD_FILE, "x_trunc.npy");
  write_all(scratch("x_ok.npy"), npy + std::string(4 * 32 * 4, '\0'));
  // Labels file: x used as y has the wrong dtype/shape for classification.
  EXPECT_STATUS(dash_task_load_files(task, DASH_SPLIT_TRAIN, scratch("x_ok.npy").c_str(),
                                     scratch("x_ok.npy").c_str()),
                DASH_INVALID_ARGUMENT, "train");
  // Inputs of another shape than the spec's: a task of 28x28 images given 32-sample rows.
  dash_task* images = nullptr;
  ASSERT_OK(dash_task_create(
      R"({"kind": "classification", "input_shape": [1, 28, 28], "num_classes": 2})", &images));
  std::vector<int64_t> labels(4, 0);
  EXPECT_STATUS(dash_task_load_files(images, DASH_SPLIT_TRAIN, scratch("x_ok.npy").c_str(),
                                     scratch("x_ok.npy").c_str()),
                DASH_INVALID_ARGUMENT, "x has shape [4, 1, 32] but the task expects [n, 1, 28, 28]");
  dash_task_free(images);
  write_all(scratch("garbage.npy"), "this is not an array");
  EXPECT_STATUS(dash_task_load_files(task, DASH_SPLIT_TRAIN, scratch("garbage.npy").c_str(),
                                     scratch("garbage.npy").c_str()),
                DASH_BAD_FILE, "garbage.npy");
  EXPECT_STATUS(dash_task_load_files(task, DASH_SPLIT_TRAIN, nullptr, "y"), DASH_INVALID_ARGUMENT,
                "x_path is NULL");
  dash_task_free(task);
}

// ---- bad input: options ------------------------------------------------------------

TEST(CApi, OptionsAreCheckedByNameAndType) {
  dash_task* task = make_task(8);
  dash_arch* arch = nullptr;
  EXPECT_STATUS(dash_search(task, R"({"epoch": 1})", nullptr, nullptr, &arch), DASH_INVALID_ARGUMENT,
                "unknown option 'epoch'");
  EXPECT_STATUS(dash_search(task, R"({"epochs": "one"})", nullptr, nullptr, &arch),
                DASH_INVALID_ARGUMENT, "'epochs' must be of type int");
  EXPECT_STATUS(dash_search(task, R"({"hpo": 1})", nullptr, nullptr, &arch), DASH_INVALID_ARGUMENT,
                "'hpo' must be of type bool");
  EXPECT_STATUS(dash_search(task, R"({"dropout": 0.1})", nullptr, nullptr, &arch),
                DASH_INVALID_ARGUMENT, "used by dash_retrain");
  EXPECT_STATUS(dash_search(task, R"({"device": "tpu"})", nullptr, nullptr, &arch),
                DASH_INVALID_ARGUMENT, "must be one of auto, cpu, cuda");
  EXPECT_STATUS(dash_search(task, R"({"epochs": -1})", nullptr, nullptr, &arch), DASH_INVALID_ARGUMENT,
                "'epochs' must be >= 0");
  EXPECT_STATUS(dash_search(task, R"({"max_cost_ratio": 0.5})", nullptr, nullptr, &arch),
                DASH_INVALID_ARGUMENT, "'max_cost_ratio' must be 0 (no limit) or >= 1");
  // A number too large for a double is bad JSON, not an internal error (fuzzing found it).
  EXPECT_STATUS(dash_search(task, R"({"lr": 1E4467440737095516})", nullptr, nullptr, &arch),
                DASH_INVALID_ARGUMENT, "not valid JSON");
  EXPECT_STATUS(dash_arch_from_json(R"({"backbone": "x", "layers": [], "z": 1E4467440737095516})", &arch),
                DASH_INVALID_ARGUMENT, "not valid JSON");
  dash_task* none = nullptr;
  EXPECT_STATUS(dash_task_create(R"({"kind": "regression", "input_shape": [1, 8E99999]})", &none),
                DASH_INVALID_ARGUMENT, "not valid JSON");
  EXPECT_EQ(none, nullptr);
  // null means "not set" only where that is the default.
  EXPECT_STATUS(dash_search(task, R"({"epochs": null})", nullptr, nullptr, &arch),
                DASH_INVALID_ARGUMENT, "'epochs' must be of type int, got null");
  EXPECT_STATUS(dash_search(task, "[1, 2]", nullptr, nullptr, &arch), DASH_INVALID_ARGUMENT,
                "JSON object");
  EXPECT_EQ(arch, nullptr);
  dash_task_free(task);
  // "cuda" is refused, saying why, before any work: without a CUDA build, or
  // with one on a machine without a GPU. Where both are, the device passes
  // and the empty task is refused next.
  dash_task* empty = nullptr;
  ASSERT_OK(dash_task_create(kSpec, &empty));
  const dash_status cuda = dash_search(empty, R"({"device": "cuda"})", nullptr, nullptr, &arch);
  const std::string message = last_error();
  if (cuda == DASH_UNSUPPORTED) {
    EXPECT_TRUE(message.find("needs a build with -DDASH_WITH_CUDA=ON") != std::string::npos ||
                message.find("LibTorch sees no GPU") != std::string::npos)
        << message;
  } else {
    EXPECT_EQ(cuda, DASH_INVALID_ARGUMENT) << message;
    EXPECT_NE(message.find("train split is empty"), std::string::npos) << message;
  }
  EXPECT_EQ(arch, nullptr);
  dash_task_free(empty);
}

TEST(CApi, OptionsDescribeListsEveryOptionAndItsDefaultsAreAccepted) {
  char* text = nullptr;
  ASSERT_OK(dash_options_describe(&text));
  const std::string d = text;
  dash_string_free(text);
  for (const char* name : {"seed", "threads", "device", "time_budget_s", "epochs", "kernel_sizes",
                           "dilations", "hpo"}) {
    EXPECT_NE(d.find(std::string("\"") + name + "\": {"), std::string::npos) << name;
  }
  EXPECT_NE(d.find("\"help\""), std::string::npos);
  EXPECT_NE(d.find("\"used_by\""), std::string::npos);
}

// ---- the pipeline end to end ---------------------------------------------------------

TEST(CApi, SearchRetrainInferSaveLoadRoundTrip) {
  dash_task* task = make_task();
  dash_arch* arch = nullptr;
  ASSERT_OK(dash_search(task, kSearchOptions, nullptr, nullptr, &arch));
  char* arch_text = nullptr;
  ASSERT_OK(dash_arch_to_json(arch, &arch_text));
  const std::string arch_json = arch_text;
  dash_string_free(arch_text);
  EXPECT_NE(arch_json.find("\"layers\""), std::string::npos);
  EXPECT_NE(arch_json.find("\"hyperparameters\""), std::string::npos);
  // The JSON form rebuilds the same architecture.
  dash_arch* again = nullptr;
  ASSERT_OK(dash_arch_from_json(arch_json.c_str(), &again));
  ASSERT_OK(dash_arch_to_json(again, &arch_text));
  EXPECT_EQ(arch_json, arch_text);
  dash_string_free(arch_text);
  dash_arch_free(again);

  dash_model* model = nullptr;
  ASSERT_OK(dash_retrain(task, arch, kRetrainOptions, nullptr, nullptr, &model));
  dash_arch_free(arch);

  std::vector<float> x;
  std::vector<int64_t> y;
  make_clips(40, 2, &x, &y);
  const auto logits = infer(model, x, 40);
  ASSERT_EQ(logits.size(), 80u);
  int correct = 0;
  for (int i = 0; i < 40; ++i) {
    EXPECT_TRUE(std::isfinite(logits[2 * i]) && std::isfinite(logits[2 * i + 1]));
    correct += (logits[2 * i + 1] > logits[2 * i]) == (y[i] == 1);
  }
  // dash_evaluate's accuracy is the one these logits give.
  char* report = nullptr;
  ASSERT_OK(dash_evaluate(model, task, DASH_SPLIT_TEST, &report));
  const std::string r = report;
  dash_string_free(report);
  char expected[64];
  std::snprintf(expected, sizeof expected, "\"metric\":%g", correct / 40.0);
  EXPECT_NE(r.find("\"metric_name\":\"accuracy\""), std::string::npos) << r;
  EXPECT_NE(r.find(expected), std::string::npos) << r << " vs " << expected;

  ASSERT_OK(dash_model_save(model, scratch("m.dash").c_str()));
  dash_model* loaded = nullptr;
  ASSERT_OK(dash_model_load(scratch("m.dash").c_str(), &loaded));
  EXPECT_EQ(infer(loaded, x, 40), logits);  // bit-identical
  char* info = nullptr;
  ASSERT_OK(dash_model_info(loaded, &info));
  EXPECT_NE(std::string(info).find("\"library_version\":\"" DASH_VERSION_STRING "\""), std::string::npos);
  dash_string_free(info);
  dash_model_free(loaded);
  dash_model_free(model);
  dash_task_free(task);
}

// What the retrain's record says of its start: the search's trained trial
// when the architecture came from dash_search, nothing from JSON or when off.
std::string warm_start_of(dash_task* task, dash_arch* arch, const char* options) {
  dash_model* model = nullptr;
  EXPECT_EQ(dash_retrain(task, arch, options, nullptr, nullptr, &model), DASH_OK) << dash_last_error();
  if (!model) return "";
  char* info = nullptr;
  EXPECT_EQ(dash_model_info(model, &info), DASH_OK);
  const auto j = nlohmann::json::parse(take(info));
  dash_model_free(model);
  return j["report"]["warm_start"].dump();
}

TEST(CApi, TheRetrainStartsFromTheSearchsTrainedTrial) {
  dash_task* task = make_task();
  dash_arch* arch = nullptr;
  ASSERT_OK(dash_search(task, R"({"arch_search": false, "hpo_epochs": 1, "threads": 1, "batch_size": 16})",
                        nullptr, nullptr, &arch));
  const char* retrain = R"({"epochs": 1, "threads": 1, "batch_size": 16})";
  EXPECT_EQ(warm_start_of(task, arch, retrain), R"({"used":true})");
  EXPECT_NE(warm_start_of(task, arch, R"({"epochs": 1, "threads": 1, "batch_size": 16, "warm_start": false})")
                .find("warm_start is off"),
            std::string::npos);
  char* text = nullptr;
  ASSERT_OK(dash_arch_to_json(arch, &text));
  dash_arch* from_json = nullptr;
  ASSERT_OK(dash_arch_from_json(take(text).c_str(), &from_json));
  EXPECT_NE(warm_start_of(task, from_json, retrain).find("carries no trained trial"), std::string::npos);
  dash_arch_free(from_json);
  dash_arch_free(arch);
  dash_task_free(task);
}

TEST(CApi, SameSeedGivesTheSameModel) {
  dash_task* task = make_task();
  dash_model* a = train_model(task);
  dash_model* b = train_model(task);
  std::vector<float> x;
  std::vector<int64_t> y;
  make_clips(8, 3, &x, &y);
  EXPECT_EQ(infer(a, x, 8), infer(b, x, 8));
  dash_model_free(a);
  dash_model_free(b);
  dash_task_free(task);
}

struct ProgressLog {
  std::vector<std::string> stages;
  int64_t events = 0;
  int64_t cancel_after = -1;
  bool sizes_ok = true;
};

int record_progress(const dash_progress* e, void* user) {
  auto* log = static_cast<ProgressLog*>(user);
  log->sizes_ok = log->sizes_ok && e->size == sizeof(dash_progress) && e->epochs >= 1 &&
                  e->steps >= 1 && e->step <= e->steps && e->elapsed_s >= 0;
  if (log->stages.empty() || log->stages.back() != e->stage) log->stages.push_back(e->stage);
  ++log->events;
  return log->cancel_after >= 0 && log->events > log->cancel_after ? 1 : 0;
}

TEST(CApi, ProgressReportsEveryStageAndCancels) {
  dash_task* task = make_task();
  ProgressLog log;
  dash_arch* arch = nullptr;
  ASSERT_OK(dash_search(task, R"({"epochs": 1, "threads": 1, "batch_size": 16, "hpo_epochs": 1})",
                        record_progress, &log, &arch));
  EXPECT_TRUE(log.sizes_ok);
  ASSERT_EQ(log.stages.size(), 2u);
  EXPECT_EQ(log.stages[0], "search");
  EXPECT_EQ(log.stages[1], "hpo");

  for (int64_t after : {0, 3}) {
    ProgressLog cancel;
    cancel.cancel_after = after;
    dash_arch* none = nullptr;
    EXPECT_STATUS(dash_search(task, kSearchOptions, record_progress, &cancel, &none), DASH_CANCELLED,
                  "cancelled");
    EXPECT_EQ(none, nullptr);
    EXPECT_EQ(cancel.events, after + 1);
    dash_model* model = nullptr;
    EXPECT_STATUS(dash_retrain(task, arch, kRetrainOptions, record_progress, &cancel, &model),
                  DASH_CANCELLED, "cancelled");
    EXPECT_EQ(model, nullptr);
  }
  dash_arch_free(arch);
  dash_task_free(task);
}

// Records which events carried a warning.
struct WarningLog {
  int64_t events = 0;
  int64_t warnings = 0;
  int64_t first_at = -1;  // index of the first event with a warning
  int64_t step = -1;      // its step
  std::string text;
};

int record_warning(const dash_progress* e, void* user) {
  auto* w = static_cast<WarningLog*>(user);
  if (e->warning != nullptr) {
    if (w->warnings++ == 0) {
      w->first_at = w->events;
      w->step = e->step;
      w->text = e->warning;
    }
  }
  ++w->events;
  return 0;
}

// A retrain whose budget affords too few steps says so through the callback,
// once, before its first step when the search timed the backbone's step; the
// report says the same.
TEST(CApi, ARetrainTooShortToLearnWarnsThroughProgressBeforeItsFirstStep) {
  dash_task* task = make_task();
  dash_arch* arch = nullptr;
  ASSERT_OK(dash_search(task, R"({"arch_search": false, "hpo": false, "threads": 1, "batch_size": 16,
                                  "time_budget_s": 3})",
                        nullptr, nullptr, &arch));
  WarningLog w;
  dash_model* model = nullptr;
  // 0.5 s: fewer than 300 steps for any step over 1.7 ms.
  ASSERT_OK(dash_retrain(task, arch, R"({"threads": 1, "batch_size": 16, "time_budget_s": 0.5})",
                         record_warning, &w, &model));
  EXPECT_EQ(w.warnings, 1);
  EXPECT_EQ(w.first_at, 0);
  EXPECT_EQ(w.step, 0);
  EXPECT_NE(w.text.find("fewer than the 300"), std::string::npos) << w.text;
  char* info = nullptr;
  ASSERT_OK(dash_model_info(model, &info));
  const std::string report = info;  // (the warning has nothing JSON escapes)
  dash_string_free(info);
  EXPECT_NE(report.find("\"warning\":\"" + w.text), std::string::npos) << report;
  dash_model_free(model);
  dash_arch_free(arch);
  dash_task_free(task);
}

// Stops at the nth event (from 0) of one stage.
struct CancelAt {
  std::string stage;
  int64_t nth = 0;
  int64_t seen = 0;
};

int cancel_at(const dash_progress* e, void* user) {
  auto* c = static_cast<CancelAt*>(user);
  return c->stage == e->stage && c->seen++ >= c->nth ? 1 : 0;
}

// Cancelling anywhere returns DASH_CANCELLED, leaves the out-parameter alone,
// keeps the task usable and (under the sanitizer build) leaks nothing.
TEST(CApi, CancelInEveryStageLeavesNothingBehind) {
  dash_task* task = make_task();
  const char* search = R"({"epochs": 2, "threads": 1, "batch_size": 16, "hpo_epochs": 1})";
  for (const char* stage : {"search", "hpo"}) {
    for (int64_t nth : {0, 2}) {
      CancelAt c{stage, nth};
      dash_arch* arch = nullptr;
      EXPECT_STATUS(dash_search(task, search, cancel_at, &c, &arch), DASH_CANCELLED, "cancelled");
      EXPECT_EQ(arch, nullptr) << stage << " event " << nth;
      EXPECT_GT(c.seen, nth) << "stage " << stage << " never reached event " << nth;
    }
  }
  dash_arch* arch = nullptr;
  ASSERT_OK(dash_arch_plain(task, &arch));
  for (int64_t nth : {0, 2, 5}) {
    CancelAt c{"retrain", nth};
    dash_model* model = nullptr;
    EXPECT_STATUS(dash_retrain(task, arch, checkpointed_options(scratch("cancel"), 2, false).c_str(),
                               cancel_at, &c, &model),
                  DASH_CANCELLED, "cancelled");
    EXPECT_EQ(model, nullptr);
    EXPECT_GT(c.seen, nth);
  }
  dash_model* model = nullptr;  // the task and the architecture still work
  ASSERT_OK(dash_retrain(task, arch, kRetrainOptions, nullptr, nullptr, &model));
  dash_model_free(model);
  dash_arch_free(arch);
  dash_task_free(task);
}

// ---- bad input: models -------------------------------------------------------------

class TrainedModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    task_ = make_task();
    model_ = train_model(task_);
    ASSERT_OK(dash_model_save(model_, scratch("good.dash").c_str()));
  }
  static void TearDownTestSuite() {
    dash_model_free(model_);
    dash_task_free(task_);
  }
  static dash_task* task_;
  static dash_model* model_;
};
dash_task* TrainedModel::task_ = nullptr;
dash_model* TrainedModel::model_ = nullptr;

TEST_F(TrainedModel, InferRejectsWrongLengthsNullsAndNonFiniteInput) {
  std::vector<float> x(4 * kLen, 0.5f), out(8);
  EXPECT_STATUS(dash_infer(model_, x.data(), 4, out.data(), 7), DASH_INVALID_ARGUMENT,
                "out_len is 7 but 4 samples need 4 x 2");
  EXPECT_STATUS(dash_infer(model_, x.data(), 0, out.data(), 0), DASH_INVALID_ARGUMENT, "n must be");
  EXPECT_STATUS(dash_infer(nullptr, x.data(), 4, out.data(), 8), DASH_INVALID_ARGUMENT, "model is NULL");
  EXPECT_STATUS(dash_infer(model_, nullptr, 4, out.data(), 8), DASH_INVALID_ARGUMENT, "x is NULL");
  EXPECT_STATUS(dash_infer(model_, x.data(), 4, nullptr, 8), DASH_INVALID_ARGUMENT, "out is NULL");
  x[2 * kLen + 5] = std::nanf("");
  EXPECT_STATUS(dash_infer(model_, x.data(), 4, out.data(), 8), DASH_INVALID_ARGUMENT,
                "NaN or Inf in sample 2");
}

TEST_F(TrainedModel, EvaluateRejectsATaskOfAnotherShape) {
  dash_task* other = nullptr;
  ASSERT_OK(dash_task_create(R"({"kind": "classification", "input_shape": [1, 48], "num_classes": 2})",
                             &other));
  char* report = nullptr;
  EXPECT_STATUS(dash_evaluate(model_, other, DASH_SPLIT_TEST, &report), DASH_INVALID_ARGUMENT,
                "input [1, 32]");
  EXPECT_EQ(report, nullptr);
  dash_task_free(other);
  dash_task* same = nullptr;
  ASSERT_OK(dash_task_create(kSpec, &same));
  EXPECT_STATUS(dash_evaluate(model_, same, DASH_SPLIT_VALID, &report), DASH_INVALID_ARGUMENT,
                "valid split is empty");
  dash_task_free(same);
}

TEST_F(TrainedModel, LoadRejectsMissingTruncatedCorruptedAndNewerFiles) {
  const std::string good = read_all(scratch("good.dash"));
  ASSERT_GT(good.size(), 100u);
  dash_model* m = nullptr;
  EXPECT_STATUS(dash_model_load("/nonexistent/model.dash", &m), DASH_IO_ERROR, "/nonexistent/model.dash");
  EXPECT_STATUS(dash_model_load(scratch("").c_str(), &m), DASH_IO_ERROR, "not a regular file");
  write_all(scratch("empty.dash"), "");
  EXPECT_STATUS(dash_model_load(scratch("empty.dash").c_str(), &m), DASH_BAD_FILE, "truncated");
  write_all(scratch("trunc.dash"), good.substr(0, good.size() / 2));
  EXPECT_STATUS(dash_model_load(scratch("trunc.dash").c_str(), &m), DASH_BAD_FILE,
                "do not match the file size");
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x20;
  write_all(scratch("flip.dash"), flipped);
  EXPECT_STATUS(dash_model_load(scratch("flip.dash").c_str(), &m), DASH_BAD_FILE, "checksum");
  std::string magic = good;
  magic[0] = 'X';
  write_all(scratch("magic.dash"), magic);
  EXPECT_STATUS(dash_model_load(scratch("magic.dash").c_str(), &m), DASH_BAD_FILE, "bad magic");
  std::string newer = good;
  newer[8] = 9;  // format version 9
  write_all(scratch("newer.dash"), newer);
  EXPECT_STATUS(dash_model_load(scratch("newer.dash").c_str(), &m), DASH_BAD_FILE, "newer dashnas");
  std::string huge = good;
  huge[23] = 0x7f;  // metadata length far beyond the file
  write_all(scratch("huge.dash"), huge);
  EXPECT_STATUS(dash_model_load(scratch("huge.dash").c_str(), &m), DASH_BAD_FILE,
                "do not match the file size");
  EXPECT_EQ(m, nullptr);
  // A regular file where a directory should be: unwritable even for root.
  const std::string under_file = scratch("good.dash") + "/m.dash";
  EXPECT_STATUS(dash_model_save(model_, under_file.c_str()), DASH_IO_ERROR, under_file);
  EXPECT_EQ(read_all(scratch("good.dash")), good);  // the existing file survives
}

TEST_F(TrainedModel, InferFromEightThreadsMatchesOneThread) {
  std::vector<float> x;
  std::vector<int64_t> y;
  make_clips(64, 9, &x, &y);
  const auto expected = infer(model_, x, 64);
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int rep = 0; rep < 5; ++rep) {
        std::vector<float> out(expected.size());
        if (dash_infer(model_, x.data(), 64, out.data(), static_cast<int64_t>(out.size())) != DASH_OK) {
          ++failures;
        } else if (out != expected) {
          ++mismatches;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

// Equal up to the rounding of another device's kernels.
bool close_outputs(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(std::fabs(a[i] - b[i]) <= 1e-4f + 1e-4f * std::fabs(b[i]))) return false;
  }
  return true;
}

TEST_F(TrainedModel, SetDeviceChecksTheNameAndKeepsTheOutputs) {
  std::vector<float> x;
  std::vector<int64_t> y;
  make_clips(16, 5, &x, &y);
  const auto expected = infer(model_, x, 16);
  EXPECT_STATUS(dash_model_set_device(model_, "gpu"), DASH_INVALID_ARGUMENT,
                "device must be \"auto\", \"cpu\" or \"cuda\", got \"gpu\"");
  EXPECT_STATUS(dash_model_set_device(model_, nullptr), DASH_INVALID_ARGUMENT, "device is NULL");
  EXPECT_STATUS(dash_model_set_device(nullptr, "cpu"), DASH_INVALID_ARGUMENT, "model is NULL");
  ASSERT_OK(dash_model_set_device(model_, "cpu"));
  EXPECT_EQ(infer(model_, x, 16), expected);
  // "cuda" runs where the build and the machine have it, and is refused with
  // the reason elsewhere; either way the model keeps working.
  const dash_status cuda = dash_model_set_device(model_, "cuda");
  if (cuda == DASH_OK) {
    EXPECT_TRUE(close_outputs(infer(model_, x, 16), expected));
  } else {
    EXPECT_EQ(cuda, DASH_UNSUPPORTED);
    EXPECT_NE(std::string(dash_last_error()).find("device 'cuda'"), std::string::npos)
        << dash_last_error();
  }
  ASSERT_OK(dash_model_set_device(model_, "auto"));
  ASSERT_OK(dash_model_set_device(model_, "cpu"));
  EXPECT_EQ(infer(model_, x, 16), expected);
}

TEST_F(TrainedModel, SetDeviceWaitsForInferOnOtherThreads) {
  std::vector<float> x;
  std::vector<int64_t> y;
  make_clips(32, 7, &x, &y);
  const auto expected = infer(model_, x, 32);
  std::atomic<int> bad{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      while (!done) {
        std::vector<float> out(expected.size());
        // "auto" may move the model to a GPU, whose results differ in the last bits.
        if (dash_infer(model_, x.data(), 32, out.data(), static_cast<int64_t>(out.size())) != DASH_OK ||
            !close_outputs(out, expected)) {
          ++bad;
        }
      }
    });
  }
  for (int rep = 0; rep < 20; ++rep) {
    if (dash_model_set_device(model_, rep % 2 ? "auto" : "cpu") != DASH_OK) ++bad;
  }
  done = true;
  for (auto& t : threads) t.join();
  ASSERT_OK(dash_model_set_device(model_, "cpu"));
  EXPECT_EQ(bad.load(), 0);
}

TEST(CApi, FreeFunctionsAcceptNull) {
  dash_task_free(nullptr);
  dash_arch_free(nullptr);
  dash_model_free(nullptr);
  dash_string_free(nullptr);
  dash_arch* arch = nullptr;
  EXPECT_STATUS(dash_arch_from_json(R"({"backbone": "x", "layers": [{"kernel_size": 4, "dilation": 1}]})",
                                    &arch),
                DASH_INVALID_ARGUMENT, "layer 0");
  EXPECT_STATUS(dash_arch_from_json(R"({"backbone": "x", "layers": [], "hyperparameters": {"lr": "big"}})",
                                    &arch),
                DASH_INVALID_ARGUMENT, "'lr' must be a number");
}

// ---- sizes ----------------------------------------------------------------------------

// One task of each kind, with its sizes worked out by hand from the spec.
struct KindCase {
  const char* spec;
  int64_t input_size;   // prod(input_shape)
  int64_t target_size;  // values per target in y
  bool classes;         // y is int64_t class indices
};

const KindCase kKinds[] = {
    {R"({"kind": "classification", "input_shape": [3, 4, 5], "num_classes": 7})", 60, 1, true},
    {R"({"kind": "multilabel", "input_shape": [2, 8], "num_classes": 5})", 16, 5, false},
    {R"({"kind": "regression", "input_shape": [1, 8], "num_outputs": 3})", 8, 3, false},
    {R"({"kind": "dense", "input_shape": [2, 4, 6], "num_outputs": 3})", 48, 3 * 4 * 6, false},
};

TEST(CApi, SizesOfTasksAndModelsOfEveryKind) {
  for (const KindCase& k : kKinds) {
    SCOPED_TRACE(k.spec);
    dash_task* task = nullptr;
    ASSERT_OK(dash_task_create(k.spec, &task));
    int64_t in = -1, target = -1;
    ASSERT_OK(dash_task_input_size(task, &in));
    ASSERT_OK(dash_task_target_size(task, &target));
    EXPECT_EQ(in, k.input_size);
    EXPECT_EQ(target, k.target_size);

    // Data of exactly those sizes is accepted, and a model trained on it
    // reads the same input size.
    const int64_t n = 8;
    std::vector<float> x(static_cast<size_t>(n * in));
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i));
    std::vector<int64_t> labels(static_cast<size_t>(n));
    std::vector<float> values(static_cast<size_t>(n * target));
    for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>(i % 7);
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 2);
    const void* y = k.classes ? static_cast<const void*>(labels.data()) : values.data();
    ASSERT_OK(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), y, n));
    dash_arch* arch = nullptr;
    ASSERT_OK(dash_arch_plain(task, &arch));
    dash_model* model = nullptr;
    ASSERT_OK(dash_retrain(task, arch, R"({"epochs": 1, "threads": 1, "batch_size": 4})", nullptr,
                           nullptr, &model));
    int64_t model_in = -1, model_out = -1;
    ASSERT_OK(dash_model_input_size(model, &model_in));
    ASSERT_OK(dash_model_output_size(model, &model_out));
    EXPECT_EQ(model_in, k.input_size);
    // What infer writes equals what a float target holds (logits per class
    // for classification, whose target is one index).
    EXPECT_EQ(model_out, k.classes ? 7 : k.target_size);
    std::vector<float> out(static_cast<size_t>(model_out));
    ASSERT_OK(dash_infer(model, x.data(), 1, out.data(), model_out));
    dash_model_free(model);
    dash_arch_free(arch);
    dash_task_free(task);
  }
}

TEST(CApi, SizeAccessorsAndInterruptRejectNull) {
  dash_task* task = nullptr;
  ASSERT_OK(dash_task_create(kSpec, &task));
  int64_t out = 42;
  EXPECT_STATUS(dash_task_input_size(nullptr, &out), DASH_INVALID_ARGUMENT,
                "dash_task_input_size: task is NULL");
  EXPECT_STATUS(dash_task_input_size(task, nullptr), DASH_INVALID_ARGUMENT, "out is NULL");
  EXPECT_STATUS(dash_task_target_size(nullptr, &out), DASH_INVALID_ARGUMENT,
                "dash_task_target_size: task is NULL");
  EXPECT_STATUS(dash_task_target_size(task, nullptr), DASH_INVALID_ARGUMENT, "out is NULL");
  EXPECT_STATUS(dash_model_input_size(nullptr, &out), DASH_INVALID_ARGUMENT,
                "dash_model_input_size: model is NULL");
  EXPECT_STATUS(dash_task_interrupt(nullptr), DASH_INVALID_ARGUMENT,
                "dash_task_interrupt: task is NULL");
  EXPECT_EQ(out, 42);
  // An interrupt with nothing running changes nothing for later calls.
  ASSERT_OK(dash_task_interrupt(task));
  dash_task_free(task);
}

// ---- threads and interrupts -----------------------------------------------------------

// Sees the first progress event, then waits to be interrupted.
struct FirstEvent {
  std::atomic<bool> seen{false};
  std::atomic<int64_t> events{0};
};

int note_event(const dash_progress*, void* user) {
  auto* f = static_cast<FirstEvent*>(user);
  ++f->events;
  f->seen = true;
  return 0;
}

TEST(CApi, InterruptFromAnotherThreadStopsARetrainAtItsNextStep) {
  dash_task* task = make_task();
  dash_arch* arch = nullptr;
  ASSERT_OK(dash_arch_plain(task, &arch));
  FirstEvent first;
  dash_model* model = reinterpret_cast<dash_model*>(0x1);  // must stay untouched
  dash_status status = DASH_OK;
  std::string message;
  std::atomic<bool> done{false};
  std::thread worker([&] {
    // Thousands of epochs: it only ends early because it is interrupted.
    status = dash_retrain(task, arch, R"({"epochs": 5000, "threads": 1, "batch_size": 16})",
                          note_event, &first, &model);
    message = dash_last_error();  // thread-local: read on the calling thread
    done = true;
  });
  // (or until it returned without one: a failure the checks below report)
  while (!first.seen && !done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t events_before = first.events;
  ASSERT_OK(dash_task_interrupt(task));
  worker.join();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(status, DASH_CANCELLED) << message;
  EXPECT_NE(message.find("dash_retrain: interrupted by dash_task_interrupt"), std::string::npos)
      << message;
  EXPECT_EQ(model, reinterpret_cast<dash_model*>(0x1));
  // At its next step: at most the event in flight and an epoch's end came after.
  EXPECT_LE(first.events - events_before, 2);
  EXPECT_LT(waited, 10.0);
  // A call that starts afterwards is not affected.
  model = nullptr;
  ASSERT_OK(dash_retrain(task, arch, kRetrainOptions, nullptr, nullptr, &model));
  dash_model_free(model);
  dash_arch_free(arch);
  dash_task_free(task);
}

TEST(CApi, InterruptStopsASearchWithoutACallback) {
  dash_task* task = make_task();
  dash_arch* arch = reinterpret_cast<dash_arch*>(0x1);
  std::atomic<bool> done{false};
  dash_status status = DASH_OK;
  std::string message;
  std::thread worker([&] {
    status = dash_search(task, R"({"epochs": 5000, "hpo": false, "threads": 1, "batch_size": 16})",
                         nullptr, nullptr, &arch);
    message = dash_last_error();
    done = true;
  });
  // Interrupts until it returns: whenever it began, one of them comes after.
  while (!done) {
    ASSERT_OK(dash_task_interrupt(task));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  worker.join();
  EXPECT_EQ(status, DASH_CANCELLED) << message;
  EXPECT_NE(message.find("dash_search: interrupted by dash_task_interrupt"), std::string::npos)
      << message;
  EXPECT_EQ(arch, reinterpret_cast<dash_arch*>(0x1));
  dash_task_free(task);
}

// The interrupt is seen at the next step, before the callback would see it.
struct InterruptAt {
  const dash_task* task;
  int64_t at;
  int64_t events = 0;
};

int interrupt_at(const dash_progress*, void* user) {
  auto* i = static_cast<InterruptAt*>(user);
  if (++i->events == i->at && dash_task_interrupt(i->task) != DASH_OK) return 1;
  return 0;
}

TEST(CApi, InterruptFromTheProgressCallbackStopsAtTheNextStep) {
  dash_task* task = make_task();
  InterruptAt i{task, 3};
  dash_arch* arch = nullptr;
  EXPECT_STATUS(dash_search(task, kSearchOptions, interrupt_at, &i, &arch), DASH_CANCELLED,
                "interrupted by dash_task_interrupt");
  EXPECT_EQ(arch, nullptr);
  EXPECT_EQ(i.events, 3);
  // A callback's own cancel still says so.
  ProgressLog cancel;
  cancel.cancel_after = 0;
  EXPECT_STATUS(dash_search(task, kSearchOptions, record_progress, &cancel, &arch), DASH_CANCELLED,
                "cancelled by the progress callback");
  dash_task_free(task);
}

// dash_search and dash_retrain only read the task: two at once on one task
// both succeed and leave its data as it was. (Their models may differ from
// one run alone: the core seeds LibTorch's process-wide random generator,
// which concurrent calls share.)
TEST(CApi, TwoRetrainsOnOneTaskAtOnceLeaveItUnchanged) {
  dash_task* task = make_task();
  dash_arch* arch = nullptr;
  ASSERT_OK(dash_arch_plain(task, &arch));
  dash_model* alone = nullptr;
  ASSERT_OK(dash_retrain(task, arch, kRetrainOptions, nullptr, nullptr, &alone));
  char* before = nullptr;
  ASSERT_OK(dash_evaluate(alone, task, DASH_SPLIT_TRAIN, &before));
  dash_model* models[2] = {nullptr, nullptr};
  dash_status statuses[2] = {DASH_INTERNAL, DASH_INTERNAL};
  char* reports[2] = {nullptr, nullptr};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      statuses[t] = dash_retrain(task, arch, kRetrainOptions, nullptr, nullptr, &models[t]);
      // The other thread may still be training: evaluating only reads too.
      if (dash_evaluate(alone, task, DASH_SPLIT_TEST, &reports[t]) != DASH_OK) reports[t] = nullptr;
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 0; t < 2; ++t) {
    EXPECT_EQ(statuses[t], DASH_OK) << "thread " << t;
    ASSERT_NE(reports[t], nullptr) << "thread " << t;
    dash_string_free(reports[t]);
    dash_model_free(models[t]);
  }
  char* after = nullptr;
  ASSERT_OK(dash_evaluate(alone, task, DASH_SPLIT_TRAIN, &after));
  EXPECT_STREQ(before, after);
  dash_string_free(before);
  dash_string_free(after);
  dash_model_free(alone);
  dash_arch_free(arch);
  dash_task_free(task);
}

}  // namespace
