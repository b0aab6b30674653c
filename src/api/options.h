#pragma once
// The options of the pipeline's calls (api/pipeline.h), typed, and their JSON
// form. Each option is defined once, in the table of options.cpp: its name,
// type, the calls that use it, the field it sets, its validation and its
// help. Its default is the default of that field (search::SearchOptions,
// search::RetrainOptions and the structs below), read from a
// default-constructed struct, so the parser, describe_options(),
// dash_options_describe and README's table cannot disagree with the core.

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "dist/communicator.h"
#include "search/dash.h"
#include "train/trainer.h"

namespace dash::api {

// What every call applies to the process before it computes.
struct RuntimeOptions {
  int threads = 0;                   // compute threads; 0: all cores
  std::string device = "auto";       // "auto", "cpu" or "cuda"
  std::string fft_planner = "auto";  // ops::cpu::set_fft_planner's effort
  std::string fft_wisdom = "auto";   // ops::cpu::set_fft_wisdom's directory
  bool tune_malloc = true;           // util::tune_malloc_for_training, for the whole process
  dist::DistOptions dist;            // world_size 1: no data parallelism
};

// How a task's splits become the train and validation data of a call.
struct DataOptions {
  double valid_fraction = 0.1;  // of train, carved out when no valid split is set
  int64_t max_train = 0;        // the first N train samples only; 0: all
};

// Retrain's overrides of the architecture's hyperparameters; unset: keep its.
struct HyperparamOverrides {
  std::optional<double> lr, momentum, weight_decay, dropout;
  train::Hyperparams applied_to(train::Hyperparams hp) const;
};

struct SearchCall {
  RuntimeOptions runtime;
  DataOptions data;
  search::SearchOptions search;
};

struct RetrainCall {
  RuntimeOptions runtime;
  DataOptions data;
  search::RetrainOptions retrain;
  HyperparamOverrides hp;
};

// dash_evaluate_with: where it computes and, data-parallel, over which ranks.
// threads 0 leaves the process's thread count as it is, and device "auto" is
// wherever the model is (evaluation does not move a model), so that no
// options compute exactly what dash_evaluate did before it took any.
struct EvaluateCall {
  RuntimeOptions runtime;
};

// Parses an options JSON object given as text ("" for all defaults). Unknown
// keys, keys of another call, wrong types, values out of range and
// inconsistent combinations are std::invalid_argument naming the option.
SearchCall parse_search_options(const std::string& text);
RetrainCall parse_retrain_options(const std::string& text);
EvaluateCall parse_evaluate_options(const std::string& text);

// Every option of the call with its value, as the parser takes it back.
nlohmann::json to_json(const SearchCall& options);
nlohmann::json to_json(const RetrainCall& options);
nlohmann::json to_json(const EvaluateCall& options);

// name -> {type, default (per call where the calls differ), used_by, help,
// choices (strings with a fixed set)}.
nlohmann::json describe_options();

}  // namespace dash::api
