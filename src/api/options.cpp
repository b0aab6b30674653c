// The one table of options: parsing, validation, defaults and descriptions
// all read it (see options.h).

#include "api/options.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <sstream>
#include <type_traits>
#include <vector>

namespace dash::api {
namespace {

using nlohmann::json;

// --- field values <-> JSON ----------------------------------------------------
// NaN (a double) and nullopt both mean "not set" and read as null.

template <class T>
json encode(const T& v) {
  return json(v);
}
json encode(double v) { return std::isnan(v) ? json() : json(v); }
json encode(const std::optional<double>& v) { return v ? json(*v) : json(); }
json encode(const train::Augment& v) { return v.name(); }
json encode(search::CostModelKind v) { return v == search::CostModelKind::kMacs ? "macs" : "measured"; }

template <class T>
void decode(const json& j, T* v) {
  *v = j.get<T>();
}
void decode(const json& j, double* v) {
  *v = j.is_null() ? std::numeric_limits<double>::quiet_NaN() : j.get<double>();
}
void decode(const json& j, std::optional<double>* v) {
  if (j.is_null()) {
    v->reset();
  } else {
    *v = j.get<double>();
  }
}
void decode(const json& j, train::Augment* v) { *v = train::Augment::named(j.get<std::string>()); }
void decode(const json& j, search::CostModelKind* v) {
  *v = j.get<std::string>() == "macs" ? search::CostModelKind::kMacs : search::CostModelKind::kMeasured;
}

// --- where an option lives in each call ---------------------------------------

search::CommonOptions& common(SearchCall& c) { return c.search; }
const search::CommonOptions& common(const SearchCall& c) { return c.search; }
search::CommonOptions& common(RetrainCall& c) { return c.retrain; }
const search::CommonOptions& common(const RetrainCall& c) { return c.retrain; }

template <class Call>
struct Binding {
  std::function<json(const Call&)> get;
  std::function<void(Call&, const json&)> set;
};

// `field` is a generic lambda returning a reference to the option's field in
// a call (const or not).
template <class Call, class F>
Binding<Call> bind(F field) {
  return {[field](const Call& c) { return encode(field(c)); },
          [field](Call& c, const json& v) { decode(v, &field(c)); }};
}

// --- validation -----------------------------------------------------------------

using Check = std::function<void(const std::string& name, const json& value)>;

std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

Check at_least(double min) {
  return [min](const std::string& name, const json& v) {
    if (v.get<double>() < min) {
      throw std::invalid_argument("option '" + name + "' must be >= " + number_text(min) + ", got " + v.dump());
    }
  };
}

Check above(double min) {
  return [min](const std::string& name, const json& v) {
    if (!(v.get<double>() > min)) {
      throw std::invalid_argument("option '" + name + "' must be > " + number_text(min) + ", got " + v.dump());
    }
  };
}

// lo < v (or <=) and v < hi (or <=): "(0, 1]" and the like.
Check within(double lo, bool lo_closed, double hi, bool hi_closed) {
  return [=](const std::string& name, const json& v) {
    const double x = v.get<double>();
    const bool ok = (lo_closed ? x >= lo : x > lo) && (hi_closed ? x <= hi : x < hi);
    if (!ok) {
      throw std::invalid_argument("option '" + name + "' must be in " + (lo_closed ? "[" : "(") +
                                  number_text(lo) + ", " + number_text(hi) + (hi_closed ? "]" : ")") +
                                  ", got " + v.dump());
    }
  };
}

// --- the table --------------------------------------------------------------------

struct OptionDef {
  std::string name;
  std::string type;  // "int", "number", "bool", "string", "int_list"
  std::optional<Binding<SearchCall>> search;    // unset: dash_search does not take it
  std::optional<Binding<RetrainCall>> retrain;  // unset: dash_retrain does not take it
  std::vector<std::string> choices;             // strings only; empty: any
  Check check;                                  // may be empty
  std::string help;
  std::optional<Binding<EvaluateCall>> evaluate = std::nullopt;  // unset: dash_evaluate_with does not take it
};

// An option both calls take, at the same place in each.
template <class F>
OptionDef both(std::string name, std::string type, F field, std::vector<std::string> choices, Check check,
               std::string help) {
  return {std::move(name), std::move(type), bind<SearchCall>(field), bind<RetrainCall>(field),
          std::move(choices), std::move(check), std::move(help)};
}

// An option of every call, dash_evaluate_with's included: how the process
// computes and how it joins a data-parallel run.
template <class F>
OptionDef every_call(std::string name, std::string type, F field, std::vector<std::string> choices, Check check,
                     std::string help) {
  OptionDef d = both(std::move(name), std::move(type), field, std::move(choices), std::move(check), std::move(help));
  d.evaluate = bind<EvaluateCall>(field);
  return d;
}

template <class F>
OptionDef search_only(std::string name, std::string type, F field, std::vector<std::string> choices,
                      Check check, std::string help) {
  return {std::move(name), std::move(type), bind<SearchCall>(field), std::nullopt,
          std::move(choices), std::move(check), std::move(help)};
}

template <class F>
OptionDef retrain_only(std::string name, std::string type, F field, Check check, std::string help) {
  return {std::move(name), std::move(type), std::nullopt, bind<RetrainCall>(field), {}, std::move(check),
          std::move(help)};
}

const std::vector<OptionDef>& table() {
  using search::kDenseArchLr;
  using search::kDenseLr;
  static const std::vector<OptionDef> t = {
      both("seed", "int", [](auto& c) -> auto& { return common(c).seed; }, {}, at_least(0),
           "random seed: same seed, data and threads give the same result"),
      every_call("threads", "int", [](auto& c) -> auto& { return c.runtime.threads; }, {}, at_least(0),
                 "compute threads for the whole process; 0: all cores (evaluate: as the process has them)"),
      every_call("tune_malloc", "bool", [](auto& c) -> auto& { return c.runtime.tune_malloc; }, {}, {},
                 "glibc's malloc, for the whole process: keep freed blocks of up to 256 MB for reuse instead "
                 "of mapping and zero-filling them afresh each step (with another job on the machine, large "
                 "steps ran up to 2x slower without); false: leave malloc as the application set it"),
      every_call("device", "string", [](auto& c) -> auto& { return c.runtime.device; }, {"auto", "cpu", "cuda"},
                 {},
                 "where to compute; auto picks CUDA when built with it and a GPU is present (evaluate: "
                 "where the model is, which dash_model_set_device chooses; cpu or cuda must name that)"),
      both("time_budget_s", "number", [](auto& c) -> auto& { return common(c).time_budget_s; }, {},
           at_least(0),
           "wall-clock budget of the call in seconds (0: none); the call stops cleanly at it"),
      both("epochs", "int", [](auto& c) -> auto& { return common(c).epochs; }, {}, at_least(0),
           "epochs at most (search: the stopping rule usually ends it sooner); 0: as many as "
           "time_budget_s allows (search " + std::to_string(search::kSearchEpochsUnbudgeted) + ", retrain " +
               std::to_string(search::kRetrainEpochsUnbudgeted) + " without a budget)"),
      both("batch_size", "int", [](auto& c) -> auto& { return common(c).batch_size; }, {}, at_least(1),
           "samples per training step"),
      both("batch_fraction", "number", [](auto& c) -> auto& { return common(c).batch_fraction; }, {},
           within(0, false, 1, true), "share of the shuffled train batches used per epoch, in (0, 1]"),
      both("augment", "string", [](auto& c) -> auto& { return common(c).augment; },
           {"none", "shift", "flip", "shift_flip"}, {},
           "train-time augmentation (classification, multilabel): shift moves each sample by up "
           "to 1/12 of every axis, flip mirrors half of them along the last axis"),
      both("valid_fraction", "number", [](auto& c) -> auto& { return c.data.valid_fraction; }, {},
           within(0, false, 1, false), "share of train carved out for validation when no valid split is set"),
      both("max_train", "int", [](auto& c) -> auto& { return c.data.max_train; }, {}, at_least(0),
           "use only the first N train samples (0: all)"),
      both("depth", "int", [](auto& c) -> auto& { return common(c).depth; }, {}, at_least(1),
           "Wide ResNet depth for 2D tasks (6n+4)"),
      both("width", "int", [](auto& c) -> auto& { return common(c).width; }, {}, at_least(1),
           "backbone width (WRN widening factor; ResNet1D multiplier)"),
      both("stem_stride", "int", [](auto& c) -> auto& { return common(c).stem_stride; }, {}, at_least(0),
           "1D tasks without per-position outputs: a strided convolution first divides the length "
           "by this; 0: automatic (none up to 1024 positions, above it the power of 2 that brings "
           "the length to <= 512), 1: none"),
      search_only("kernel_sizes", "int_list", [](auto& c) -> auto& { return c.search.space.kernel_sizes; }, {},
                  {}, "candidate kernel sizes (odd); empty: DASH's default for the task"),
      search_only("dilations", "int_list", [](auto& c) -> auto& { return c.search.space.dilations; }, {}, {},
                  "candidate dilations; empty: DASH's default"),
      {"lr", "number", bind<SearchCall>([](auto& c) -> auto& { return c.search.lr; }),
       bind<RetrainCall>([](auto& c) -> auto& { return c.hp.lr; }), {}, above(0),
       "learning rate: of the search's weights (default " + number_text(train::Hyperparams{}.lr) + ", " +
           number_text(kDenseLr) + " for dense tasks); in retrain, overrides the architecture's"},
      retrain_only("momentum", "number", [](auto& c) -> auto& { return c.hp.momentum; }, at_least(0),
                   "overrides the architecture's momentum"),
      retrain_only("weight_decay", "number", [](auto& c) -> auto& { return c.hp.weight_decay; }, at_least(0),
                   "overrides the architecture's weight decay"),
      retrain_only("dropout", "number", [](auto& c) -> auto& { return c.hp.dropout; },
                   within(0, true, 1, false), "overrides the architecture's dropout"),
      retrain_only("warm_start", "bool", [](auto& c) -> auto& { return c.retrain.warm_start; }, {},
                   "start from the weights the search's winning trial trained (an architecture from "
                   "dash_search in this process, same width and depth); false: from random weights"),
      retrain_only("decay_share", "number", [](auto& c) -> auto& { return c.retrain.decay_share; },
                   within(0, false, 1, true),
                   "the learning rate holds at lr until the last decay_share of the retrain's budget, then "
                   "follows a cosine to 0; 1: a cosine over the whole retrain. Below 1, retrains of different "
                   "lengths from the same weights and seed take the same steps until the shorter one's decay"),
      search_only("arch_search", "bool", [](auto& c) -> auto& { return c.search.arch_search; }, {}, {},
                  "false: no search, the plain backbone (k=3, d=1) with the same hyperparameter grid"),
      search_only("arch_lr", "number", [](auto& c) -> auto& { return c.search.arch.lr; }, {},
                  above(0),
                  "learning rate of the architecture logits (default " + number_text(train::ArchOptions{}.lr) +
                      ", " + number_text(kDenseArchLr) + " for dense tasks)"),
      search_only("field_penalty", "number", [](auto& c) -> auto& { return c.search.field_penalty; }, {},
                  at_least(0), "push towards small receptive fields, in units of a typical data-gradient entry"),
      search_only("cost_weight", "number", [](auto& c) -> auto& { return c.search.cost_weight; }, {},
                  at_least(0),
                  "push towards cheap candidates: weight of a candidate's extra step time over the "
                  "backbone's step"),
      search_only("max_cost_ratio", "number", [](auto& c) -> auto& { return c.search.max_cost_ratio; }, {},
                  at_least(0),
                  "the chosen network's estimated step may cost at most this many backbone steps "
                  "(0: no limit)"),
      search_only("cost_model", "string", [](auto& c) -> auto& { return c.search.cost_model; },
                  {"measured", "macs"}, {},
                  "measured: time every candidate here once per task; macs: count multiply-accumulates "
                  "(machine-blind, bit-reproducible)"),
      search_only("warmup_steps", "int", [](auto& c) -> auto& { return c.search.warmup_steps; }, {},
                  at_least(0), "search steps that train only the weights before the architecture logits move"),
      search_only("patience", "int", [](auto& c) -> auto& { return c.search.patience; }, {}, at_least(1),
                  "a layer is frozen at its choice once it held for this many steps (with margin)"),
      search_only("margin", "number", [](auto& c) -> auto& { return c.search.margin; }, {},
                  within(0, true, 1, false), "probability lead over the runner-up a layer needs to be frozen"),
      search_only("prune_below", "number", [](auto& c) -> auto& { return c.search.prune_below; }, {},
                  within(0, true, 1, false), "candidates whose probability falls below this leave the mixture"),
      search_only("guard", "bool", [](auto& c) -> auto& { return c.search.guard; }, {}, {},
                  "keep the searched network only if it validates better than the plain backbone "
                  "after the same training time"),
      search_only("guard_stderrs", "number", [](auto& c) -> auto& { return c.search.guard_stderrs; }, {},
                  at_least(0),
                  "the guard keeps the searched network when its mean lead over the folds of valid "
                  "exceeds this many standard errors"),
      search_only("guard_confirm_below", "number",
                  [](auto& c) -> auto& { return c.search.guard_confirm_below; }, {}, at_least(0),
                  "a keep whose gain is below this many guard_min_gain is confirmed by a second look: both "
                  "networks train on as long again and the searched one must pass the guard again (0: never)"),
      search_only("guard_min_gain", "number", [](auto& c) -> auto& { return c.search.guard_min_gain; }, {},
                  within(0, true, 1, true),
                  "the guard also asks the searched network's lead to remove at least this share of the "
                  "backbone's distance to a perfect score (1 - accuracy, or the error); short trials "
                  "flatter networks that only learn faster early (0: no such requirement)"),
      search_only("temperature", "number", [](auto& c) -> auto& { return c.search.arch.temperature; }, {},
                  above(0), "Gumbel-softmax temperature"),
      search_only("hpo", "bool", [](auto& c) -> auto& { return c.search.hpo; }, {}, {},
                  "tune lr (and, with hpo_grid dash, dropout, weight decay, momentum) after the search"),
      search_only("hpo_grid", "string", [](auto& c) -> auto& { return c.search.hpo_grid; }, {"small", "dash"},
                  {}, "small: lr {0.1, 0.03, 0.01}; dash: DASH's 24-point grid with its early stop"),
      search_only("hpo_epochs", "int", [](auto& c) -> auto& { return c.search.hpo_epochs; }, {}, at_least(0),
                  "epochs per grid point; 0: each point trains hpo_share x time_budget_s / (points + 1) "
                  "seconds (1 epoch without a budget)"),
      search_only("min_trial_steps", "int", [](auto& c) -> auto& { return c.search.min_trial_steps; }, {},
                  at_least(0),
                  "a timed guard or grid trial lasts at least this many backbone steps where hpo_share "
                  "holds two such trials (fewer grid points are then tried); 0: no minimum"),
      search_only("grid_spread", "string", [](auto& c) -> auto& { return c.search.grid_spread; },
                  {"auto", "always", "off"}, {},
                  "with world_size > 1, grid points run world_size at once, each whole on one rank: auto where "
                  "one process would run them all (the grid's early stop cannot fall inside the round), always "
                  "(the early stop's skips run too), off (each data-parallel over all ranks)"),
      search_only("hpo_share", "number", [](auto& c) -> auto& { return c.search.hpo_share; }, {},
                  within(0, false, 1, false), "share of time_budget_s given to the guard and the grid"),
      both("fft_planner", "string", [](auto& c) -> auto& { return c.runtime.fft_planner; },
           {"auto", "estimate", "measure", "patient"}, {},
           "FFTW planning: auto measures 2D plans of calls with 256 or more arrays and estimates the rest (fastest "
           "searches measured); "
           "estimate is bit-reproducible between processes"),
      both("fft_wisdom", "string", [](auto& c) -> auto& { return c.runtime.fft_wisdom; }, {}, {},
           "directory where measured FFT plans are kept for later processes (FFTW wisdom): auto is "
           "$DASH_FFTW_WISDOM if set, else $XDG_CACHE_HOME/dashnas or ~/.cache/dashnas; off: nowhere"),
      both("checkpoint_dir", "string", [](auto& c) -> auto& { return common(c).checkpoint_dir; }, {}, {},
           "where checkpoints go at each epoch end (\"\": none)"),
      both("resume", "bool", [](auto& c) -> auto& { return common(c).resume; }, {}, {},
           "continue from the checkpoints in checkpoint_dir"),
      every_call("world_size", "int", [](auto& c) -> auto& { return c.runtime.dist.world_size; }, {}, at_least(1),
                 "processes of a data-parallel run (on one machine or many); 1: this process alone"),
      every_call("rank", "int", [](auto& c) -> auto& { return c.runtime.dist.rank; }, {}, at_least(0),
                 "this process's place in a data-parallel run, 0 .. world_size - 1 (rank 0 writes the files)"),
      every_call("init", "string", [](auto& c) -> auto& { return c.runtime.dist.init; }, {}, {},
                 "where the ranks meet: tcp://HOST:PORT (rank 0 hosts a c10d TCPStore on PORT) or "
                 "file://PATH (a c10d FileStore on a file system every rank sees)"),
      every_call("dist_backend", "string", [](auto& c) -> auto& { return c.runtime.dist.backend; },
                 {"auto", "gloo", "nccl"}, {}, "c10d process group: auto is gloo on the CPU, nccl on CUDA"),
      every_call("dist_timeout_s", "number", [](auto& c) -> auto& { return c.runtime.dist.timeout_s; }, {}, above(0),
                 "the longest a rank waits for the others (to join, or in a step) before it fails"),
      every_call("data_sharded", "bool", [](auto& c) -> auto& { return c.runtime.dist.data_sharded; }, {}, {},
                 "false: every rank is given the whole data and keeps a disjoint shard of train and "
                 "every world_size-th row of the splits it scores; true: each rank is given its own shard"),
      both("sync_batch_norm", "bool", [](auto& c) -> auto& { return c.runtime.dist.sync_batch_norm; }, {}, {},
           "data-parallel batch norm: true normalises with the whole global batch's statistics (a run "
           "then computes what one process does on the global batch; two messages per layer and step), "
           "false with each rank's own batch, the running statistics averaged over ranks at each epoch's end"),
      both("batch_size_global", "int", [](auto& c) -> auto& { return c.runtime.dist.batch_size_global; }, {},
           at_least(0),
           "samples per step over all ranks (a multiple of world_size; each rank takes its share); "
           "0: batch_size per rank"),
  };
  return t;
}

bool type_matches(const std::string& type, const json& v) {
  if (type == "int") return v.is_number_integer();
  if (type == "number") return v.is_number();
  if (type == "bool") return v.is_boolean();
  if (type == "string") return v.is_string();
  if (type == "int_list") {
    return v.is_array() && std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number_integer(); });
  }
  return false;
}

