#include "train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "task/loss_metric.h"
#include "util/atomic_file.h"

namespace dash::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void set_lr(torch::optim::SGD& opt, double lr) {
  for (auto& group : opt.param_groups()) {
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
  }
}

// Cosine decay over the stage's progress, where progress is whichever budget
// is further spent (steps or seconds): a run cut short by its time budget
// still ends at a small learning rate instead of mid-schedule.
double cosine_lr(double base, double progress) {
  progress = std::min(1.0, std::max(0.0, progress));
  return base * 0.5 * (1.0 + std::cos(M_PI * progress));
}

std::vector<at::Tensor> snapshot(nn::Backbone& model) {
  std::vector<at::Tensor> state;
  for (const auto& p : model->parameters()) state.push_back(p.detach().clone());
  for (const auto& b : model->buffers()) state.push_back(b.detach().clone());
  return state;
}

void restore(nn::Backbone& model, const std::vector<at::Tensor>& state) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& p : model->parameters()) p.copy_(state.at(i++));
  for (auto& b : model->buffers()) b.copy_(state.at(i++));
}

// One row per epoch: epoch, train loss, valid metric, seconds, lr.
at::Tensor history_tensor(const std::vector<EpochRecord>& h) {
  at::Tensor t = torch::zeros({static_cast<int64_t>(h.size()), 5}, torch::kDouble);
  for (size_t i = 0; i < h.size(); ++i) {
    t[static_cast<int64_t>(i)][0] = static_cast<double>(h[i].epoch);
    t[static_cast<int64_t>(i)][1] = h[i].train_loss;
    t[static_cast<int64_t>(i)][2] = h[i].valid_metric;
    t[static_cast<int64_t>(i)][3] = h[i].seconds;
    t[static_cast<int64_t>(i)][4] = h[i].lr;
  }
  return t;
}

// Checkpoints written before the lr column have 4 columns: their lr is NaN.
std::vector<EpochRecord> history_from(const at::Tensor& t) {
  std::vector<EpochRecord> h;
  for (int64_t i = 0; i < t.size(0); ++i) {
    h.push_back({static_cast<int64_t>(t[i][0].item<double>()), t[i][1].item<double>(),
                 t[i][2].item<double>(), t[i][3].item<double>(),
                 t.size(1) > 4 ? t[i][4].item<double>() : std::nan("")});
  }
  return h;
}

// Everything needed to continue a stage after the process died.
struct StageState {
  int64_t epochs_done = 0;
  double elapsed = 0;
  int64_t global_step = 0;
  double best_valid = std::numeric_limits<double>::quiet_NaN();
  int64_t best_epoch = 0;
  std::vector<EpochRecord> history;
  std::vector<at::Tensor> best;
  // The best epoch's score on each fold of valid and how many rows were
  // scored (empty before an epoch was scored, or in a checkpoint older than
  // them), for the paired test that decides which weights the stage keeps.
  FoldScores best_scores;
  // after_step ended the stage (the search's stopping rule): a resume must
  // not train on past that point.
  bool stopped_early = false;
  // Steps back from a non-finite loss so far, and the rate's factor since.
  int64_t lr_backoffs = 0;
  double lr_scale = 1.0;
};

void save_checkpoint(const std::string& path, nn::Backbone& model, torch::optim::SGD& weights,
                     torch::optim::SGD* arch, at::Generator& order_gen,
                     const StageState& s) {
  // Serialised in memory, then written by write_bytes_atomically: LibTorch's
  // file writer throws from its destructor after a failed write (a full
  // disk), which terminates the process.
  std::ostringstream bytes;
  {
    torch::serialize::OutputArchive archive;
    torch::serialize::OutputArchive model_archive, opt_archive, arch_archive, best_archive;
    model->save(model_archive);
    weights.save(opt_archive);
    if (arch) arch->save(arch_archive);
    for (size_t i = 0; i < s.best.size(); ++i) best_archive.write(std::to_string(i), s.best[i]);
    archive.write("model", model_archive);
    archive.write("optimizer", opt_archive);
    archive.write("arch_optimizer", arch_archive);
    archive.write("best", best_archive);
    archive.write("best_count", torch::tensor(static_cast<int64_t>(s.best.size())));
    archive.write("epochs_done", torch::tensor(s.epochs_done));
    archive.write("global_step", torch::tensor(s.global_step));
    archive.write("elapsed", torch::tensor(s.elapsed, torch::kDouble));
    archive.write("best_valid", torch::tensor(s.best_valid, torch::kDouble));
    archive.write("best_epoch", torch::tensor(s.best_epoch));
    archive.write("history", history_tensor(s.history));
    archive.write("stopped_early", torch::tensor(static_cast<int64_t>(s.stopped_early)));
    archive.write("lr_backoffs", torch::tensor(s.lr_backoffs));
    archive.write("lr_scale", torch::tensor(s.lr_scale, torch::kDouble));
    if (!s.best_scores.folds.empty()) {
      archive.write("best_folds", torch::tensor(s.best_scores.folds, torch::kDouble));
      archive.write("best_rows", torch::tensor(s.best_scores.rows));
    }
    archive.write("rng", at::detail::getDefaultCPUGenerator().get_state());
    archive.write("order_rng", order_gen.get_state());
    archive.save_to(bytes);
  }
  util::write_bytes_atomically(path, bytes.str());
}

