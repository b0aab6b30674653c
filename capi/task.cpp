// Tasks: the spec and the data splits.

#include <limits>

#include "capi/internal.h"
#include "task/io.h"

namespace dash::capi {

using nlohmann::json;

task::Dataset task_dataset(const dash_task& t, const json& options) {
  const task::Split& train = t.splits[DASH_SPLIT_TRAIN];
  if (train.empty()) {
    throw std::invalid_argument(
        "the train split is empty: give it data with dash_task_set_data or dash_task_load_files "
        "(DASH_SPLIT_TRAIN) first");
  }
  task::Split used = train;
  const int64_t max_train = options["max_train"].get<int64_t>();
  if (max_train > 0 && max_train < train.size()) {
    used = {train.x.narrow(0, 0, max_train), train.y.narrow(0, 0, max_train)};
  }
  const task::Split& valid = t.splits[DASH_SPLIT_VALID];
  if (valid.empty() && used.size() < 2) {
    throw std::invalid_argument("train has " + std::to_string(used.size()) +
                                " sample: a validation split needs at least 2, or set DASH_SPLIT_VALID");
  }
  return task::make_dataset(t.spec, used, valid, t.splits[DASH_SPLIT_TEST],
                            options["valid_fraction"].get<double>(),
                            options["seed"].get<uint64_t>());
}

int64_t values_per_sample(const std::vector<int64_t>& shape) {
  int64_t total = 1;
  for (int64_t d : shape) {
    if (d != 0 && total > std::numeric_limits<int64_t>::max() / d) {
      throw std::invalid_argument("the shape's size overflows int64_t");
    }
    total *= d;
  }
  return total;
}

}  // namespace dash::capi

namespace {

using dash::capi::guarded;
using dash::capi::require;

int64_t checked_numel(int64_t n, const std::vector<int64_t>& shape, const char* what) {
  int64_t total = n;
  for (int64_t d : shape) {
    if (d != 0 && total > std::numeric_limits<int64_t>::max() / d) {
      throw std::invalid_argument(std::string(what) + ": n * shape overflows");
    }
    total *= d;
  }
  return total;
}

}  // namespace

extern "C" {

dash_status dash_task_create(const char* spec_json, dash_task** out) {
  return guarded("dash_task_create", [&] {
    require(spec_json, "spec_json");
    require(out, "out");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(spec_json);
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(std::string("the task spec is not valid JSON: ") + e.what());
    }
    auto task = std::make_unique<dash_task>();
    task->spec = dash::task::TaskSpec::from_json(j);
    *out = task.release();
  });
}

dash_status dash_task_set_data(dash_task* task, dash_split split, const float* x, const void* y,
                               int64_t n) {
  return guarded("dash_task_set_data", [&] {
    require(task, "task");
    const dash_split s = dash::capi::checked_split(&split);
    require(x, "x");
    require(y, "y");
    if (n < 1) throw std::invalid_argument("n must be >= 1, got " + std::to_string(n));
    const auto& spec = task->spec;
    std::vector<int64_t> xshape = {n};
    xshape.insert(xshape.end(), spec.input_shape.begin(), spec.input_shape.end());
    checked_numel(n, spec.input_shape, "x");
    std::vector<int64_t> yshape = {n};
    const auto target = spec.target_shape();
    yshape.insert(yshape.end(), target.begin(), target.end());
    checked_numel(n, target, "y");
    const bool classes = spec.kind == dash::task::TaskKind::kClassification;
    // from_blob does not copy: clone so the caller may free its buffers.
    at::Tensor xt = at::from_blob(const_cast<float*>(x), xshape, at::kFloat).clone();
    at::Tensor yt = at::from_blob(const_cast<void*>(y), yshape, classes ? at::kLong : at::kFloat).clone();
    task->splits[s] = dash::task::checked_split(spec, xt, yt, dash::capi::split_name(s));
  });
}

dash_status dash_task_load_files(dash_task* task, dash_split split, const char* x_path,
                                 const char* y_path) {
  return guarded("dash_task_load_files", [&] {
    require(task, "task");
    const dash_split s = dash::capi::checked_split(&split);
    require(x_path, "x_path");
    require(y_path, "y_path");
    at::Tensor x = dash::task::load_array(x_path);
    at::Tensor y = dash::task::load_array(y_path);
    task->splits[s] = dash::task::checked_split(task->spec, x, y, dash::capi::split_name(s));
  });
}

dash_status dash_task_split_size(const dash_task* task, dash_split split, int64_t* out) {
  return guarded("dash_task_split_size", [&] {
    require(task, "task");
    const dash_split s = dash::capi::checked_split(&split);
    require(out, "out");
    *out = task->splits[s].size();
  });
}

dash_status dash_task_to_json(const dash_task* task, char** json_out) {
  return guarded("dash_task_to_json", [&] {
    require(task, "task");
    require(json_out, "json_out");
    *json_out = dash::capi::copy_string(task->spec.to_json().dump());
  });
}

dash_status dash_task_input_size(const dash_task* task, int64_t* out) {
  return guarded("dash_task_input_size", [&] {
    require(task, "task");
    require(out, "out");
    *out = dash::capi::values_per_sample(task->spec.input_shape);
  });
}

dash_status dash_task_target_size(const dash_task* task, int64_t* out) {
  return guarded("dash_task_target_size", [&] {
    require(task, "task");
    require(out, "out");
    // {} for classification: one class index.
    *out = dash::capi::values_per_sample(task->spec.target_shape());
  });
}

dash_status dash_task_interrupt(const dash_task* task) {
  return guarded("dash_task_interrupt", [&] {
    require(task, "task");
    task->interrupts.fetch_add(1);
  });
}

void dash_task_free(dash_task* task) { delete task; }

}  // extern "C"
