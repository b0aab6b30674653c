#pragma once
// The one training loop behind every stage of a DASH run: the search (weights
// and architecture logits together), each hyperparameter trial, and the final
// retrain. Budgets in epochs and wall-clock seconds, the best-validated weights
// kept, a crash-safe checkpoint at each epoch end, progress after each step.

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "nn/backbones.h"
#include "task/dataset.h"
#include "task/task_spec.h"
#include "train/augment.h"
#include "train/progress.h"

namespace dash::train {

inline constexpr int64_t kBatchSize = 64;  // every stage's default
// The factor on the learning rate at each step back from a non-finite loss
// (StageOptions::diverge_retries): the grid's own step between rates.
inline constexpr double kDivergeBackoff = 0.3;

struct Hyperparams {
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double dropout = 0.0;
  nlohmann::json to_json() const;
  static Hyperparams from_json(const nlohmann::json& j);
};

// The architecture logits' optimiser (search only). How their gradient is
// treated before it steps is the search's business (search/dash.cpp).
struct ArchOptions {
  double lr = 0.05;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double temperature = 1.0;  // Gumbel-softmax tau
};

struct StageOptions {
  std::string stage = "train";  // the name progress events carry
  // 0: as many as time_budget_s allows (then the learning-rate schedule
  // follows the time spent); > 0: at most this many.
  int64_t epochs = 10;
  double time_budget_s = 0;     // 0: no wall-clock limit
  // > 0: the stage ends after this many steps, and its learning-rate schedule
  // follows them, not the time spent (a time budget then only stops it
  // early): a stage planned in steps learns the same whatever the machine's
  // load, so two trials compare like with like.
  int64_t max_steps = 0;
  int64_t batch_size = kBatchSize;
  double batch_fraction = 1.0;  // share of the shuffled train batches used per epoch
  Hyperparams hp;
  // The learning rate holds at hp.lr (and arch.lr) until the last
  // decay_share of the stage's progress, then follows a cosine to 0 over that
  // share (scheduled_lr); 1: a cosine over the whole stage. Below 1, two
  // stages of different lengths from the same weights and seed take the same
  // steps until the shorter one starts its decay.
  double decay_share = 1.0;
  Augment augment;              // of each train batch (classification and multilabel only)
  double clip_grad_norm = 0;    // of the weights' gradients; 0: off
  bool search = false;          // also train the architecture logits
  ArchOptions arch;
  // Search hooks (may be empty). after_backward(step) runs before clipping and
  // the optimiser steps and returns whether the logits step this time;
  // after_step(step) runs after them and returns true to end the stage now.
  std::function<bool(int64_t)> after_backward;
  std::function<bool(int64_t)> after_step;
  bool validate = true;         // score data.valid at each epoch end
  // Samples the caller evaluates right after the stage (e.g. the test split):
  // their estimated time is kept out of time_budget_s, so that the whole
  // call fits in it.
  int64_t tail_eval_samples = 0;
  // With a time budget: warn (StageResult::warning) when the first steps
  // project fewer than this many steps in the budget (0: never).
  int64_t warn_below_steps = 0;
  // A step time measured before the stage (0: none). With it the warning
  // above is decided, and sent as a progress event of step 0, and the
  // refusal below made, before the first step instead of after it.
  double expected_step_s = 0;
  // With a time budget: throw std::invalid_argument when the first step
  // alone ends past it, or expected_step_s exceeds it (the budget cannot
  // hold one step), instead of returning an untrained network late.
  bool require_one_step = false;
  // End with the best-validated weights when they beat the last epoch's by
  // more than keep_best_stderrs standard errors over folds of valid (a
  // paired test), and by more than the best of that many epochs leads by
  // chance (chance_lead_stderrs); otherwise with the last weights. (The plain maximum over
  // epochs picked mid-schedule epochs on noise: see kept_why in trainer.cpp.)
  bool keep_best = true;
  double keep_best_stderrs = 2.0;
  // A training loss that becomes non-finite: with diverge_retries > 0 the
  // stage steps back to the weights it had at the start of that epoch
  // (momentum cleared) and trains the epoch again at kDivergeBackoff times
  // the rate, at most diverge_retries times in all; past them (and with 0)
  // it throws, saying to lower the rate. The stage's report counts them
  // (StageResult::lr_backoffs) and its warning says where.
  int64_t diverge_retries = 0;
  std::string checkpoint;       // "" for none (a data-parallel stage: rank 0's file)
  bool resume = false;          // continue from `checkpoint` if it exists
  uint64_t seed = 0;
  // Data-parallel training (null: this process alone). Every rank runs the
  // stage on its own shard of train and valid with the same options: the
  // gradients (weights and logits) are averaged every step, batch norm uses
  // the global batch's statistics (comm->sync_batch_norm()) or each rank's
  // own, its running statistics then averaged at each epoch's end before
  // validation, the ranks stop at the same step (any
  // rank's budget, stopping rule or cancellation stops all), validation is
  // scored over every rank's rows, rank 0 alone writes the checkpoint and a
  // resume reads it there. The ranks end with identical weights.
  std::shared_ptr<dist::Communicator> comm;
};

struct EpochRecord {
  int64_t epoch = 0;
  double train_loss = 0;
  double valid_metric = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0;
  double lr = std::numeric_limits<double>::quiet_NaN();  // the weights' rate at the epoch's last step
};

struct StageResult {
  std::vector<EpochRecord> history;
  double best_valid = std::numeric_limits<double>::quiet_NaN();
  int64_t best_epoch = 0;
  // With keep_best: the epoch whose weights the stage ended with, its valid
  // score and why (the best epoch, or the last).
  int64_t kept_epoch = 0;
  double kept_valid = std::numeric_limits<double>::quiet_NaN();
  std::string kept_why;
  int64_t epochs_done = 0;
  int64_t steps_done = 0;
  double seconds = 0;
  // Seconds to score one row of valid, as the last validation pass took it
  // (before any: a third of a training step's time per sample; 0: no step).
  double eval_s_per_row = 0;
  bool budget_hit = false;
  bool stopped_early = false;   // after_step asked to end the stage
  // Steps back from a non-finite loss (StageOptions::diverge_retries), and
  // the factor they left on the rate (kDivergeBackoff per step back).
  int64_t lr_backoffs = 0;
  double lr_scale = 1.0;
  std::string warning;          // e.g. the budget affords too few steps to train
  nlohmann::json to_json() const;
};

struct Evaluation {
  double loss = 0;
  double metric = std::numeric_limits<double>::quiet_NaN();
  int64_t samples = 0;  // how many were scored (all, unless max_seconds cut it short)
  at::Tensor outputs, targets;  // the scored rows' outputs and targets, in the order scored
};

// A paired comparison of two networks over the same folds of valid: the mean
// of the differences and its standard error; positive = the first is better.
struct PairedTest {
  double advantage = 0;
  double stderr_ = 0;
  bool first_wins = false;  // advantage > stderrs x stderr_ (and at least 2 folds)
};

// `sign` makes positive mean "the first is better" whatever the metric's
// direction; folds whose score is not finite in either are left out.
PairedTest paired(const std::vector<double>& first, const std::vector<double>& second, double sign,
                  double stderrs);

// The metric on each of `folds` contiguous, near-equal parts of the rows of
// outputs/targets (fewer parts when there are fewer rows).
std::vector<double> fold_metrics(task::MetricKind metric, const at::Tensor& outputs, const at::Tensor& targets,
                                 int folds);

// One epoch's valid pass as the keep_best test sees it.
struct FoldScores {
  int64_t epoch = 0;
  int64_t rows = 0;            // rows of valid scored
  std::vector<double> folds;   // fold_metrics of them
};

struct KeptChoice {
  bool best = false;  // true: the best epoch's weights; false: the last's
  std::string why;
};

// Which weights a keep_best stage ends with (see trainer.cpp for why): the
// best epoch's when its paired lead over the last's folds exceeds `stderrs`
// standard errors; the last's otherwise; the best's when the two cannot be
// compared (no folds, or different rows scored).
KeptChoice choose_kept(task::MetricKind metric, const FoldScores& best, const FoldScores& last, double stderrs);
// The lead over the last epoch, in standard errors of choose_kept's paired
// test, that the best of `scored` epochs needs beyond chance: sqrt(2 ln
// scored), the expected maximum of that many standard normals (0 below 2
// epochs). A stage asks for the larger of it and keep_best_stderrs. With 2
// alone, the best of 700 equally good epochs beat the last in 63% of
// simulated stages (10 folds each), 28% of 30; with this, 12% of both.
double chance_lead_stderrs(int64_t scored);

// Loss and metric over a split, in evaluation mode, without gradients. With
// max_seconds > 0 the pass ends by that time: it starts with a chunk of
// max(2, batch_size / 8) rows (always scored) and starts no chunk its
// measured time per row says would end later; rows go in an order whose
// every prefix is spread evenly over the split, so a pass cut short has
// scored an evenly spread subset, not the split's head.
//
// With `comm` (a data-parallel run) every rank passes its own rows of the
// split (at least one each) and gets the same result: the metric over all
// ranks' rows; a timed pass scores a chunk on every rank at a time, sized
// by the slowest rank.
Evaluation evaluate(nn::Backbone& model, const task::TaskSpec& spec, const task::Split& split,
                    int64_t batch_size, double max_seconds = 0, dist::Communicator* comm = nullptr);

// The learning rate at `progress` (0 .. 1, clamped) of a stage whose rate
// holds at `base` and decays by a cosine to 0 over the last `decay_share`
// (in (0, 1]; 1: a cosine over the whole stage).
double scheduled_lr(double base, double progress, double decay_share);

// Steps in one epoch of n training samples at batch_size, of which a share
// batch_fraction is used (at least one batch).
int64_t steps_per_epoch(int64_t n, int64_t batch_size, double batch_fraction);

// Trains `model` on data.train, validating on data.valid after each epoch.
// Throws Cancelled when `progress` returns false.
StageResult run_stage(nn::Backbone& model, const task::TaskSpec& spec, const task::Dataset& data,
                      const StageOptions& options, const ProgressFn& progress);

// Better-than for the task's metric (NaN is never better).
bool better(const task::TaskSpec& spec, double a, double b);

}  // namespace dash::train
