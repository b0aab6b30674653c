#pragma once
// The pipeline as a C++ program calls it: a task's data in, an architecture,
// a trained model, an evaluation report or predictions out. Every policy
// between the user's call and the core's stages lives here: how train and
// validation are formed, where the work runs, how the time budget counts
// data preparation, how a model is assembled. The C ABI (capi/) is a thin
// translation of these functions; so is any other front end.
//
// Errors are exceptions with messages a user can act on:
// std::invalid_argument for wrong input, dash::Unsupported for what this build
// or machine cannot do, dash::IoError / dash::FormatError for files,
// train::Cancelled when `progress` asked to stop.

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <array>
#include <memory>
#include <string>

#include "api/options.h"
#include "model/trained_model.h"
#include "nn/architecture.h"
#include "task/dataset.h"
#include "task/task_spec.h"
#include "train/progress.h"
#include "train/trainer.h"

namespace dash::api {

enum SplitIndex : size_t { kTrain = 0, kValid = 1, kTest = 2 };
const char* split_name(SplitIndex split);

// A task: its spec and the data of its three splits, each checked against
// the spec when set (an unset split is empty; valid is then carved from train).
struct TaskData {
  task::TaskSpec spec;
  std::array<task::Split, 3> splits;
};

// A checked copy of a caller's buffers: x float32 [n, input_shape...]; y
// int64 class indices [n] for classification, else float32 [n, target...].
task::Split split_from_buffers(const task::TaskSpec& spec, const float* x, const void* y, int64_t n,
                               SplitIndex split);

// prod(shape): the values one sample of that shape holds; std::invalid_argument
// if that overflows int64_t.
int64_t values_per_sample(const std::vector<int64_t>& shape);

// An architecture, the hyperparameters to retrain it with, and the report of
// the search that chose it ({} when it was not searched).
struct ArchChoice {
  nn::Architecture architecture;
  train::Hyperparams hp;
  nlohmann::json report;
  // The search's trained trial of this network (on the CPU; never trained
  // further, so handles may share it), which the retrain starts from; null
  // for an architecture made from JSON. Not part of to_json().
  nn::Backbone trained{nullptr};

  // The architecture's JSON with a "hyperparameters" object.
  nlohmann::json to_json() const;
  // Takes to_json()'s form; "hyperparameters" may be absent or partial (the
  // rest keep train::Hyperparams' defaults).
  static ArchChoice from_json(const nlohmann::json& j);
};

// The plain backbone of the task (k=3, d=1 in every searchable layer) at the
// options' default depth.
ArchChoice plain_architecture(const task::TaskSpec& spec);

// DASH's search, guard and grid on the task's data.
ArchChoice search(const TaskData& task, const SearchCall& options, const train::ProgressFn& progress);

// Trains `arch` on the task's data and scores test once; the model is on the CPU.
std::unique_ptr<model::TrainedModel> retrain(const TaskData& task, const ArchChoice& arch,
                                             const RetrainCall& options, const train::ProgressFn& progress);

// Loss and metric of `model` on one split of `task`, which must have the
// model's input and outputs: {split, samples, loss, metric_name, metric,
// higher_is_better}, computed where the model is. Data-parallel
// (world_size > 1), every rank scores its rows of the split (rows r,
// r + world_size, ... of the whole split, or its own with data_sharded) and
// returns the same report over all ranks' rows, with a "distributed" entry
// {world_size, rank, backend, data_sharded}.
nlohmann::json evaluate(const model::TrainedModel& model, const TaskData& task, SplitIndex split,
                        const EvaluateCall& options = {});

// Predictions for n raw samples at x into out (out_len == n x output_size()).
void infer(const model::TrainedModel& model, const float* x, int64_t n, float* out, int64_t out_len);

// "cpu", "cuda" (dash::Unsupported in a build without CUDA or on a machine
// without a GPU) or "auto" (CUDA when both are there).
at::Device device_named(const std::string& device);

}  // namespace dash::api