// `bytes`: the checkpoint file's content (a data-parallel stage reads it on
// rank 0 and hands it to every rank); `path` names it in messages.
StageState load_checkpoint(const std::string& path, const std::string& bytes, nn::Backbone& model,
                           torch::optim::SGD& weights, torch::optim::SGD* arch,
                           at::Generator& order_gen) {
  torch::serialize::InputArchive archive;
  try {
    std::istringstream in(bytes);
    archive.load_from(in);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot resume from checkpoint " + path +
                             " (corrupted or from another version?): " + e.what());
  }
  torch::serialize::InputArchive model_archive, opt_archive, arch_archive, best_archive;
  archive.read("model", model_archive);
  archive.read("optimizer", opt_archive);
  archive.read("arch_optimizer", arch_archive);
  archive.read("best", best_archive);
  try {
    model->load(model_archive);
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint " + path +
                             " does not match this model (different task, backbone or options): " +
                             e.what());
  }
  weights.load(opt_archive);
  if (arch) arch->load(arch_archive);
  auto get = [&](const char* key) {
    at::Tensor v;  // a fresh tensor each time: read() rebinds its storage
    archive.read(key, v);
    return v;
  };
  StageState s;
  const int64_t best_count = get("best_count").item<int64_t>();
  for (int64_t i = 0; i < best_count; ++i) {
    at::Tensor b;
    best_archive.read(std::to_string(i), b);
    s.best.push_back(b);
  }
  s.epochs_done = get("epochs_done").item<int64_t>();
  s.global_step = get("global_step").item<int64_t>();
  s.elapsed = get("elapsed").item<double>();
  s.best_valid = get("best_valid").item<double>();
  s.best_epoch = get("best_epoch").item<int64_t>();
  s.best_scores.epoch = s.best_epoch;
  s.history = history_from(get("history"));
  at::Tensor stopped;
  if (archive.try_read("stopped_early", stopped)) s.stopped_early = stopped.item<int64_t>() != 0;
  at::Tensor backoffs, scale;  // absent in checkpoints written before steps back
  if (archive.try_read("lr_backoffs", backoffs) && archive.try_read("lr_scale", scale)) {
    s.lr_backoffs = backoffs.item<int64_t>();
    s.lr_scale = scale.item<double>();
  }
  at::Tensor folds, rows;  // absent in checkpoints written before them
  if (archive.try_read("best_folds", folds) && archive.try_read("best_rows", rows)) {
    const at::Tensor f = folds.contiguous();
    s.best_scores.folds.assign(f.data_ptr<double>(), f.data_ptr<double>() + f.numel());
    s.best_scores.rows = rows.item<int64_t>();
  }
  at::Generator global = at::detail::getDefaultCPUGenerator();  // a handle to the same state
  global.set_state(get("rng"));
  order_gen.set_state(get("order_rng"));
  return s;
}

constexpr int kKeepFolds = 10;

}  // namespace

nlohmann::json Hyperparams::to_json() const {
  return {{"lr", lr}, {"momentum", momentum}, {"weight_decay", weight_decay}, {"dropout", dropout}};
}

Hyperparams Hyperparams::from_json(const nlohmann::json& j) {
  Hyperparams h;
  h.lr = j.at("lr").get<double>();
  h.momentum = j.at("momentum").get<double>();
  h.weight_decay = j.at("weight_decay").get<double>();
  h.dropout = j.at("dropout").get<double>();
  return h;
}

nlohmann::json StageResult::to_json() const {
  nlohmann::json h = nlohmann::json::array();
  for (const auto& e : history) {
    h.push_back({{"epoch", e.epoch},
                 {"train_loss", e.train_loss},
                 {"valid_metric", std::isnan(e.valid_metric) ? nlohmann::json() : nlohmann::json(e.valid_metric)},
                 {"seconds", e.seconds},
                 {"lr", std::isnan(e.lr) ? nlohmann::json() : nlohmann::json(e.lr)}});
  }
  return {{"epochs_done", epochs_done},
          {"steps_done", steps_done},
          {"stopped_early", stopped_early},
          {"best_valid", std::isnan(best_valid) ? nlohmann::json() : nlohmann::json(best_valid)},
          {"best_epoch", best_epoch},
          {"kept_epoch", kept_epoch},
          {"kept_valid", std::isnan(kept_valid) ? nlohmann::json() : nlohmann::json(kept_valid)},
          {"kept_why", kept_why.empty() ? nlohmann::json() : nlohmann::json(kept_why)},
          {"seconds", seconds},
          {"budget_hit", budget_hit},
          {"lr_backoffs", lr_backoffs},
          {"lr_scale", lr_scale},
          {"warning", warning.empty() ? nlohmann::json() : nlohmann::json(warning)},
          {"history", h}};
}

bool better(const task::TaskSpec& spec, double a, double b) {
  if (std::isnan(a)) return false;
  if (std::isnan(b)) return true;
  return task::higher_is_better(spec.metric) ? a > b : a < b;
}

namespace {

// 0..n-1 ordered by the bit reversal of each index (indices >= n skipped).
at::Tensor spread_order(int64_t n) {
  int bits = 0;
  while ((int64_t{1} << bits) < n) ++bits;
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < (int64_t{1} << bits); ++i) {
    int64_t r = 0;
    for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
    if (r < n) order.push_back(r);
  }
  return torch::tensor(order, torch::kLong);
}

