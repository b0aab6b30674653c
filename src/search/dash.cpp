#include "search/dash.h"

#include <torch/torch.h>

#include <chrono>
#include <stdexcept>

namespace dash::search {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string checkpoint_path(const std::string& dir, const std::string& name) {
  return dir.empty() ? std::string() : dir + "/" + name + ".ckpt";
}

nlohmann::json number_or_null(double v) {
  return std::isnan(v) ? nlohmann::json() : nlohmann::json(v);
}

}  // namespace

ops::CandidateSpace default_space(int dims) {
  if (dims == 1) return {{3, 7, 11, 15, 19}, {1, 3, 7, 15}};
  return {{3, 5, 7, 9}, {1, 3, 7, 15}};
}

std::vector<train::Hyperparams> small_grid() {
  std::vector<train::Hyperparams> grid;
  for (double lr : {0.1, 0.03, 0.01}) grid.push_back({lr, 0.9, 5e-4, 0.0});
  return grid;
}

std::vector<train::Hyperparams> dash_grid() {
  std::vector<train::Hyperparams> grid;
  for (double lr : {0.1, 0.01, 0.001})
    for (double dropout : {0.0, 0.05})
      for (double wd : {5e-4, 5e-6})
        for (double momentum : {0.9, 0.99}) grid.push_back({lr, momentum, wd, dropout});
  return grid;
}

nn::BackboneSpec backbone_for(const task::TaskSpec& spec, int depth, int width, double dropout) {
  nn::BackboneSpec b;
  b.kind = spec.dims() == 2 ? nn::BackboneKind::kWideResNet : nn::BackboneKind::kResNet1D;
  b.depth = depth;
  b.width = width;
  b.in_channels = spec.in_channels();
  b.spatial = spec.spatial();
  b.num_outputs = spec.num_outputs;
  b.dense = spec.kind == task::TaskKind::kDense;
  b.dropout = dropout;
  return b;
}

void fit_output_affine(const task::TaskSpec& spec, const at::Tensor& train_y,
                       nn::BackboneSpec* backbone) {
  backbone->output_scale.clear();
  backbone->output_shift.clear();
  const bool float_targets = spec.kind == task::TaskKind::kRegression ||
                             spec.kind == task::TaskKind::kDense;
  const bool scalable = spec.loss == task::LossKind::kMSE || spec.loss == task::LossKind::kRelativeL2;
  if (!float_targets || !scalable || !train_y.defined() || train_y.size(0) == 0) return;
  // [n, outputs, positions...] -> [outputs, n * positions]
  const at::Tensor y = train_y.to(at::kDouble).transpose(0, 1).reshape({spec.num_outputs, -1});
  const at::Tensor mean = y.mean(1);
  const at::Tensor std = y.std(1, /*unbiased=*/false).clamp_min(1e-8);
  for (int64_t c = 0; c < spec.num_outputs; ++c) {
    backbone->output_shift.push_back(mean[c].item<double>());
    backbone->output_scale.push_back(std[c].item<double>());
  }
}

task::Dataset prepare(const task::Dataset& data, task::Normalizer* normalizer_out) {
  task::Normalizer norm = task::Normalizer::fit(data.train.x);
  task::Dataset out = data;
  out.train.x = norm.apply(data.train.x);
  if (!data.valid.empty()) out.valid.x = norm.apply(data.valid.x);
  if (!data.test.empty()) out.test.x = norm.apply(data.test.x);
  if (normalizer_out) *normalizer_out = norm;
  return out;
}

