// Tasks: the spec and the data splits.

#include "capi/internal.h"
#include "task/io.h"

namespace {

using dash::capi::guarded;
using dash::capi::require;

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
    task->data.spec = dash::task::TaskSpec::from_json(j);
    *out = task.release();
  });
}

dash_status dash_task_set_data(dash_task* task, dash_split split, const float* x, const void* y,
                               int64_t n) {
  return guarded("dash_task_set_data", [&] {
    require(task, "task");
    const auto s = dash::capi::checked_split(&split);
    require(x, "x");
    require(y, "y");
    task->data.splits[s] = dash::api::split_from_buffers(task->data.spec, x, y, n, s);
  });
}

dash_status dash_task_load_files(dash_task* task, dash_split split, const char* x_path,
                                 const char* y_path) {
  return guarded("dash_task_load_files", [&] {
    require(task, "task");
    const auto s = dash::capi::checked_split(&split);
    require(x_path, "x_path");
    require(y_path, "y_path");
    at::Tensor x = dash::task::load_array(x_path);
    at::Tensor y = dash::task::load_array(y_path);
    task->data.splits[s] = dash::task::checked_split(task->data.spec, x, y, dash::api::split_name(s));
  });
}

dash_status dash_task_split_size(const dash_task* task, dash_split split, int64_t* out) {
  return guarded("dash_task_split_size", [&] {
    require(task, "task");
    const auto s = dash::capi::checked_split(&split);
    require(out, "out");
    *out = task->data.splits[s].size();
  });
}

dash_status dash_task_to_json(const dash_task* task, char** json_out) {
  return guarded("dash_task_to_json", [&] {
    require(task, "task");
    require(json_out, "json_out");
    *json_out = dash::capi::copy_string(task->data.spec.to_json().dump());
  });
}

dash_status dash_task_input_size(const dash_task* task, int64_t* out) {
  return guarded("dash_task_input_size", [&] {
    require(task, "task");
    require(out, "out");
    *out = dash::api::values_per_sample(task->data.spec.input_shape);
  });
}

dash_status dash_task_target_size(const dash_task* task, int64_t* out) {
  return guarded("dash_task_target_size", [&] {
    require(task, "task");
    require(out, "out");
    // {} for classification: one class index.
    *out = dash::api::values_per_sample(task->data.spec.target_shape());
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