template <class Call>
const std::optional<Binding<Call>>& binding(const OptionDef& d);
template <>
const std::optional<Binding<SearchCall>>& binding<SearchCall>(const OptionDef& d) {
  return d.search;
}
template <>
const std::optional<Binding<RetrainCall>>& binding<RetrainCall>(const OptionDef& d) {
  return d.retrain;
}
template <>
const std::optional<Binding<EvaluateCall>>& binding<EvaluateCall>(const OptionDef& d) {
  return d.evaluate;
}

template <class Call>
constexpr const char* call_name() {
  if constexpr (std::is_same_v<Call, SearchCall>) return "dash_search";
  if constexpr (std::is_same_v<Call, RetrainCall>) return "dash_retrain";
  return "dash_evaluate_with";
}

// The calls that take an option, for a refusal: "dash_search and dash_retrain".
std::string calls_taking(const OptionDef& d) {
  std::vector<std::string> names;
  if (d.search) names.push_back(call_name<SearchCall>());
  if (d.retrain) names.push_back(call_name<RetrainCall>());
  if (d.evaluate) names.push_back(call_name<EvaluateCall>());
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    text += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  }
  return text;
}

json parse_object(const std::string& text) {
  if (text.empty()) return json::object();
  json user;
  try {
    user = json::parse(text);
  } catch (const json::exception& e) {
    throw std::invalid_argument(std::string("options are not valid JSON: ") + e.what());
  }
  if (!user.is_object()) throw std::invalid_argument("options must be a JSON object");
  return user;
}