// The refusal of a stage whose budget is shorter than one training step of
// step_s seconds; `how` says where the figure comes from.
std::string budget_cannot_hold_a_step(const std::string& stage, double step_s, double budget_s,
                                      const std::string& how) {
  std::ostringstream msg;
  msg.precision(3);
  msg << stage << ": one training step " << how << " " << step_s << " s, more than the whole " << budget_s
      << " s this stage has of the call's time budget, so the budget cannot train anything; raise "
         "time_budget_s about "
      << std::ceil(10 * step_s / budget_s) << "x to afford 10 steps, or lower batch_size, max_train or the input size";
  return msg.str();
}

}  // namespace

Evaluation evaluate(nn::Backbone& model, const task::TaskSpec& spec, const task::Split& split,
                    int64_t batch_size, double max_seconds, dist::Communicator* comm) {
  Evaluation ev;
  if (comm == nullptr && split.empty()) return ev;
  if (comm != nullptr) {
    at::Tensor total = torch::tensor({split.size()}, torch::kLong);
    comm->sum(total);
    if (total.item<int64_t>() == 0) return ev;
    if (split.empty()) {
      throw std::invalid_argument("a data-parallel evaluation needs rows of the split on every rank; rank " +
                                  std::to_string(comm->rank()) + " has none");
    }
  }
  const auto t0 = Clock::now();
  // A model already in eval mode is only read, so several threads may
  // evaluate (or infer with) it at once; one in training mode is switched and
  // switched back.
  const bool was_training = model->is_training();
  if (was_training) model->eval();
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> outputs, targets;
  double loss_sum = 0;
  const int64_t n = split.size();
  auto score = [&](const at::Tensor& x, const at::Tensor& y) {
    at::Tensor out = model->forward(x);
    loss_sum += task::compute_loss(spec, out, y).item<double>() * static_cast<double>(x.size(0));
    outputs.push_back(out);
    targets.push_back(y);
    ev.samples += x.size(0);
  };
  if (!(max_seconds > 0)) {
    for (int64_t start = 0; start < n; start += batch_size) {
      const int64_t len = std::min(batch_size, n - start);
      score(split.x.narrow(0, start, len), split.y.narrow(0, start, len));
    }
  } else {
    // Rows in bit-reversed order (0, n/2, n/4, 3n/4, ...): every prefix of it
    // is spread evenly over the split, never its head (which may be sorted by
    // class). The first chunk is small, so that a pass with little time
    // scores a few rows rather than overrunning by a whole batch; each next
    // chunk is sized from the time per row measured so far to end by the
    // deadline, and none starts that would not. Data-parallel: the slowest
    // rank's size, and every rank goes on while any has a chunk to score.
    const at::Tensor order = spread_order(n).to(split.x.device());
    int64_t start = 0;
    int64_t len = std::min(n, std::max<int64_t>(2, batch_size / 8));
    while (comm != nullptr ? comm->any(len > 0) : len > 0) {
      if (len > 0) {
        const at::Tensor idx = order.narrow(0, start, len);
        score(split.x.index_select(0, idx), split.y.index_select(0, idx));
        start += len;
      }
      const double elapsed = seconds_since(t0);
      const double rows = std::max(0.0, std::floor((max_seconds - elapsed) /
                                                   (elapsed / static_cast<double>(std::max<int64_t>(1, ev.samples)))));
      int64_t fit = static_cast<int64_t>(std::min(rows, 1e15));
      if (comm != nullptr) fit = comm->min_all(fit);
      len = std::min({batch_size, n - start, fit});
    }
  }
  if (was_training) model->train(true);
  at::Tensor out = torch::cat(outputs), target = torch::cat(targets);
  if (comm != nullptr) {
    at::Tensor sums = torch::tensor({loss_sum, static_cast<double>(ev.samples)}, torch::kDouble);
    comm->sum(sums);
    loss_sum = sums[0].item<double>();
    ev.samples = static_cast<int64_t>(std::llround(sums[1].item<double>()));
    out = comm->gather_rows(out.contiguous());
    target = comm->gather_rows(target.contiguous());
  }
  ev.loss = loss_sum / static_cast<double>(ev.samples);
  ev.metric = task::compute_metric(spec.metric, out, target);
  ev.outputs = out;
  ev.targets = target;
  return ev;
}

PairedTest paired(const std::vector<double>& first, const std::vector<double>& second, double sign,
                  double stderrs) {
  PairedTest g;
  std::vector<double> diff;
  for (size_t i = 0; i < std::min(first.size(), second.size()); ++i) {
    if (std::isfinite(first[i]) && std::isfinite(second[i])) diff.push_back(sign * (first[i] - second[i]));
  }
  if (diff.size() < 2) return g;
  double mean = 0, var = 0;
  for (double d : diff) mean += d;
  mean /= static_cast<double>(diff.size());
  for (double d : diff) var += (d - mean) * (d - mean);
  var /= static_cast<double>(diff.size() - 1);
  g.advantage = mean;
  g.stderr_ = std::sqrt(var / static_cast<double>(diff.size()));
  g.first_wins = mean > stderrs * g.stderr_;
  return g;
}

