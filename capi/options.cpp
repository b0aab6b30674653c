// Every option of dash_search and dash_retrain: one table that parsing,
// validation and dash_options_describe all read.

#include <thread>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "capi/internal.h"
#include "ops/cpu/fftw_plans.h"

namespace dash::capi {
namespace {

using nlohmann::json;

enum Uses : unsigned { kSearchOnly = 1, kRetrainOnly = 2, kBoth = 3 };

struct OptionDef {
  const char* name;
  const char* type;  // "int", "number", "bool", "string", "int_list"
  json search_default;   // null: the option has no default in that call
  json retrain_default;
  unsigned uses;
  std::vector<std::string> choices;  // strings only; empty: any
  const char* help;
};

const std::vector<OptionDef>& table() {
  static const std::vector<OptionDef> t = {
      {"seed", "int", 0, 0, kBoth, {}, "random seed: same seed, data and threads give the same result"},
      {"threads", "int", 0, 0, kBoth, {}, "compute threads for the whole process; 0: all cores"},
      {"device", "string", "auto", "auto", kBoth, {"auto", "cpu", "cuda"},
       "where to compute; auto picks CUDA when built with it and a GPU is present"},
      {"time_budget_s", "number", 0.0, 0.0, kBoth, {},
       "wall-clock budget of the call in seconds (0: none); the call stops cleanly at it"},
      {"epochs", "int", 0, 0, kBoth, {},
       "epochs at most (search: the stopping rule usually ends it sooner); 0: as many as "
       "time_budget_s allows (search 4, retrain 10 without a budget)"},
      {"batch_size", "int", 64, 64, kBoth, {}, "samples per training step"},
      {"batch_fraction", "number", 1.0, 1.0, kBoth, {},
       "share of the shuffled train batches used per epoch, in (0, 1]"},
      {"augment", "string", "none", "none", kBoth, {"none", "shift", "flip", "shift_flip"},
       "train-time augmentation (classification, multilabel): shift moves each sample by up "
       "to 1/12 of every axis, flip mirrors half of them along the last axis"},
      {"valid_fraction", "number", 0.1, 0.1, kBoth, {},
       "share of train carved out for validation when no valid split is set"},
      {"max_train", "int", 0, 0, kBoth, {}, "use only the first N train samples (0: all)"},
      {"depth", "int", 16, 16, kBoth, {}, "Wide ResNet depth for 2D tasks (6n+4)"},
      {"width", "int", 1, 1, kBoth, {}, "backbone width (WRN widening factor; ResNet1D multiplier)"},
      {"stem_stride", "int", 0, 0, kBoth, {},
       "1D tasks without per-position outputs: a strided convolution first divides the length "
       "by this; 0: automatic (none up to 1024 positions, above it the power of 2 that brings "
       "the length to <= 512), 1: none"},
      {"kernel_sizes", "int_list", json::array(), nullptr, kSearchOnly, {},
       "candidate kernel sizes (odd); empty: DASH's default for the task"},
      {"dilations", "int_list", json::array(), nullptr, kSearchOnly, {},
       "candidate dilations; empty: DASH's default"},
      {"lr", "number", nullptr, nullptr, kBoth, {},
       "learning rate: of the search's weights (default 0.1, 0.01 for dense tasks); in "
       "retrain, overrides the architecture's"},
      {"momentum", "number", nullptr, nullptr, kRetrainOnly, {},
       "overrides the architecture's momentum"},
      {"weight_decay", "number", nullptr, nullptr, kRetrainOnly, {},
       "overrides the architecture's weight decay"},
      {"dropout", "number", nullptr, nullptr, kRetrainOnly, {},
       "overrides the architecture's dropout"},
      {"arch_search", "bool", true, nullptr, kSearchOnly, {},
       "false: no search, the plain backbone (k=3, d=1) with the same hyperparameter grid"},
      {"arch_lr", "number", nullptr, nullptr, kSearchOnly, {},
       "learning rate of the architecture logits (default 0.05, 0.005 for dense tasks)"},
      {"field_penalty", "number", 0.5, nullptr, kSearchOnly, {},
       "push towards small receptive fields, in units of a typical data-gradient entry"},
      {"cost_weight", "number", 4.0, nullptr, kSearchOnly, {},
       "push towards cheap candidates: weight of a candidate's extra step time over the "
       "backbone's step"},
      {"max_cost_ratio", "number", 1.25, nullptr, kSearchOnly, {},
       "the chosen network's estimated step may cost at most this many backbone steps "
       "(0: no limit)"},
      {"cost_model", "string", "measured", nullptr, kSearchOnly, {"measured", "macs"},
       "measured: time every candidate here once per task; macs: count multiply-accumulates "
       "(machine-blind, bit-reproducible)"},
      {"warmup_steps", "int", 10, nullptr, kSearchOnly, {},
       "search steps that train only the weights before the architecture logits move"},
      {"patience", "int", 10, nullptr, kSearchOnly, {},
       "a layer is frozen at its choice once it held for this many steps (with margin)"},
      {"margin", "number", 0.05, nullptr, kSearchOnly, {},
       "probability lead over the runner-up a layer needs to be frozen"},
      {"prune_below", "number", 0.02, nullptr, kSearchOnly, {},
       "candidates whose probability falls below this leave the mixture"},
      {"guard", "bool", true, nullptr, kSearchOnly, {},
       "keep the searched network only if it validates better than the plain backbone "
       "after the same training time"},
      {"temperature", "number", 1.0, nullptr, kSearchOnly, {}, "Gumbel-softmax temperature"},
      {"hpo", "bool", true, nullptr, kSearchOnly, {},
       "tune lr (and, with hpo_grid dash, dropout, weight decay, momentum) after the search"},
      {"hpo_grid", "string", "small", nullptr, kSearchOnly, {"small", "dash"},
       "small: lr {0.1, 0.03, 0.01}; dash: DASH's 24-point grid with its early stop"},
      {"hpo_epochs", "int", 0, nullptr, kSearchOnly, {},
       "epochs per grid point; 0: each point trains hpo_share x time_budget_s / (points + 1) "
       "seconds (1 epoch without a budget)"},
      {"hpo_share", "number", 0.57, nullptr, kSearchOnly, {},
       "share of time_budget_s given to the guard and the grid"},
      {"fft_planner", "string", "auto", "auto", kBoth, {"auto", "estimate", "measure", "patient"},
       "FFTW planning: auto measures 2D plans and estimates 1D ones (fastest searches measured); "
       "estimate is bit-reproducible between processes"},
      {"checkpoint_dir", "string", "", "", kBoth, {},
       "where checkpoints go at each epoch end (\"\": none)"},
      {"resume", "bool", false, false, kBoth, {}, "continue from the checkpoints in checkpoint_dir"},
  };
  return t;
}

bool type_matches(const OptionDef& d, const json& v) {
  const std::string type = d.type;
  if (type == "int") return v.is_number_integer();
  if (type == "number") return v.is_number();
  if (type == "bool") return v.is_boolean();
  if (type == "string") return v.is_string();
  if (type == "int_list") {
    if (!v.is_array()) return false;
    for (const auto& e : v) {
      if (!e.is_number_integer()) return false;
    }
    return true;
  }
  return false;
}

const char* call_name(Call c) { return c == Call::kSearch ? "dash_search" : "dash_retrain"; }

}  // namespace

json parse_options(const char* options_json, Call call) {
  json user = json::object();
  if (options_json != nullptr && options_json[0] != '\0') {
    try {
      user = json::parse(options_json);
    } catch (const json::exception& e) {
      throw std::invalid_argument(std::string("options are not valid JSON: ") + e.what());
    }
    if (!user.is_object()) throw std::invalid_argument("options must be a JSON object");
  }
  const unsigned mine = call == Call::kSearch ? kSearchOnly : kRetrainOnly;
  json out = json::object();
  for (const auto& d : table()) {
    if (d.uses & mine) out[d.name] = call == Call::kSearch ? d.search_default : d.retrain_default;
  }
  for (const auto& [key, value] : user.items()) {
    const OptionDef* def = nullptr;
    for (const auto& d : table()) {
      if (key == d.name) def = &d;
    }
    if (def == nullptr) {
      throw std::invalid_argument("unknown option '" + key +
                                  "'; dash_options_describe lists every option");
    }
    if (!(def->uses & mine)) {
      throw std::invalid_argument("option '" + key + "' is used by " +
                                  call_name(call == Call::kSearch ? Call::kRetrain : Call::kSearch) +
                                  ", not " + call_name(call));
    }
    // null is the "not set" default of the options that override something;
    // passing it explicitly means the same.
    const json& fallback = call == Call::kSearch ? def->search_default : def->retrain_default;
    if (value.is_null() && fallback.is_null()) continue;
    if (!type_matches(*def, value)) {
      throw std::invalid_argument("option '" + key + "' must be of type " + def->type + ", got " +
                                  value.dump());
    }
    if (!def->choices.empty() &&
        std::find(def->choices.begin(), def->choices.end(), value.get<std::string>()) ==
            def->choices.end()) {
      std::string all;
      for (const auto& c : def->choices) all += (all.empty() ? "" : ", ") + c;
      throw std::invalid_argument("option '" + key + "' must be one of " + all + ", got " +
                                  value.dump());
    }
    out[key] = value;
  }
  auto at_least = [&](const char* key, double min) {
    if (!out[key].is_null() && out[key].get<double>() < min) {
      throw std::invalid_argument(std::string("option '") + key + "' must be >= " +
                                  std::to_string(static_cast<long long>(min)) + ", got " +
                                  out[key].dump());
    }
  };
  at_least("seed", 0);
  at_least("threads", 0);
  at_least("time_budget_s", 0);
  at_least("epochs", 0);
  at_least("batch_size", 1);
  at_least("max_train", 0);
  at_least("width", 1);
  at_least("stem_stride", 0);
  const double bf = out["batch_fraction"].get<double>();
  if (!(bf > 0 && bf <= 1)) throw std::invalid_argument("option 'batch_fraction' must be in (0, 1]");
  const double vf = out["valid_fraction"].get<double>();
  if (!(vf > 0 && vf < 1)) throw std::invalid_argument("option 'valid_fraction' must be in (0, 1)");
  if (call == Call::kSearch) {
    const double hs = out["hpo_share"].get<double>();
    if (!(hs > 0 && hs < 1)) throw std::invalid_argument("option 'hpo_share' must be in (0, 1)");
    if (out["kernel_sizes"].empty() != out["dilations"].empty()) {
      throw std::invalid_argument("give both 'kernel_sizes' and 'dilations', or neither");
    }
    at_least("hpo_epochs", 0);
    at_least("warmup_steps", 0);
    at_least("patience", 1);
    at_least("field_penalty", 0);
    at_least("cost_weight", 0);
    at_least("max_cost_ratio", 0);
    const double mcr = out["max_cost_ratio"].get<double>();
    if (mcr > 0 && mcr < 1) {
      throw std::invalid_argument("option 'max_cost_ratio' must be 0 (no limit) or >= 1: the plain "
                                  "backbone itself costs 1");
    }
    const double margin = out["margin"].get<double>(), prune = out["prune_below"].get<double>();
    if (!(margin >= 0 && margin < 1)) throw std::invalid_argument("option 'margin' must be in [0, 1)");
    if (!(prune >= 0 && prune < 1)) throw std::invalid_argument("option 'prune_below' must be in [0, 1)");
  }
  if (out["resume"].get<bool>() && out["checkpoint_dir"].get<std::string>().empty()) {
    throw std::invalid_argument("option 'resume' needs 'checkpoint_dir'");
  }
  return out;
}

json describe_options() {
  json all = json::object();
  for (const auto& d : table()) {
    json used = json::array();
    if (d.uses & kSearchOnly) used.push_back("search");
    if (d.uses & kRetrainOnly) used.push_back("retrain");
    json def;
    if ((d.uses == kBoth) && d.search_default != d.retrain_default) {
      def = {{"search", d.search_default}, {"retrain", d.retrain_default}};
    } else {
      def = (d.uses & kSearchOnly) ? d.search_default : d.retrain_default;
    }
    json entry = {{"type", d.type}, {"default", def}, {"used_by", used}, {"help", d.help}};
    if (!d.choices.empty()) entry["choices"] = d.choices;
    all[d.name] = entry;
  }
  return all;
}

at::Device compute_device(const json& options) {
  return device_named(options["device"].get<std::string>());
}

at::Device device_named(const std::string& device) {
  if (device != "auto" && device != "cpu" && device != "cuda") {
    throw std::invalid_argument("device must be \"auto\", \"cpu\" or \"cuda\", got \"" + device + "\"");
  }
#if defined(DASH_WITH_CUDA)
  const bool gpu = torch::cuda::is_available();
  if (device == "cuda" && !gpu) {
    throw Unsupported("device 'cuda': this build has CUDA but LibTorch sees no GPU; use 'cpu' or 'auto'");
  }
  return (device == "cuda" || (device == "auto" && gpu)) ? at::Device(at::kCUDA) : at::Device(at::kCPU);
#else
  if (device == "cuda") {
    throw Unsupported("device 'cuda' needs a build with -DDASH_WITH_CUDA=ON and a GPU; use 'cpu' or 'auto'");
  }
  return at::Device(at::kCPU);
#endif
}

void apply_runtime_options(const json& options) {
  compute_device(options);  // refuses "cuda" where it cannot run, before any work
  const int threads = options["threads"].get<int>();
  torch::set_num_threads(threads > 0 ? threads
                                     : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  ops::cpu::set_fft_planner(options["fft_planner"].get<std::string>());
}

}  // namespace dash::capi

extern "C" dash_status dash_options_describe(char** json_out) {
  return dash::capi::guarded("dash_options_describe", [&] {
    dash::capi::require(json_out, "json_out");
    *json_out = dash::capi::copy_string(dash::capi::describe_options().dump(2));
  });
}