template <class Call>
Call parse(const std::string& text) {
  Call call;
  const Call defaults;
  const json user = parse_object(text);
  for (const auto& [key, value] : user.items()) {
    const auto def = std::find_if(table().begin(), table().end(), [&](const OptionDef& d) { return d.name == key; });
    if (def == table().end()) {
      throw std::invalid_argument("unknown option '" + key + "'; dash_options_describe lists every option");
    }
    const auto& b = binding<Call>(*def);
    if (!b) {
      throw std::invalid_argument("option '" + key + "' is used by " + calls_taking(*def) + ", not " +
                                  call_name<Call>());
    }
    // null is the "not set" default of the options that override something;
    // passing it explicitly means the same.
    if (value.is_null() && b->get(defaults).is_null()) continue;
    if (!type_matches(def->type, value)) {
      throw std::invalid_argument("option '" + key + "' must be of type " + def->type + ", got " + value.dump());
    }
    if (!def->choices.empty() &&
        std::find(def->choices.begin(), def->choices.end(), value.template get<std::string>()) == def->choices.end()) {
      std::string all;
      for (const auto& c : def->choices) all += (all.empty() ? "" : ", ") + c;
      throw std::invalid_argument("option '" + key + "' must be one of " + all + ", got " + value.dump());
    }
    if (def->check) def->check(key, value);
    b->set(call, value);
  }
  if constexpr (!std::is_same_v<Call, EvaluateCall>) {
    const search::CommonOptions& o = common(call);
    if (o.resume && o.checkpoint_dir.empty()) throw std::invalid_argument("option 'resume' needs 'checkpoint_dir'");
  }
  dist::validate(call.runtime.dist);
  return call;
}

