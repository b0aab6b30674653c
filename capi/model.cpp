// Trained models: inference, evaluation, files.

#include <limits>

#include "capi/internal.h"
#include "task/loss_metric.h"

namespace {

using dash::capi::guarded;
using dash::capi::require;
using nlohmann::json;

bool same_io(const dash::task::TaskSpec& a, const dash::task::TaskSpec& b) {
  return a.kind == b.kind && a.input_shape == b.input_shape && a.num_outputs == b.num_outputs;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

}  // namespace

extern "C" {

dash_status dash_model_output_size(const dash_model* model, int64_t* out) {
  return guarded("dash_model_output_size", [&] {
    require(model, "model");
    require(out, "out");
    *out = model->model->output_size();
  });
}

dash_status dash_model_input_size(const dash_model* model, int64_t* out) {
  return guarded("dash_model_input_size", [&] {
    require(model, "model");
    require(out, "out");
    *out = dash::capi::values_per_sample(model->model->spec().input_shape);
  });
}

dash_status dash_infer(const dash_model* model, const float* x, int64_t n, float* out, int64_t out_len) {
  return guarded("dash_infer", [&] {
    require(model, "model");
    require(x, "x");
    require(out, "out");
    const auto lock = dash::capi::reading(*model);
    const auto& m = *model->model;
    if (n < 1) throw std::invalid_argument("n must be >= 1, got " + std::to_string(n));
    const int64_t per = m.output_size();
    if (n > std::numeric_limits<int64_t>::max() / per || out_len != n * per) {
      throw std::invalid_argument("out_len is " + std::to_string(out_len) + " but " +
                                  std::to_string(n) + " samples need " + std::to_string(n) +
                                  " x " + std::to_string(per) +
                                  " values (dash_model_output_size)");
    }
    std::vector<int64_t> shape = {n};
    int64_t numel = n;
    for (int64_t d : m.spec().input_shape) {
      if (numel > std::numeric_limits<int64_t>::max() / d) throw std::invalid_argument("n is too large");
      numel *= d;
      shape.push_back(d);
    }
    // Read-only view of the caller's buffer: no copy.
    const at::Tensor xt = at::from_blob(const_cast<float*>(x), shape, at::kFloat);
    const at::Tensor bad = xt.isfinite().logical_not().reshape({n, -1}).any(1);
    if (bad.any().item<bool>()) {
      const int64_t row = bad.nonzero()[0][0].item<int64_t>();
      throw std::invalid_argument("x has NaN or Inf in sample " + std::to_string(row));
    }
    const at::Tensor y = m.infer(xt);
    std::memcpy(out, y.contiguous().data_ptr<float>(), sizeof(float) * static_cast<size_t>(n * per));
  });
}

dash_status dash_evaluate(const dash_model* model, const dash_task* task, dash_split split,
                          char** report_json) {
  return guarded("dash_evaluate", [&] {
    require(model, "model");
    require(task, "task");
    const dash_split s = dash::capi::checked_split(&split);
    require(report_json, "report_json");
    const dash::capi::Interruption stop(*task);
    const auto lock = dash::capi::reading(*model);
    const auto& m = *model->model;
    if (!same_io(m.spec(), task->spec)) {
      throw std::invalid_argument(
          "the model was trained for a " + dash::task::to_string(m.spec().kind) + " task with input " +
          shape_text(m.spec().input_shape) + " and " + std::to_string(m.spec().num_outputs) +
          " outputs, but the task is " + dash::task::to_string(task->spec.kind) + " with input " +
          shape_text(task->spec.input_shape) + " and " + std::to_string(task->spec.num_outputs));
    }
    const auto& data = task->splits[s];
    if (data.empty()) {
      throw std::invalid_argument(std::string("the ") + dash::capi::split_name(s) +
                                  " split is empty: set its data first");
    }
    // The core's evaluation has no steps to stop at: an interrupt during it
    // is honoured once it is done.
    const auto ev = m.evaluate(data);
    stop.check();
    const json report = {{"split", dash::capi::split_name(s)},
                         {"samples", data.size()},
                         {"loss", ev.loss},
                         {"metric_name", dash::task::to_string(m.spec().metric)},
                         {"metric", std::isfinite(ev.metric) ? json(ev.metric) : json(nullptr)},
                         {"higher_is_better", dash::task::higher_is_better(m.spec().metric)}};
    *report_json = dash::capi::copy_string(report.dump());
  });
}

dash_status dash_model_info(const dash_model* model, char** json_out) {
  return guarded("dash_model_info", [&] {
    require(model, "model");
    require(json_out, "json_out");
    *json_out = dash::capi::copy_string(model->model->metadata().dump());
  });
}

dash_status dash_model_save(const dash_model* model, const char* path) {
  return guarded("dash_model_save", [&] {
    require(model, "model");
    require(path, "path");
    const auto lock = dash::capi::reading(*model);
    model->model->save(path);
  });
}

dash_status dash_model_load(const char* path, dash_model** out) {
  return guarded("dash_model_load", [&] {
    require(path, "path");
    require(out, "out");
    auto model = std::make_unique<dash_model>();
    model->model = dash::model::TrainedModel::load(path);
    *out = model.release();
  });
}

dash_status dash_model_set_device(dash_model* model, const char* device) {
  return guarded("dash_model_set_device", [&] {
    require(model, "model");
    require(device, "device");
    const at::Device target = dash::capi::device_named(device);
    const auto lock = dash::capi::moving(*model);
    model->model->to(target);
  });
}

void dash_model_free(dash_model* model) { delete model; }

}  // extern "C"
