// The long calls: search and retrain; and the architecture handle.

#include <chrono>
#include <cmath>
#include <cstddef>

#include "capi/internal.h"
#include "search/dash.h"

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
static_assert(!kLP64 || sizeof(dash_progress) == 80,
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
    return fn(&e, user_data) == 0;
  };
}

}  // namespace dash::capi

namespace {

using dash::capi::guarded;
using dash::capi::require;
using nlohmann::json;

// The prepared (normalised) data on the device search and retrain compute on.
dash::task::Dataset on_device(dash::task::Dataset data, const at::Device& device) {
  if (device.is_cpu()) return data;
  for (dash::task::Split* split : {&data.train, &data.valid, &data.test}) {
    if (split->empty()) continue;
    split->x = split->x.to(device);
    split->y = split->y.to(device);
  }
  return data;
}

// What is left of the call's time_budget_s after preparing its data (that
// time counts inside the budget); 0 stays "no budget".
double budget_left(const json& opt, std::chrono::steady_clock::time_point t_call) {
  const double budget = opt["time_budget_s"].get<double>();
  if (!(budget > 0)) return 0;
  const double used = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_call).count();
  if (used >= budget) {
    throw std::invalid_argument("preparing the data took " + std::to_string(used) +
                                " s, the whole time_budget_s of " + std::to_string(budget) +
                                " s; raise time_budget_s or use fewer samples (max_train)");
  }
  return budget - used;
}

json arch_json(const dash_arch& a) {
  json j = a.architecture.to_json();
  j["hyperparameters"] = a.hp.to_json();
  return j;
}

}  // namespace