template <class Call>
json all_options(const Call& call) {
  json out = json::object();
  for (const auto& d : table()) {
    if (const auto& b = binding<Call>(d)) out[d.name] = b->get(call);
  }
  return out;
}

}  // namespace

train::Hyperparams HyperparamOverrides::applied_to(train::Hyperparams hp) const {
  if (lr) hp.lr = *lr;
  if (momentum) hp.momentum = *momentum;
  if (weight_decay) hp.weight_decay = *weight_decay;
  if (dropout) hp.dropout = *dropout;
  return hp;
}

SearchCall parse_search_options(const std::string& text) {
  SearchCall c = parse<SearchCall>(text);
  const search::SearchOptions& s = c.search;
  if (s.space.kernel_sizes.empty() != s.space.dilations.empty()) {
    throw std::invalid_argument("give both 'kernel_sizes' and 'dilations', or neither");
  }
  if (s.max_cost_ratio > 0 && s.max_cost_ratio < 1) {
    throw std::invalid_argument("option 'max_cost_ratio' must be 0 (no limit) or >= 1: the plain "
                                "backbone itself costs 1");
  }
  return c;
}

RetrainCall parse_retrain_options(const std::string& text) { return parse<RetrainCall>(text); }

EvaluateCall parse_evaluate_options(const std::string& text) { return parse<EvaluateCall>(text); }

json to_json(const SearchCall& options) { return all_options(options); }
json to_json(const RetrainCall& options) { return all_options(options); }
json to_json(const EvaluateCall& options) { return all_options(options); }

json describe_options() {
  const SearchCall search_defaults;
  const RetrainCall retrain_defaults;
  json all = json::object();
  for (const auto& d : table()) {
    json used = json::array();
    if (d.search) used.push_back("search");
    if (d.retrain) used.push_back("retrain");
    if (d.evaluate) used.push_back("evaluate");
    json def;
    if (d.search && d.retrain && d.search->get(search_defaults) != d.retrain->get(retrain_defaults)) {
      def = {{"search", d.search->get(search_defaults)}, {"retrain", d.retrain->get(retrain_defaults)}};
    } else {
      def = d.search ? d.search->get(search_defaults) : d.retrain->get(retrain_defaults);
    }
    json entry = {{"type", d.type}, {"default", def}, {"used_by", used}, {"help", d.help}};
    if (!d.choices.empty()) entry["choices"] = d.choices;
    all[d.name] = entry;
  }
  return all;
}

}  // namespace dash::api
