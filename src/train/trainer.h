#pragma once
// The one training loop behind every stage of a DASH run: the search (weights
// and architecture logits together), each hyperparameter trial, and the final
// retrain. Budgets in epochs and wall-clock seconds, the best-validated weights
// kept, a crash-safe checkpoint at each epoch end, progress after each step.

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "nn/backbones.h"
#include "task/dataset.h"
#include "task/task_spec.h"
#include "train/progress.h"

namespace dash::train {

struct Hyperparams {
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double dropout = 0.0;
  nlohmann::json to_json() const;
  static Hyperparams from_json(const nlohmann::json& j);
};

// The architecture logits' optimiser and DASH's gradient treatment (search only).
struct ArchOptions {
  double lr = 0.05;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  // Each layer's alpha gradient is rescaled to norm 1/grad_scale, then
  // field_penalty * field(k,d) / max_field is added: a push towards small
  // receptive fields. DASH uses grad_scale 100-5000 with an unnormalised
  // 1e-5 * field: over its 100 epochs alpha moves a little, but in the few
  // hundred steps a CPU budget allows it barely leaves its initial value
  // (measured: probabilities within 0.001 of uniform after 8 steps), and the
  // penalty can outweigh the data's signal. Unit-norm steps let alpha move
  // O(1) in ~100 steps; the penalty stays a tie-breaker.
  double grad_scale = 1.0;
  double field_penalty = 0.05;
  double temperature = 1.0;  // Gumbel-softmax tau
};

struct StageOptions {
  std::string stage = "train";  // the name progress events carry
  int64_t epochs = 10;
  double time_budget_s = 0;     // 0: no wall-clock limit
  int64_t batch_size = 64;
  double batch_fraction = 1.0;  // share of the shuffled train batches used per epoch
  Hyperparams hp;
  double clip_grad_norm = 0;    // 0: off
  bool search = false;
  ArchOptions arch;
  bool keep_best = true;        // end with the best-validated weights
  std::string checkpoint;       // "" for none
  bool resume = false;          // continue from `checkpoint` if it exists
  uint64_t seed = 0;
};

struct EpochRecord {
  int64_t epoch = 0;
  double train_loss = 0;
  double valid_metric = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0;
};

struct StageResult {
  std::vector<EpochRecord> history;
  double best_valid = std::numeric_limits<double>::quiet_NaN();
  int64_t best_epoch = 0;
  int64_t epochs_done = 0;
  double seconds = 0;
  bool budget_hit = false;
  nlohmann::json to_json() const;
};

struct Evaluation {
  double loss = 0;
  double metric = std::numeric_limits<double>::quiet_NaN();
};

// Loss and metric over a whole split, in evaluation mode, without gradients.
Evaluation evaluate(nn::Backbone& model, const task::TaskSpec& spec, const task::Split& split,
                    int64_t batch_size);

// Trains `model` on data.train, validating on data.valid after each epoch.
// Throws Cancelled when `progress` returns false.
StageResult run_stage(nn::Backbone& model, const task::TaskSpec& spec, const task::Dataset& data,
                      const StageOptions& options, const ProgressFn& progress);

// Better-than for the task's metric (NaN is never better).
bool better(const task::TaskSpec& spec, double a, double b);

}  // namespace dash::train
