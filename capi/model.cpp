// Trained models: inference, evaluation, files.

#include "capi/internal.h"
#include "export/onnx_export.h"

namespace {

using dash::capi::guarded;
using dash::capi::require;

// dash_evaluate is dash_evaluate_with without options: one body for both.
dash_status evaluate_with(const char* function, const dash_model* model, const dash_task* task, dash_split split,
                          const char* options_json, char** report_json) {
  return guarded(function, [&] {
    require(model, "model");
    require(task, "task");
    const auto s = dash::capi::checked_split(&split);
    require(report_json, "report_json");
    const auto options = dash::api::parse_evaluate_options(dash::capi::text_or_empty(options_json));
    const dash::capi::Interruption stop(*task);
    const auto lock = dash::capi::reading(*model);
    // The core's evaluation has no steps to stop at: an interrupt during it
    // is honoured once it is done.
    const auto report = dash::api::evaluate(*model->model, task->data, s, options);
    stop.check();
    *report_json = dash::capi::copy_string(report.dump());
  });
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
    *out = dash::api::values_per_sample(model->model->spec().input_shape);
  });
}

dash_status dash_infer(const dash_model* model, const float* x, int64_t n, float* out, int64_t out_len) {
  return guarded("dash_infer", [&] {
    require(model, "model");
    require(x, "x");
    require(out, "out");
    const auto lock = dash::capi::reading(*model);
    dash::api::infer(*model->model, x, n, out, out_len);
  });
}

dash_status dash_evaluate(const dash_model* model, const dash_task* task, dash_split split,
                          char** report_json) {
  return evaluate_with("dash_evaluate", model, task, split, nullptr, report_json);
}

dash_status dash_evaluate_with(const dash_model* model, const dash_task* task, dash_split split,
                               const char* options_json, char** report_json) {
  return evaluate_with("dash_evaluate_with", model, task, split, options_json, report_json);
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
    const at::Device target = dash::api::device_named(device);
    const auto lock = dash::capi::moving(*model);
    model->model->to(target);
  });
}

dash_status dash_model_export_onnx(const dash_model* model, const char* path, const char* options_json) {
  return guarded("dash_model_export_onnx", [&] {
    require(model, "model");
    require(path, "path");
    nlohmann::json options = nlohmann::json::object();
    if (options_json && *options_json) {
      try {
        options = nlohmann::json::parse(options_json);
      } catch (const nlohmann::json::exception& e) {
        throw std::invalid_argument(std::string("the ONNX export options are not valid JSON (") + e.what() +
                                    "); pass an object such as {\"opset\": 13} or NULL for the defaults");
      }
    }
    const auto parsed = dash::deploy::OnnxOptions::from_json(options);
    const auto lock = dash::capi::reading(*model);
    dash::deploy::export_onnx(*model->model, path, parsed);
  });
}

void dash_model_free(dash_model* model) { delete model; }

}  // extern "C"