std::vector<double> fold_metrics(task::MetricKind metric, const at::Tensor& outputs, const at::Tensor& targets,
                                 int folds) {
  const int64_t n = outputs.size(0);
  const int64_t k = std::min<int64_t>(folds, n);
  std::vector<double> scores;
  for (int64_t f = 0; f < k; ++f) {
    const int64_t start = n * f / k, len = n * (f + 1) / k - start;
    scores.push_back(task::compute_metric(metric, outputs.narrow(0, start, len), targets.narrow(0, start, len)));
  }
  return scores;
}

// Why not the plain maximum of valid over epochs: on a valid split of a few
// hundred to a thousand rows its noise (~1 point of accuracy) exceeds the
// differences between late epochs, and over 20-60 epochs the maximum went to
// epochs the annealed schedule had not finished (evidence runs,
// bench/results: Fashion-MNIST epochs 23-24 of 32-34, spoken digits 24 of 61
// and 128 of 285); two runs of the same network then differed by up to a
// point on test. The last weights are where the schedule ends; the best
// epoch replaces them only when its paired lead over folds of valid exceeds
// `stderrs` standard errors, i.e. when the last epochs really got worse
// (overfitting, a late blow-up).
KeptChoice choose_kept(task::MetricKind metric, const FoldScores& best, const FoldScores& last, double stderrs) {
  if (best.epoch == last.epoch) return {false, "the last epoch validated best"};
  if (best.folds.empty() || last.folds.empty()) {
    return {true, "the best-validated epoch (no scores of both on the folds of valid to compare)"};
  }
  if (best.rows != last.rows) {
    return {true, "the best-validated epoch (its pass and the last scored different rows of valid: " +
                      std::to_string(best.rows) + " and " + std::to_string(last.rows) + ")"};
  }
  const PairedTest t = paired(best.folds, last.folds, task::higher_is_better(metric) ? 1.0 : -1.0, stderrs);
  char lead[96], bar[32];
  std::snprintf(lead, sizeof lead, "%.4g +- %.2g", t.advantage, t.stderr_);
  std::snprintf(bar, sizeof bar, "%.3g", stderrs);
  const std::string e = "epoch " + std::to_string(best.epoch);
  const std::string over = " over " + std::to_string(last.folds.size()) + " folds of valid";
  if (t.first_wins) {
    return {true, e + " validated better than the last by " + lead + over + ", more than " + bar +
                      " standard errors: its weights"};
  }
  return {false, e + " validated best, but its lead over the last epoch (" + lead + over + ") is within " + bar +
                     " standard errors: the last weights, where the schedule ends"};
}

// The best of many epochs leads the last by chance alone: on spoken digits'
// spectrograms (~700 retrain epochs) 12 of 24 retrains kept a mid-run epoch
// whose lead was 2.2-2.9 standard errors (no better on test on average:
// 0.9487 against 0.9468 for those that kept the last), and one such keep
// put a DASH run 1.67 points below its pair, which had retrained the same
// network step for step until DASH's decay.
double chance_lead_stderrs(int64_t scored) {
  return scored >= 2 ? std::sqrt(2.0 * std::log(static_cast<double>(scored))) : 0.0;
}

double scheduled_lr(double base, double progress, double decay_share) {
  const double hold = 1.0 - decay_share;  // the share of the stage at base
  progress = std::min(1.0, std::max(0.0, progress));
  return progress <= hold ? base : cosine_lr(base, (progress - hold) / decay_share);
}

int64_t steps_per_epoch(int64_t n, int64_t batch_size, double batch_fraction) {
  const int64_t batches = (n + batch_size - 1) / batch_size;
  return batch_fraction >= 1
             ? batches
             : std::min(batches, static_cast<int64_t>(batch_fraction * static_cast<double>(batches)) + 1);
}

