// The long calls, search and retrain, and the architecture handle.

#include <cstddef>

#include "capi/internal.h"

namespace dash::capi {

using nlohmann::json;

// dash_progress as it shipped, on LP64 targets (x86-64, aarch64): fields are
// only ever appended, so a reordering or a changed type fails here.
constexpr bool kLP64 = sizeof(void*) == 8 && sizeof(size_t) == 8;
static_assert(!kLP64 || offsetof(dash_progress, size) == 0, "dash_progress.size moved");
static_assert(!kLP64 || offsetof(dash_progress, stage) == 8, "dash_progress.stage moved");
static_assert(!kLP64 || offsetof(dash_progress, epoch) == 16, "dash_progress.epoch moved");
static_assert(!kLP64 || offsetof(dash_progress, epochs) == 24, "dash_progress.epochs moved");
static_assert(!kLP64 || offsetof(dash_progress, step) == 32, "dash_progress.step moved");
static_assert(!kLP64 || offsetof(dash_progress, steps) == 40, "dash_progress.steps moved");
static_assert(!kLP64 || offsetof(dash_progress, loss) == 48, "dash_progress.loss moved");
static_assert(!kLP64 || offsetof(dash_progress, metric) == 56, "dash_progress.metric moved");
static_assert(!kLP64 || offsetof(dash_progress, elapsed_s) == 64, "dash_progress.elapsed_s moved");
static_assert(!kLP64 || offsetof(dash_progress, eta_s) == 72, "dash_progress.eta_s moved");
static_assert(!kLP64 || offsetof(dash_progress, warning) == 80, "dash_progress.warning moved");
static_assert(!kLP64 || sizeof(dash_progress) == 88,
              "sizeof(dash_progress) changed: a new field goes at the end, and this check with it");

train::ProgressFn progress_adapter(dash_progress_fn fn, void* user_data, const Interruption& stop) {
  // Installed even without a C callback: interrupts are seen here.
  return [fn, user_data, &stop](const train::Progress& p) {
    if (stop.requested()) return false;
    if (fn == nullptr) return true;
    dash_progress e;
    e.size = sizeof(dash_progress);
    e.stage = p.stage.c_str();
    e.epoch = p.epoch;
    e.epochs = p.epochs;
    e.step = p.step;
    e.steps = p.steps;
    e.loss = p.loss;
    e.metric = p.metric;
    e.elapsed_s = p.elapsed_s;
    e.eta_s = p.eta_s;
    e.warning = p.warning.empty() ? nullptr : p.warning.c_str();
    return fn(&e, user_data) == 0;
  };
}

}  // namespace dash::capi

namespace {

using dash::capi::guarded;
using dash::capi::require;
using nlohmann::json;

}  // namespace

extern "C" {

dash_status dash_search(const dash_task* task, const char* options_json, dash_progress_fn progress,
                        void* user_data, dash_arch** out) {
  return guarded("dash_search", [&] {
    require(task, "task");
    require(out, "out");
    const dash::capi::Interruption stop(*task);
    const auto options = dash::api::parse_search_options(dash::capi::text_or_empty(options_json));
    auto arch = std::make_unique<dash_arch>();
    arch->choice = stop.run([&] {
      return dash::api::search(task->data, options, dash::capi::progress_adapter(progress, user_data, stop));
    });
    stop.check();
    *out = arch.release();
  });
}

dash_status dash_arch_to_json(const dash_arch* arch, char** json_out) {
  return guarded("dash_arch_to_json", [&] {
    require(arch, "arch");
    require(json_out, "json_out");
    *json_out = dash::capi::copy_string(arch->choice.to_json().dump());
  });
}

dash_status dash_arch_info(const dash_arch* arch, char** json_out) {
  return guarded("dash_arch_info", [&] {
    require(arch, "arch");
    require(json_out, "json_out");
    nlohmann::json info = {{"architecture", arch->choice.to_json()}, {"report", nlohmann::json::object()}};
    if (!arch->choice.report.empty()) info["report"]["search"] = arch->choice.report;
    *json_out = dash::capi::copy_string(info.dump());
  });
}

dash_status dash_arch_from_json(const char* text, dash_arch** out) {
  return guarded("dash_arch_from_json", [&] {
    require(text, "json");
    require(out, "out");
    json j;
    try {
      j = json::parse(text);
    } catch (const json::exception& e) {
      throw std::invalid_argument(std::string("the architecture is not valid JSON: ") + e.what());
    }
    auto arch = std::make_unique<dash_arch>();
    arch->choice = dash::api::ArchChoice::from_json(j);
    *out = arch.release();
  });
}

dash_status dash_arch_plain(const dash_task* task, dash_arch** out) {
  return guarded("dash_arch_plain", [&] {
    require(task, "task");
    require(out, "out");
    auto arch = std::make_unique<dash_arch>();
    arch->choice = dash::api::plain_architecture(task->data.spec);
    *out = arch.release();
  });
}

void dash_arch_free(dash_arch* arch) { delete arch; }

dash_status dash_retrain(const dash_task* task, const dash_arch* arch, const char* options_json,
                         dash_progress_fn progress, void* user_data, dash_model** out) {
  return guarded("dash_retrain", [&] {
    require(task, "task");
    require(arch, "arch");
    require(out, "out");
    const dash::capi::Interruption stop(*task);
    const auto options = dash::api::parse_retrain_options(dash::capi::text_or_empty(options_json));
    auto model = std::make_unique<dash_model>();
    model->model = stop.run([&] {
      return dash::api::retrain(task->data, arch->choice, options,
                                dash::capi::progress_adapter(progress, user_data, stop));
    });
    stop.check();
    *out = model.release();
  });
}

}  // extern "C"
