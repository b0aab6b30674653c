#pragma once
// DASH end to end: search kernel sizes and dilations on a supernet, tune a few
// hyperparameters on the discrete network, retrain it, evaluate on test once.

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "nn/architecture.h"
#include "nn/backbones.h"
#include "ops/fourier_mixture.h"
#include "task/dataset.h"
#include "task/task_spec.h"
#include "train/progress.h"
#include "train/trainer.h"

namespace dash::search {

struct SearchOptions {
  uint64_t seed = 0;
  ops::CandidateSpace space;   // empty: DASH's default for the task's dims
  bool separable = true;       // depthwise proxy where in == out (DASH's default)
  int depth = 16;              // WRN depth (2D)
  int width = 1;               // backbone width during search
  int64_t batch_size = 64;
  int64_t epochs = 10;
  double batch_fraction = 1.0;
  double time_budget_s = 0;
  train::Hyperparams hp{0.1, 0.9, 5e-4, 0.0};
  train::ArchOptions arch;
  double clip_grad_norm = 1.0;
  // Hyperparameter grid on the discrete network (empty: no tuning, hp above).
  bool hpo = true;
  std::vector<train::Hyperparams> grid;  // empty: small_grid()
  int64_t hpo_epochs = 2;
  double hpo_batch_fraction = 1.0;
  double hpo_time_budget_s = 0;  // for the whole grid
  std::string checkpoint_dir;    // "" for none
  bool resume = false;
};

struct SearchOutcome {
  nn::Architecture architecture;
  train::Hyperparams hp;
  nlohmann::json report;  // stages, trials, seconds
  double search_seconds = 0;
  double hpo_seconds = 0;
};

struct RetrainOptions {
  uint64_t seed = 0;
  int depth = 16;
  int width = 1;
  int64_t batch_size = 64;
  int64_t epochs = 20;
  double batch_fraction = 1.0;
  double time_budget_s = 0;
  std::string checkpoint_dir;
  bool resume = false;
};

struct RetrainOutcome {
  nn::Backbone model{nullptr};
  nlohmann::json report;
  double valid_metric = 0;
  double test_metric = 0;
  double seconds = 0;
};

// DASH's default candidates: 2D K={3,5,7,9} x D={1,3,7,15};
// 1D K={3,7,11,15,19} x D={1,3,7,15}.
ops::CandidateSpace default_space(int dims);

// lr {0.1, 0.03, 0.01} x dropout {0} x wd {5e-4} x momentum {0.9}, lr-major.
std::vector<train::Hyperparams> small_grid();
// DASH's grid: lr {0.1,0.01,0.001} x dropout {0,0.05} x wd {5e-4,5e-6} x momentum {0.9,0.99}.
std::vector<train::Hyperparams> dash_grid();

nn::BackboneSpec backbone_for(const task::TaskSpec& spec, int depth, int width, double dropout);

// `data` must already be normalised (see prepare()).
SearchOutcome run_search(const task::TaskSpec& spec, const task::Dataset& data,
                         const SearchOptions& options, const train::ProgressFn& progress);

RetrainOutcome run_retrain(const task::TaskSpec& spec, const task::Dataset& data,
                           const nn::Architecture& architecture, const train::Hyperparams& hp,
                           const RetrainOptions& options, const train::ProgressFn& progress);

// Regression and dense targets under mse or relative_l2: per output channel,
// the train targets' mean and standard deviation become the backbone's output
// affine map (BackboneSpec::output_shift/scale). Other tasks: left empty.
void fit_output_affine(const task::TaskSpec& spec, const at::Tensor& train_y,
                       nn::BackboneSpec* backbone);

// Fits the normaliser on train and applies it to every split.
task::Dataset prepare(const task::Dataset& data, task::Normalizer* normalizer_out);

}  // namespace dash::search