StageResult run_stage(nn::Backbone& model, const task::TaskSpec& spec, const task::Dataset& data,
                      const StageOptions& opt, const ProgressFn& progress) {
  if (data.train.empty()) throw std::invalid_argument(opt.stage + ": the train split is empty");
  if (opt.epochs < 0) throw std::invalid_argument(opt.stage + ": epochs must be >= 0");
  if (opt.max_steps < 0) throw std::invalid_argument(opt.stage + ": max_steps must be >= 0");
  if (opt.epochs == 0 && !(opt.time_budget_s > 0) && opt.max_steps == 0) {
    throw std::invalid_argument(opt.stage + ": epochs 0 (as many as the budget allows) needs a time budget");
  }
  if (opt.batch_size < 1) throw std::invalid_argument(opt.stage + ": batch_size must be >= 1");
  if (!(opt.batch_fraction > 0 && opt.batch_fraction <= 1)) {
    throw std::invalid_argument(opt.stage + ": batch_fraction must be in (0, 1]");
  }
  if (!(opt.decay_share > 0 && opt.decay_share <= 1)) {
    throw std::invalid_argument(opt.stage + ": decay_share must be in (0, 1], got " + std::to_string(opt.decay_share));
  }
  if (opt.diverge_retries < 0) throw std::invalid_argument(opt.stage + ": diverge_retries must be >= 0");
  check_augment_applies(opt.augment, spec.kind, opt.stage);

  // The model trains where its data is (the CPU, or a GPU the caller moved
  // the data to); the shuffling order is drawn on the CPU either way.
  const at::Device device = data.train.x.device();
  model->to(device);
  torch::manual_seed(opt.seed);
  at::Generator order_gen = at::detail::createCPUGenerator(opt.seed ^ 0x5eedULL);

  const std::vector<at::Tensor> weight_params = model->weight_parameters();
  torch::optim::SGD weights(weight_params,
                            torch::optim::SGDOptions(opt.hp.lr)
                                .momentum(opt.hp.momentum)
                                .nesterov(opt.hp.momentum > 0)
                                .weight_decay(opt.hp.weight_decay));
  std::unique_ptr<torch::optim::SGD> arch;
  if (opt.search) {
    auto alphas = model->arch_parameters();
    if (alphas.empty()) throw std::invalid_argument("search stage: the model has no mixture layers");
    arch = std::make_unique<torch::optim::SGD>(alphas, torch::optim::SGDOptions(opt.arch.lr)
                                                           .momentum(opt.arch.momentum)
                                                           .nesterov(opt.arch.momentum > 0)
                                                           .weight_decay(opt.arch.weight_decay));
    for (auto& conv : model->searchable()) conv->set_temperature(opt.arch.temperature);
  }

  dist::Communicator* comm = opt.comm.get();
  const bool writes_files = comm == nullptr || comm->rank() == 0;
  StageState s;
  bool resume = opt.resume && !opt.checkpoint.empty() && writes_files && util::file_exists(opt.checkpoint);
  if (comm != nullptr) resume = comm->from_root(static_cast<int64_t>(resume)) != 0;
  if (resume) {
    std::string bytes = writes_files ? util::read_file_bytes(opt.checkpoint) : std::string();
    if (comm != nullptr) bytes = comm->from_root(bytes);
    s = load_checkpoint(opt.checkpoint, bytes, model, weights, arch.get(), order_gen);
  }
  // Data-parallel: every rank starts from rank 0's weights (the same seed
  // gives the same ones; this makes sure), and with sync_batch_norm batch
  // norm uses the global batch's statistics while this stage trains.
  std::vector<at::Tensor> all_params = weight_params;
  if (arch) {
    for (const auto& a : model->arch_parameters()) all_params.push_back(a);
  }
  struct SyncedNorm {
    explicit SyncedNorm(nn::Backbone& m) : model(m) {}
    SyncedNorm(const SyncedNorm&) = delete;
    ~SyncedNorm() { model->sync_batch_norm(nullptr); }
    nn::Backbone& model;
  };
  std::optional<SyncedNorm> synced;
  if (comm != nullptr) {
    std::vector<at::Tensor> state = model->parameters();
    for (const auto& b : model->buffers()) state.push_back(b);
    comm->broadcast(state);
    if (comm->sync_batch_norm()) {
      model->sync_batch_norm(comm);
      synced.emplace(model);
    }
  }
  bool cancel_requested = false;  // data-parallel: acted on where the ranks agree

  const int64_t n = data.train.size();
  const int64_t steps = steps_per_epoch(n, opt.batch_size, opt.batch_fraction);
  // With epochs 0 the time budget alone ends the stage (and sets the schedule).
  const int64_t max_epochs = opt.epochs > 0 ? opt.epochs : std::numeric_limits<int32_t>::max();
  const int64_t total_steps = opt.max_steps > 0 ? (opt.epochs > 0 ? std::min(opt.max_steps, steps * opt.epochs)
                                                                    : opt.max_steps)
                                               : (opt.epochs > 0 ? steps * opt.epochs : 0);
  const int64_t valid_n = opt.validate ? data.valid.size() : 0;
  // Seconds per evaluated sample: measured on each validation pass, guessed
  // before the first from the training step (a forward is ~1/3 of a step).
  double eval_s_per_sample = 0;
  // The same for the budget's reserve: the slowest of the last few passes.
  std::array<double, 3> recent_eval_s{};
  size_t eval_passes = 0;
  auto reserve_s_per_sample = [&] {
    return std::max(eval_s_per_sample, *std::max_element(recent_eval_s.begin(), recent_eval_s.end()));
  };
  double checkpoint_s = 0;  // the last checkpoint's write (fsyncs included), also held back
  // Seconds per training step (batch assembly included), for the budget's
  // stop: the mean of this call's steps after its first, colder one; the
  // first's alone until there is a second.
  double first_step_s = 0, later_steps_s = 0;
  int64_t later_steps = 0;
  auto next_step_s = [&] {
    return later_steps > 0 ? later_steps_s / static_cast<double>(later_steps) : first_step_s;
  };
  auto planned_epochs = [&](double elapsed, int64_t epoch) -> int64_t {
    if (opt.max_steps > 0) return std::max(epoch, (total_steps + steps - 1) / steps);
    if (opt.epochs > 0) return opt.epochs;
    const double per_step = elapsed / static_cast<double>(std::max<int64_t>(1, s.global_step));
    return std::max(epoch, static_cast<int64_t>(std::ceil(opt.time_budget_s /
                                                          std::max(1e-9, per_step * static_cast<double>(steps)))));
  };
  const auto t0 = Clock::now() - std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(s.elapsed));
  StageResult result;
  result.stopped_early = s.stopped_early;  // a resumed stage that had ended stays ended
  model->train();
  // A budget that affords too few steps to train is said once: from the first
  // kProbeSteps steps, or at the end if the stage stopped before them.
  constexpr int64_t kProbeSteps = 3;
  auto warn_if_few_steps = [&](double elapsed, int64_t steps_so_far) {
    if (opt.warn_below_steps <= 0 || !(opt.time_budget_s > 0) || steps_so_far <= 0 ||
        !result.warning.empty()) {
      return;
    }
    const double per_step = elapsed / static_cast<double>(steps_so_far);
    const auto projected = static_cast<int64_t>(opt.time_budget_s / per_step);
    if (projected >= opt.warn_below_steps) return;
    result.warning = opt.stage + ": its " + std::to_string(static_cast<int64_t>(opt.time_budget_s)) +
                     " s afford about " + std::to_string(projected) + " steps of " +
                     std::to_string(static_cast<int64_t>(per_step * 1000)) + " ms, fewer than the " +
                     std::to_string(opt.warn_below_steps) +
                     " a network needs to learn much; give more time, fewer or smaller samples "
                     "(max_train), or a narrower network (width)";
  };

  // Every event carries the warning once, on the first after it arose, and
  // the notes of the steps back since the last event (its epoch and step
  // then count from where the weights went back to, below the last event's).
  bool warning_sent = false;
  std::string step_back_note;
  auto send = [&](Progress& p) {
    if (!warning_sent && !result.warning.empty()) {
      p.warning = result.warning;
      warning_sent = true;
    }
    if (!step_back_note.empty()) {
      p.warning += (p.warning.empty() ? "" : "; ") + step_back_note;
      step_back_note.clear();
    }
    if (!progress(p)) {
      if (comm == nullptr) throw Cancelled();
      cancel_requested = true;
    }
  };
  if (opt.expected_step_s > 0) {
    if (opt.require_one_step && opt.time_budget_s > 0 && opt.expected_step_s > opt.time_budget_s) {
      throw std::invalid_argument(budget_cannot_hold_a_step(opt.stage, opt.expected_step_s, opt.time_budget_s,
                                                            "was measured before the stage at"));
    }
    warn_if_few_steps(opt.expected_step_s, 1);
    if (progress && !result.warning.empty()) {
      Progress p;
      p.stage = opt.stage;
      p.epoch = s.epochs_done + 1;
      p.epochs = planned_epochs(opt.expected_step_s * static_cast<double>(std::max<int64_t>(1, s.global_step)),
                                p.epoch);
      p.steps = steps;
      p.loss = p.metric = std::nan("");
      p.elapsed_s = s.elapsed;
      p.eta_s = std::max(0.0, opt.time_budget_s - s.elapsed);
      send(p);
    }
  }

  // The last scored epoch's folds of valid, for choose_kept.
  FoldScores last_scores;
  // With diverge_retries: where a non-finite loss steps back to. First the
  // current epoch's start; where the loss blows up again in the same epoch,
  // the weights the call began with: an epoch can end with finite but
  // ruined weights (measured: a regression at lr 3 whose second epoch blew
  // up from its first epoch's weights at every rate down to 0.08), and the
  // stage then starts again, its counters as at the call's start.
  std::vector<at::Tensor> epoch_start, call_start;
  StageState state_at_call_start;
  if (opt.diverge_retries > 0) {
    call_start = snapshot(model);
    state_at_call_start = s;
  }
  int64_t last_diverged_epoch = 0;
  std::string backoff_notes;
  bool steps_done = opt.max_steps > 0 && s.global_step >= total_steps;
  for (int64_t epoch = s.epochs_done + 1;
       epoch <= max_epochs && !result.budget_hit && !result.stopped_early && !steps_done; ++epoch) {
    const auto epoch_start_time = Clock::now();
    const int64_t epoch_start_step = s.global_step;
    if (opt.diverge_retries > 0) epoch_start = snapshot(model);
    at::Tensor order = torch::randperm(n, order_gen, torch::kLong);
    double loss_sum = 0;
    int64_t done = 0;
    bool diverged = false;
    for (int64_t step = 0; step < steps; ++step) {
      const auto iter_start = Clock::now();
      const int64_t start = step * opt.batch_size;
      const int64_t len = std::min(opt.batch_size, n - start);
      at::Tensor idx = order.narrow(0, start, len).to(device);
      at::Tensor xb = augment_batch(data.train.x.index_select(0, idx), opt.augment, order_gen);
      at::Tensor yb = data.train.y.index_select(0, idx);

      const auto step_start = Clock::now();
      weights.zero_grad();
      if (arch) arch->zero_grad();
      at::Tensor loss = task::compute_loss(spec, model->forward(xb), yb);
      double loss_value = loss.item<double>();
      // False: step back (below, after the loop); past the retries, throw.
      auto finite_or_step_back = [&] {
        if (std::isfinite(loss_value)) return true;
        if (s.lr_backoffs < opt.diverge_retries) return false;
        throw std::runtime_error(
            opt.stage + ": the training loss became " + std::to_string(loss_value) + " at epoch " +
            std::to_string(epoch) +
            (s.lr_backoffs > 0 ? " after " + std::to_string(s.lr_backoffs) + " steps back to a lower rate" : "") +
            "; lower the learning rate (now " + std::to_string(opt.hp.lr * s.lr_scale) + ")");
      };
      if (comm == nullptr && !finite_or_step_back()) {
        diverged = true;
        break;
      }
      loss.backward();
      if (comm != nullptr) {
        // The global batch's gradient and loss; every rank sees the same
        // loss, so a non-finite one steps back (or stops) all of them.
        std::vector<double> values{loss_value};
        comm->average_gradients(all_params, &values);
        loss_value = values[0];
        if (!finite_or_step_back()) {
          diverged = true;
          break;
        }
      }
      const bool arch_steps = arch && (!opt.after_backward || opt.after_backward(s.global_step));
      // Only the weights are clipped: the logits' gradient has a scale of its
      // own (set by the search), which must not shrink every weight's step.
      if (opt.clip_grad_norm > 0) {
        torch::nn::utils::clip_grad_norm_(weight_params, opt.clip_grad_norm);
      }

      const double elapsed = seconds_since(t0);
      double frac = total_steps > 0 ? static_cast<double>(s.global_step) / static_cast<double>(total_steps) : 0;
      if (opt.time_budget_s > 0 && opt.max_steps == 0) frac = std::max(frac, elapsed / opt.time_budget_s);
      set_lr(weights, scheduled_lr(opt.hp.lr * s.lr_scale, frac, opt.decay_share));
      if (arch) set_lr(*arch, scheduled_lr(opt.arch.lr, frac, opt.decay_share));
      weights.step();
      if (arch_steps) arch->step();
      ++s.global_step;
      ++done;
      loss_sum += loss_value;
      if (eval_s_per_sample == 0) {
        eval_s_per_sample = seconds_since(step_start) / 3.0 / static_cast<double>(len);
      }
      if (done == 1 && first_step_s == 0) {
        first_step_s = seconds_since(iter_start);
      } else {
        later_steps_s += seconds_since(iter_start);
        ++later_steps;
      }
      if (opt.after_step && opt.after_step(s.global_step)) result.stopped_early = true;

      const double now = seconds_since(t0);
      if (s.global_step == kProbeSteps) warn_if_few_steps(now, s.global_step);
      if (opt.require_one_step && opt.time_budget_s > 0 && s.global_step == 1 && now > opt.time_budget_s) {
        throw std::invalid_argument(budget_cannot_hold_a_step(opt.stage, now, opt.time_budget_s, "took"));
      }
      if (progress) {
        Progress p;
        p.stage = opt.stage;
        p.epoch = epoch;
        p.epochs = planned_epochs(now, epoch);
        p.step = step + 1;
        p.steps = steps;
        p.loss = loss_sum / static_cast<double>(done);
        p.metric = s.history.empty() ? std::nan("") : s.history.back().valid_metric;
        p.elapsed_s = now;
        const double per_step = now / static_cast<double>(std::max<int64_t>(1, s.global_step));
        p.eta_s = total_steps > 0 ? per_step * static_cast<double>(total_steps - s.global_step)
                                  : std::numeric_limits<double>::infinity();
        if (opt.time_budget_s > 0) p.eta_s = std::min(p.eta_s, std::max(0.0, opt.time_budget_s - now));
        send(p);
      }
      if (opt.max_steps > 0 && s.global_step >= total_steps) steps_done = true;
      // (The budget's test below, taken here so that the ranks of a
      // data-parallel stage agree on it with the others in one message.)
      const double tail = std::min(0.5 * opt.time_budget_s,
                                   1.5 * reserve_s_per_sample() * static_cast<double>(valid_n + opt.tail_eval_samples) +
                                       checkpoint_s + next_step_s());
      bool out_of_time = opt.time_budget_s > 0 && now + next_step_s() + tail >= opt.time_budget_s;
      if (comm != nullptr) {
        const auto agreed = comm->any({result.stopped_early, out_of_time, cancel_requested});
        result.stopped_early = agreed[0];
        out_of_time = agreed[1];
        if (agreed[2]) throw Cancelled();
      }
      if (result.stopped_early || steps_done) break;
      // Stop where one more step and the evaluations still to come (this
      // epoch's validation and the caller's tail) would not fit in the
      // budget. (Without the step: the last one ate into the tail, and
      // Darcy's retrain, at ~2 s a step, scored 101-200 of its 200 test
      // fields.)
      // At most half the budget is held back: with a budget too small for its
      // evaluations a stage still trains (measured: a 7 s retrain of 500
      // images with a 10,000-image test split stopped after one step).
      // Half as much again as the slowest of the last three validation
      // passes, and one step more, for a step that runs long: a quarter more
      // than the last pass left Fashion-MNIST 9,433 and 9,736 of its 10,000
      // test images, and spoken digits from the waveform (a tail of ~0.3 s)
      // 508 of 600 clips, side by side.
      if (out_of_time) {
        result.budget_hit = true;
        break;
      }
    }

    if (diverged) {
      // Back at a lower rate, the momentum that carried the blow-up dropped
      // (a new order of the train split from there).
      const bool again = epoch == last_diverged_epoch;
      last_diverged_epoch = epoch;
      if (again) {
        restore(model, call_start);
        const auto [backoffs, scale] = std::make_pair(s.lr_backoffs, s.lr_scale);
        s = state_at_call_start;  // (its time goes on from t0: the budget counts what the blow-up cost)
        s.lr_backoffs = backoffs;
        s.lr_scale = scale;
        last_scores = FoldScores{};
      } else {
        restore(model, epoch_start);
        s.global_step = epoch_start_step;
      }
      weights.state().clear();
      if (arch) arch->state().clear();
      ++s.lr_backoffs;
      s.lr_scale *= kDivergeBackoff;
      char note[200];
      std::snprintf(note, sizeof note,
                    "the training loss became non-finite in epoch %lld: stepped back to %s and trained on at lr %.3g",
                    static_cast<long long>(epoch), again ? "the stage's start" : "the epoch's start",
                    opt.hp.lr * s.lr_scale);
      backoff_notes += (backoff_notes.empty() ? "" : "; ") + std::string(note);
      step_back_note += (step_back_note.empty() ? "" : "; ") + opt.stage + ": " + note;
      epoch = s.epochs_done;  // the loop's next epoch is the one after the weights stepped back to
      continue;
    }
    // Local batch norm: every rank's running statistics averaged, so that all
    // ranks validate, keep and return the same network.
    if (comm != nullptr && !comm->sync_batch_norm()) comm->average(model->buffers());
    EpochRecord rec;
    rec.epoch = epoch;
    rec.lr = static_cast<torch::optim::SGDOptions&>(weights.param_groups().at(0).options()).lr();
    rec.train_loss = loss_sum / static_cast<double>(std::max<int64_t>(1, done));
    if (valid_n > 0) {
      // Inside the budget: what is left is shared with the caller's tail in
      // proportion to the samples each scores.
      double limit = 0;
      if (opt.time_budget_s > 0) {
        // (> 0: a limit of 0 means none.)
        limit = std::max(1e-6, (opt.time_budget_s - seconds_since(t0)) * static_cast<double>(valid_n) /
                                   static_cast<double>(valid_n + opt.tail_eval_samples));
      }
      const auto eval_start = Clock::now();
      const Evaluation ev = evaluate(model, spec, data.valid, opt.batch_size, limit, comm);
      rec.valid_metric = ev.metric;
      eval_s_per_sample = seconds_since(eval_start) / static_cast<double>(ev.samples);
      recent_eval_s[eval_passes++ % recent_eval_s.size()] = eval_s_per_sample;
      if (opt.keep_best) {
        last_scores = {epoch, ev.samples, fold_metrics(spec.metric, ev.outputs, ev.targets, kKeepFolds)};
      }
    }
    rec.seconds = std::chrono::duration<double>(Clock::now() - epoch_start_time).count();
    s.history.push_back(rec);
    s.epochs_done = epoch;
    if (better(spec, rec.valid_metric, s.best_valid) || s.best.empty()) {
      if (!std::isnan(rec.valid_metric)) s.best_valid = rec.valid_metric;
      s.best_epoch = epoch;
      if (opt.keep_best) {
        s.best = snapshot(model);
        s.best_scores = last_scores.epoch == epoch ? last_scores : FoldScores{epoch, 0, {}};
      }
    }
    s.elapsed = seconds_since(t0);
    s.stopped_early = result.stopped_early;
    if (!opt.checkpoint.empty() && writes_files) {
      const auto save_start = Clock::now();
      save_checkpoint(opt.checkpoint, model, weights, arch.get(), order_gen, s);
      checkpoint_s = seconds_since(save_start);
    }
    if (progress) {
      Progress p;
      p.stage = opt.stage;
      p.epoch = epoch;
      p.epochs = planned_epochs(s.elapsed, epoch);
      p.step = p.steps = steps;
      p.loss = rec.train_loss;
      p.metric = rec.valid_metric;
      p.elapsed_s = s.elapsed;
      p.eta_s = s.elapsed / static_cast<double>(epoch) * static_cast<double>(p.epochs - epoch);
      if (opt.time_budget_s > 0) p.eta_s = std::min(p.eta_s, std::max(0.0, opt.time_budget_s - s.elapsed));
      send(p);
    }
  }
  // A rank asked to stop after the last step's agreement stops every rank.
  if (comm != nullptr && comm->any(cancel_requested)) throw Cancelled();
  if (opt.keep_best && !s.best.empty()) {
    KeptChoice kept;
    if (std::isnan(s.best_valid)) {
      kept = {false, "no epoch was scored on valid: the last weights"};
    } else if (last_scores.epoch != s.epochs_done) {
      kept = {true, "the best-validated epoch (the last was not scored in this run)"};
    } else {
      const auto scored = std::count_if(s.history.begin(), s.history.end(),
                                        [](const EpochRecord& r) { return !std::isnan(r.valid_metric); });
      kept = choose_kept(spec.metric, s.best_scores, last_scores,
                         std::max(opt.keep_best_stderrs, chance_lead_stderrs(scored)));
    }
    result.kept_why = kept.why;
    if (kept.best) {
      restore(model, s.best);
      result.kept_epoch = s.best_epoch;
      result.kept_valid = s.best_valid;
    } else {
      result.kept_epoch = s.epochs_done;
      result.kept_valid = s.history.empty() ? std::nan("") : s.history.back().valid_metric;
    }
  }

  result.history = s.history;
  result.best_valid = s.best_valid;
  result.best_epoch = s.best_epoch;
  result.epochs_done = s.epochs_done;
  result.steps_done = s.global_step;
  result.seconds = seconds_since(t0);
  result.eval_s_per_row = eval_s_per_sample;
  result.lr_backoffs = s.lr_backoffs;
  result.lr_scale = s.lr_scale;
  if (result.budget_hit && s.global_step < kProbeSteps) warn_if_few_steps(result.seconds, s.global_step);
  if (!backoff_notes.empty()) result.warning += (result.warning.empty() ? "" : "; ") + backoff_notes;
  return result;
}

}  // namespace dash::train