SearchOutcome run_search(const task::TaskSpec& spec, const task::Dataset& data,
                         const SearchOptions& options, const train::ProgressFn& progress) {
  SearchOutcome outcome;
  ops::CandidateSpace space = options.space.size() > 0 ? options.space : default_space(spec.dims());
  space.validate();

  // 1. The supernet: every searchable layer a Fourier mixture, weights and
  //    architecture logits trained together on the same batches (DASH's
  //    single-level search).
  torch::manual_seed(options.seed);
  nn::LayerSetup mixture;
  mixture.mixture = true;
  mixture.space = space;
  mixture.separable = options.separable;
  nn::BackboneSpec super_spec = backbone_for(spec, options.depth, options.width, options.hp.dropout);
  fit_output_affine(spec, data.train.y, &super_spec);
  nn::Backbone supernet(super_spec, mixture);

  train::StageOptions so;
  so.stage = "search";
  so.epochs = options.epochs;
  so.time_budget_s = options.time_budget_s;
  so.batch_size = options.batch_size;
  so.batch_fraction = options.batch_fraction;
  so.hp = options.hp;
  so.clip_grad_norm = options.clip_grad_norm;
  so.search = true;
  so.arch = options.arch;
  so.keep_best = false;  // the architecture is where the logits ended
  so.checkpoint = checkpoint_path(options.checkpoint_dir, "search");
  so.resume = options.resume;
  so.seed = options.seed;
  const auto t0 = Clock::now();
  train::StageResult sr = train::run_stage(supernet, spec, data, so, progress);
  outcome.search_seconds = seconds_since(t0);
  outcome.architecture = supernet->architecture();
  outcome.architecture.backbone = backbone_for(spec, options.depth, 1, 0).name();

  nlohmann::json probs = nlohmann::json::array();
  for (const auto& conv : supernet->searchable()) {
    at::Tensor p = conv->probabilities().detach().to(at::kDouble).cpu().contiguous();
    probs.push_back(std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + p.numel()));
  }
  outcome.report["search"] = sr.to_json();
  outcome.report["search"]["probabilities"] = probs;
  outcome.report["search"]["kernel_sizes"] = space.kernel_sizes;
  outcome.report["search"]["dilations"] = space.dilations;

  // 2. Hyperparameters on the discrete network: every trial starts from the
  //    same initial weights and gets the same budget, so they compare like
  //    with like. DASH's early stop: the grid is lr-major, and when the
  //    learning rate changes without the last group improving on the best so
  //    far, the remaining (smaller) rates are skipped.
  outcome.hp = options.hp;
  if (options.hpo) {
    const auto grid = options.grid.empty() ? small_grid() : options.grid;
    const auto t1 = Clock::now();
    const double per_trial =
        options.hpo_time_budget_s > 0 ? options.hpo_time_budget_s / static_cast<double>(grid.size()) : 0;
    nlohmann::json trials = nlohmann::json::array();
    double best = std::nan("");
    double best_at_lr_change = std::nan("");
    for (size_t i = 0; i < grid.size(); ++i) {
      const auto& hp = grid[i];
      if (i > 0 && hp.lr != grid[i - 1].lr) {
        if (!std::isnan(best_at_lr_change) && best == best_at_lr_change) break;
        best_at_lr_change = best;
      }
      torch::manual_seed(options.seed + 1);
      nn::LayerSetup fixed;
      fixed.architecture = outcome.architecture;
      nn::BackboneSpec trial_spec = super_spec;  // same backbone and output map
      trial_spec.dropout = hp.dropout;
      nn::Backbone net(trial_spec, fixed);
      train::StageOptions to;
      to.stage = "hpo";
      to.epochs = options.hpo_epochs;
      to.time_budget_s = per_trial;
      to.batch_size = options.batch_size;
      to.batch_fraction = options.hpo_batch_fraction;
      to.hp = hp;
      to.seed = options.seed + 1;
      to.keep_best = false;
      train::StageResult tr = train::run_stage(net, spec, data, to, progress);
      trials.push_back({{"hp", hp.to_json()},
                        {"valid_metric", number_or_null(tr.best_valid)},
                        {"seconds", tr.seconds}});
      if (train::better(spec, tr.best_valid, best)) {
        best = tr.best_valid;
        outcome.hp = hp;
      }
    }
    outcome.hpo_seconds = seconds_since(t1);
    outcome.report["hpo"] = {{"trials", trials}, {"chosen", outcome.hp.to_json()},
                             {"seconds", outcome.hpo_seconds}};
  }
  outcome.report["architecture"] = outcome.architecture.to_json();
  outcome.report["hyperparameters"] = outcome.hp.to_json();
  return outcome;
}

RetrainOutcome run_retrain(const task::TaskSpec& spec, const task::Dataset& data,
                           const nn::Architecture& architecture, const train::Hyperparams& hp,
                           const RetrainOptions& options, const train::ProgressFn& progress) {
  RetrainOutcome outcome;
  nn::BackboneSpec bspec = backbone_for(spec, options.depth, options.width, hp.dropout);
  fit_output_affine(spec, data.train.y, &bspec);
  if (architecture.layers.size() != bspec.searchable_layers()) {
    throw std::invalid_argument("the architecture has " + std::to_string(architecture.layers.size()) +
                                " layers but " + bspec.name() + " has " +
                                std::to_string(bspec.searchable_layers()) +
                                " searchable layers: was it searched for another task or depth?");
  }
  torch::manual_seed(options.seed + 2);
  nn::LayerSetup fixed;
  fixed.architecture = architecture;
  outcome.model = nn::Backbone(bspec, fixed);

  train::StageOptions ro;
  ro.stage = "retrain";
  ro.epochs = options.epochs;
  ro.time_budget_s = options.time_budget_s;
  ro.batch_size = options.batch_size;
  ro.batch_fraction = options.batch_fraction;
  ro.hp = hp;
  ro.keep_best = true;
  ro.checkpoint = checkpoint_path(options.checkpoint_dir, "retrain");
  ro.resume = options.resume;
  ro.seed = options.seed + 2;
  const auto t0 = Clock::now();
  train::StageResult rr = train::run_stage(outcome.model, spec, data, ro, progress);
  outcome.seconds = seconds_since(t0);
  outcome.valid_metric = rr.best_valid;
  // Test is touched once, with the best-validated weights.
  outcome.test_metric =
      data.test.empty() ? std::nan("") : train::evaluate(outcome.model, spec, data.test, options.batch_size).metric;
  outcome.report = {{"retrain", rr.to_json()},
                    {"backbone", bspec.name()},
                    {"valid_metric", number_or_null(outcome.valid_metric)},
                    {"test_metric", number_or_null(outcome.test_metric)},
                    {"seconds", outcome.seconds}};
  return outcome;
}

}  // namespace dash::search
