#pragma once
// DASH end to end: search kernel sizes and dilations on a supernet, tune a few
// hyperparameters on the discrete network, retrain it, evaluate on test once.

#include <nlohmann/json.hpp>

#include <limits>
#include <string>
#include <vector>

#include "nn/architecture.h"
#include "nn/backbones.h"
#include "search/cost.h"
#include "ops/fourier_mixture.h"
#include "task/dataset.h"
#include "task/task_spec.h"
#include "train/progress.h"
#include "train/trainer.h"

namespace dash::search {

// Epochs of a call given neither `epochs` nor a time budget.
inline constexpr int64_t kSearchEpochsUnbudgeted = 4;
inline constexpr int64_t kRetrainEpochsUnbudgeted = 10;
// Dense tasks' learning rates when the user sets none (the reference's); other
// tasks take train::Hyperparams' and train::ArchOptions' defaults.
inline constexpr double kDenseLr = 0.01;
inline constexpr double kDenseArchLr = 0.005;

// What search and retrain share. Every default here, in SearchOptions and in
// RetrainOptions is the one the C ABI, its description and README show
// (api/options.cpp reads them from default-constructed structs).
struct CommonOptions {
  uint64_t seed = 0;
  int depth = nn::BackboneSpec{}.depth;  // WRN depth (2D)
  int width = nn::BackboneSpec{}.width;  // backbone width
  int64_t stem_stride = 0;     // ResNet1D's downsampling stem (nn::stem_stride_for; 0: automatic)
  int64_t batch_size = train::kBatchSize;
  // 0: as the budget allows (search: the stopping rule usually ends it sooner;
  // retrain: the learning-rate schedule follows the time); without a budget
  // kSearchEpochsUnbudgeted or kRetrainEpochsUnbudgeted.
  int64_t epochs = 0;
  double batch_fraction = 1.0;
  train::Augment augment;      // of train batches, in every stage
  // The whole call: search, cost measurement, guard and grid; or retrain and
  // its final test evaluation.
  double time_budget_s = 0;
  std::string checkpoint_dir;  // "" for none
  bool resume = false;
  // A data-parallel run's process group (null: this process alone), set by
  // the pipeline (api::search, api::retrain) from its options; `data` is
  // then this rank's shard. Every rank computes the same choices: what a
  // clock decides (step times, costs, trial lengths, budgets' stops) is
  // rank 0's, and every score is over all ranks' rows.
  std::shared_ptr<dist::Communicator> comm;
};

struct SearchOptions : CommonOptions {
  // false: no architecture search; the plain backbone gets the same
  // hyperparameter grid as a search would (so comparing the two isolates
  // what the search adds).
  bool arch_search = true;
  ops::CandidateSpace space;   // empty: DASH's default for the task's dims
  bool separable = true;       // depthwise proxy where in == out (DASH's default)
  // The search itself gets (1 - hpo_share) of time_budget_s, the guard and
  // grid the rest.
  double hpo_share = 0.57;
  // NaN: the task's default (train::Hyperparams' lr; kDenseLr for dense tasks).
  double lr = std::numeric_limits<double>::quiet_NaN();
  // lr NaN: the task's default (train::ArchOptions' lr; kDenseArchLr for dense tasks).
  train::ArchOptions arch = [] {
    train::ArchOptions a;
    a.lr = std::numeric_limits<double>::quiet_NaN();
    return a;
  }();
  double clip_grad_norm = 1.0;  // of the weights' gradients only

  // The architecture objective (see arch_gradient in dash.cpp for the
  // derivation). Both penalties are in units of a typical entry of the
  // normalised data gradient.
  double field_penalty = 0.5;  // x field(k, d) / largest field
  double cost_weight = 4.0;    // x the candidate's extra step time / the backbone's step
  // The chosen network may cost at most this many times the backbone's step
  // (0: no limit); layers are moved to cheaper candidates until it does.
  double max_cost_ratio = 1.25;
  CostModelKind cost_model = CostModelKind::kMeasured;

  // The stopping rule: weight-only steps first, then a layer is frozen at its
  // argmax once that has not changed for `patience` steps and leads the
  // runner-up by `margin` in probability (or, a straggler, for
  // kStragglerHolds x patience steps: layer_settles); candidates below
  // `prune_below` leave the mixture. The search ends when every layer is frozen.
  int64_t warmup_steps = 10;
  int64_t patience = 10;
  double margin = 0.05;
  double prune_below = 0.02;