extern "C" {

dash_status dash_search(const dash_task* task, const char* options_json, dash_progress_fn progress,
                        void* user_data, dash_arch** out) {
  return guarded("dash_search", [&] {
    const auto t_call = std::chrono::steady_clock::now();
    require(task, "task");
    require(out, "out");
    const dash::capi::Interruption stop(*task);
    const json opt = dash::capi::parse_options(options_json, dash::capi::Call::kSearch);
    dash::capi::apply_runtime_options(opt);
    const auto raw = dash::capi::task_dataset(*task, opt);
    const auto data = on_device(dash::search::prepare(raw, nullptr), dash::capi::compute_device(opt));

    dash::search::SearchOptions so;
    so.seed = opt["seed"].get<uint64_t>();
    so.arch_search = opt["arch_search"].get<bool>();
    so.space.kernel_sizes = opt["kernel_sizes"].get<std::vector<int64_t>>();
    so.space.dilations = opt["dilations"].get<std::vector<int64_t>>();
    so.depth = opt["depth"].get<int>();
    so.width = opt["width"].get<int>();
    so.stem_stride = opt["stem_stride"].get<int64_t>();
    so.batch_size = opt["batch_size"].get<int64_t>();
    so.epochs = opt["epochs"].get<int64_t>();
    so.batch_fraction = opt["batch_fraction"].get<double>();
    so.augment = dash::train::Augment::named(opt["augment"].get<std::string>());
    if (!opt["lr"].is_null()) so.lr = opt["lr"].get<double>();
    if (!opt["arch_lr"].is_null()) so.arch.lr = opt["arch_lr"].get<double>();
    so.arch.temperature = opt["temperature"].get<double>();
    so.field_penalty = opt["field_penalty"].get<double>();
    so.cost_weight = opt["cost_weight"].get<double>();
    so.max_cost_ratio = opt["max_cost_ratio"].get<double>();
    so.cost_model = opt["cost_model"].get<std::string>() == "macs" ? dash::search::CostModelKind::kMacs
                                                                  : dash::search::CostModelKind::kMeasured;
    so.warmup_steps = opt["warmup_steps"].get<int64_t>();
    so.patience = opt["patience"].get<int64_t>();
    so.margin = opt["margin"].get<double>();
    so.prune_below = opt["prune_below"].get<double>();
    so.guard = opt["guard"].get<bool>();
    so.hpo = opt["hpo"].get<bool>();
    so.grid = opt["hpo_grid"].get<std::string>() == "dash" ? dash::search::dash_grid()
                                                           : dash::search::small_grid();
    so.hpo_epochs = opt["hpo_epochs"].get<int64_t>();
    so.time_budget_s = budget_left(opt, t_call);
    so.hpo_share = opt["hpo_share"].get<double>();
    so.checkpoint_dir = opt["checkpoint_dir"].get<std::string>();
    so.resume = opt["resume"].get<bool>();

    stop.check();
    auto outcome = stop.run([&] {
      return dash::search::run_search(task->spec, data, so,
                                      dash::capi::progress_adapter(progress, user_data, stop));
    });
    stop.check();
    auto arch = std::make_unique<dash_arch>();
    arch->architecture = outcome.architecture;
    arch->hp = outcome.hp;
    arch->report = outcome.report;
    *out = arch.release();
  });
}

dash_status dash_arch_to_json(const dash_arch* arch, char** json_out) {
  return guarded("dash_arch_to_json", [&] {
    require(arch, "arch");
    require(json_out, "json_out");
    *json_out = dash::capi::copy_string(arch_json(*arch).dump());
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
    if (!j.is_object()) throw std::invalid_argument("the architecture must be a JSON object");
    auto arch = std::make_unique<dash_arch>();
    if (j.contains("hyperparameters")) {
      const json& h = j["hyperparameters"];
      if (!h.is_object()) throw std::invalid_argument("'hyperparameters' must be an object");
      for (const auto& [key, value] : h.items()) {
        if (key != "lr" && key != "momentum" && key != "weight_decay" && key != "dropout") {
          throw std::invalid_argument("hyperparameters: unknown key '" + key +
                                      "' (lr, momentum, weight_decay, dropout)");
        }
        if (!value.is_number()) {
          throw std::invalid_argument("hyperparameters: '" + key + "' must be a number");
        }
      }
      arch->hp.lr = h.value("lr", arch->hp.lr);
      arch->hp.momentum = h.value("momentum", arch->hp.momentum);
      arch->hp.weight_decay = h.value("weight_decay", arch->hp.weight_decay);
      arch->hp.dropout = h.value("dropout", arch->hp.dropout);
      j.erase("hyperparameters");
    }
    arch->architecture = dash::nn::Architecture::from_json(j);
    *out = arch.release();
  });
}

dash_status dash_arch_plain(const dash_task* task, dash_arch** out) {
  return guarded("dash_arch_plain", [&] {
    require(task, "task");
    require(out, "out");
    const auto b = dash::nn::backbone_for(task->spec, 16, 1, 0);
    auto arch = std::make_unique<dash_arch>();
    arch->architecture = dash::nn::Architecture::plain(b.name(), b.searchable_layers());
    *out = arch.release();
  });
}

void dash_arch_free(dash_arch* arch) { delete arch; }

dash_status dash_retrain(const dash_task* task, const dash_arch* arch, const char* options_json,
                         dash_progress_fn progress, void* user_data, dash_model** out) {
  return guarded("dash_retrain", [&] {
    const auto t_call = std::chrono::steady_clock::now();
    require(task, "task");
    require(arch, "arch");
    require(out, "out");
    const dash::capi::Interruption stop(*task);
    const json opt = dash::capi::parse_options(options_json, dash::capi::Call::kRetrain);
    dash::capi::apply_runtime_options(opt);
    const auto raw = dash::capi::task_dataset(*task, opt);
    dash::task::Normalizer norm;  // fitted on the CPU, where the model will infer
    const auto data = on_device(dash::search::prepare(raw, &norm), dash::capi::compute_device(opt));

    dash::train::Hyperparams hp = arch->hp;
    if (!opt["lr"].is_null()) hp.lr = opt["lr"].get<double>();
    if (!opt["momentum"].is_null()) hp.momentum = opt["momentum"].get<double>();
    if (!opt["weight_decay"].is_null()) hp.weight_decay = opt["weight_decay"].get<double>();
    if (!opt["dropout"].is_null()) hp.dropout = opt["dropout"].get<double>();

    dash::search::RetrainOptions ro;
    ro.seed = opt["seed"].get<uint64_t>();
    ro.depth = opt["depth"].get<int>();
    ro.width = opt["width"].get<int>();
    ro.stem_stride = opt["stem_stride"].get<int64_t>();
    ro.batch_size = opt["batch_size"].get<int64_t>();
    ro.epochs = opt["epochs"].get<int64_t>();
    ro.batch_fraction = opt["batch_fraction"].get<double>();
    ro.augment = dash::train::Augment::named(opt["augment"].get<std::string>());
    ro.time_budget_s = budget_left(opt, t_call);
    ro.checkpoint_dir = opt["checkpoint_dir"].get<std::string>();
    ro.resume = opt["resume"].get<bool>();
    stop.check();
    auto r = stop.run([&] {
      return dash::search::run_retrain(task->spec, data, arch->architecture, hp, ro,
                                       dash::capi::progress_adapter(progress, user_data, stop));
    });
    stop.check();
    json report = r.report;
    if (!arch->report.empty()) report["search"] = arch->report;
    r.model->to(at::kCPU);  // every model starts on the CPU (dash_model_set_device moves it)
    auto model = std::make_unique<dash_model>();
    const dash::nn::BackboneSpec bspec = r.model->spec();
    model->model = std::make_unique<dash::model::TrainedModel>(
        task->spec, bspec, arch->architecture, hp, norm, report, r.model);
    *out = model.release();
  });
}

}  // extern "C"