  // The guard: the searched network is trained as long as the plain backbone
  // in the grid's first trial; it is kept only if it validates better, by
  // more than guard_stderrs standard errors of the paired differences over
  // the folds of valid, and by at least guard_min_gain of the backbone's
  // distance to a perfect score (guard_verdict).
  bool guard = true;
  double guard_stderrs = 1.0;
  double guard_min_gain = 0.18;
  // A keep whose gain is below guard_confirm_below x guard_min_gain is
  // looked at again: both networks train on, from where their trials ended,
  // as long again, and the searched one is kept only if it passes the same
  // test again (0: never look again).
  double guard_confirm_below = 2.0;
  // Hyperparameter grid on the discrete network: "small" (small_grid()) or
  // "dash" (dash_grid()); `grid`, when not empty, replaces it.
  bool hpo = true;
  std::string hpo_grid = "small";
  std::vector<train::Hyperparams> grid;
  // Epochs per trial; 0: trials are (hpo_share x time_budget_s) / (grid + 1)
  // seconds long (one epoch without a budget), but at least min_trial_steps
  // backbone steps where the share holds two trials of that: longer trials
  // and fewer grid points (Darcy: trials of 6-13 steps could not tell a
  // network that retrains to half the error from the backbone).
  int64_t hpo_epochs = 0;
  int64_t min_trial_steps = 30;
  double hpo_batch_fraction = 1.0;
  // Data-parallel calls (world_size > 1): the grid's points after the guard
  // may run world_size at a time, each whole on one rank (every rank's train
  // and valid rows, the global batch, no messages while it trains), every
  // rank replaying the one-process grid's decisions over their results.
  // "auto": a round of points that one process would all run (the early
  // stop cannot fall inside it: grid_runs_whole); "always": any round of
  // world_size points (those the early stop would not have run are wasted);
  // "off" (the default): every point data-parallel, one after another (and
  // no rank holds more than its own rows: a spread gathers every rank's
  // train rows). Off by default because spreading did not pay on the
  // machines measured: README "More than one machine" has the figures.
  std::string grid_spread = "off";
};

// The guard's decision from its paired test: `advantage` and `stderr_` are
// the searched network's mean lead over the folds of valid and its standard
// error (positive = better, whatever the metric's direction), backbone_valid
// the backbone trial's score. gain is the share of the backbone's distance to
// a perfect score (1 - score for accuracy, AUROC, F1, mAP; the score itself
// for relative L2 and MAE) that the lead removes.
struct GuardVerdict {
  bool keep = false;
  double gain = 0;
  std::string why;
};
GuardVerdict guard_verdict(double advantage, double stderr_, double backbone_valid, task::MetricKind metric,
                           double stderrs, double min_gain);

struct SearchOutcome {
  nn::Architecture architecture;
  train::Hyperparams hp;
  nlohmann::json report;  // stages, trials, seconds
  double search_seconds = 0;
  double hpo_seconds = 0;
  // The trial that chose `architecture` and `hp` (the guard's winner or the
  // grid's best), trained and in the retrain's form; null where no trial ran.
  // A retrain may start from its weights instead of discarding them.
  nn::Backbone trained{nullptr};
};

// How often a retrain whose loss becomes non-finite steps back to its
// epoch's start at a lower rate (train::StageOptions::diverge_retries)
// before it fails: the rate it then trains at is 0.3^3 = 0.027 of lr.
inline constexpr int64_t kRetrainDivergeRetries = 3;

struct RetrainOptions : CommonOptions {
  // Start from `warm`'s weights where it is set and matches the network
  // (same backbone, width, depth and architecture): the search's time on
  // that trial is not thrown away. A resumed checkpoint still wins.
  bool warm_start = true;
  // The retrain's learning rate holds until the last decay_share of its
  // budget, then decays (train::StageOptions::decay_share); 1: a cosine
  // over the whole retrain. 0.3 from the evidence (README, "Where it
  // stands"): as well as or better than the cosine for the plain backbone
  // on all four tasks side by side, where the cosine's early decay cost the
  // waveform's backbone 2 points; the step back from a non-finite loss
  // (kRetrainDivergeRetries) catches a rate that held too long.
  double decay_share = 0.3;
  // Not options: a training step's time measured before the call (0:
  // none; api::retrain takes the search's timed step of the plain backbone),
  // so that a budget too short to learn in is said before training starts;
  // and the search's trained trial (SearchOutcome::trained), or null.
  double expected_step_s = 0;
  nn::Backbone warm{nullptr};
};

struct RetrainOutcome {
  nn::Backbone model{nullptr};
  nlohmann::json report;
  double valid_metric = 0;
  double test_metric = 0;
  double seconds = 0;
};

// The supernet's batch under a time budget. A step's time is taken as
// proportional to its batch (step_s at `batch`): the largest of batch,
// batch/2, batch/4, ... (none below kMinSearchBatch, unless batch itself is)
// whose steps fit `steps` of them in budget_s; 0 where none does.
inline constexpr int64_t kMinSearchBatch = 8;
int64_t search_batch_for(double budget_s, double step_s, int64_t batch, int64_t steps);

// The stopping rule for one layer not yet frozen, after a step: its argmax
// has held for `held` steps and leads the runner-up by `lead`; `frozen` of the
// network's `layers` are frozen already. True: freeze it at its argmax.
// Settled: held >= patience and lead >= margin. A straggler, once at least
// three quarters of the layers are frozen: held >= kStragglerHolds x patience,
// whatever its lead (dash.cpp says why).
inline constexpr int64_t kStragglerHolds = 3;
bool layer_settles(int64_t held, double lead, size_t frozen, size_t layers, int64_t patience, double margin);

// The largest m x 10^e not above n, m in {1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8}
// (at least 1). Timed trials' lengths in steps are rounded down to this
// series so that the same trial has the same length in two runs whose step
// timings differ by a few percent (side by side, on a shared machine).
int64_t round_down_coarse(double n);

// DASH's default candidates: 2D K={3,5,7,9} x D={1,3,7,15};
// 1D K={3,7,11,15,19} x D={1,3,7,15}.
ops::CandidateSpace default_space(int dims);

// Whether one process, having reached point `i` of `grid`, runs all of
// points [i, i + n): the grid's early stop can fall only where the learning
// rate changes and an earlier change has been seen (the first records the
// best so far, the next ends the grid if that is still the best).
// `lr_changed`: a change at or before point i has been seen.
bool grid_runs_whole(const std::vector<train::Hyperparams>& grid, size_t i, size_t n, bool lr_changed);

// lr {0.1, 0.03, 0.01} x dropout {0} x wd {5e-4} x momentum {0.9}, lr-major.
std::vector<train::Hyperparams> small_grid();
// DASH's grid: lr {0.1,0.01,0.001} x dropout {0,0.05} x wd {5e-4,5e-6} x momentum {0.9,0.99}.
std::vector<train::Hyperparams> dash_grid();
// small_grid() or dash_grid() by name ("small", "dash"); others are std::invalid_argument.
std::vector<train::Hyperparams> grid_named(const std::string& name);

// `data` must already be normalised (see prepare()).
SearchOutcome run_search(const task::TaskSpec& spec, const task::Dataset& data,
                         const SearchOptions& options, const train::ProgressFn& progress);

RetrainOutcome run_retrain(const task::TaskSpec& spec, const task::Dataset& data,
                           const nn::Architecture& architecture, const train::Hyperparams& hp,
                           const RetrainOptions& options, const train::ProgressFn& progress);

// Regression and dense targets under mse or relative_l2: per output channel,
// the train targets' mean and standard deviation become the backbone's output
// affine map (BackboneSpec::output_shift/scale). Other tasks: left empty.
// With `comm`: over every rank's train targets.
void fit_output_affine(const task::TaskSpec& spec, const at::Tensor& train_y,
                       nn::BackboneSpec* backbone, dist::Communicator* comm = nullptr);

// Fits the normaliser on train (with `comm`: every rank's train together) and
// applies it to every split.
task::Dataset prepare(const task::Dataset& data, task::Normalizer* normalizer_out,
                      dist::Communicator* comm = nullptr);

}  // namespace dash::search
