#include "api/pipeline.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

#include "ops/cpu/fftw_plans.h"
#include "search/dash.h"
#include "util/errors.h"
#include "util/malloc_tuning.h"

namespace dash::api {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

void apply(const RuntimeOptions& o) {
  device_named(o.device);  // refuses "cuda" where it cannot run, before any work
  torch::set_num_threads(o.threads > 0 ? o.threads
                                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  ops::cpu::set_fft_planner(o.fft_planner);
  ops::cpu::set_fft_wisdom(o.fft_wisdom);
  if (o.tune_malloc) util::tune_malloc_for_training();
}

// train (its first max_train rows), valid (carved from train when unset),
// test; checked, not yet normalised.
task::Dataset dataset(const TaskData& t, const DataOptions& o, uint64_t seed) {
  const task::Split& train = t.splits[kTrain];
  if (train.empty()) {
    throw std::invalid_argument(
        "the train split is empty: give it data with dash_task_set_data or dash_task_load_files "
        "(DASH_SPLIT_TRAIN) first");
  }
  task::Split used = train;
  if (o.max_train > 0 && o.max_train < train.size()) {
    used = {train.x.narrow(0, 0, o.max_train), train.y.narrow(0, 0, o.max_train)};
  }
  const task::Split& valid = t.splits[kValid];
  if (valid.empty() && used.size() < 2) {
    throw std::invalid_argument("train has " + std::to_string(used.size()) +
                                " sample: a validation split needs at least 2, or set DASH_SPLIT_VALID");
  }
  return task::make_dataset(t.spec, used, valid, t.splits[kTest], o.valid_fraction, seed);
}

// The prepared (normalised) data on the device the stages compute on.
task::Dataset on_device(task::Dataset data, const at::Device& device) {
  if (device.is_cpu()) return data;
  for (task::Split* split : {&data.train, &data.valid, &data.test}) {
    if (split->empty()) continue;
    split->x = split->x.to(device);
    split->y = split->y.to(device);
  }
  return data;
}

// A data-parallel call's process group (null for world_size 1). Every rank
// must be given the same task and options (apart from rank, threads,
// checkpoint_dir and time_budget_s), the same number of rows of the splits
// the call `uses` when each is given the whole data, and the same `work`
// (what else the call depends on); connect() refuses the call on every rank
// otherwise.
template <class Call>
std::shared_ptr<dist::Communicator> join(const TaskData& task, const Call& options, bool cuda,
                                         std::initializer_list<SplitIndex> uses = {kTrain, kValid, kTest},
                                         const json& work = json::object()) {
  if (options.runtime.dist.world_size <= 1) return nullptr;
  json print = to_json(options);
  // (time_budget_s: what each rank has left after loading its data; rank 0's
  // clock decides.)
  for (const char* local : {"rank", "threads", "checkpoint_dir", "time_budget_s"}) print.erase(local);
  print["task"] = task.spec.to_json();
  if (!options.runtime.dist.data_sharded) {
    for (SplitIndex s : uses) print["rows"].push_back(task.splits[s].size());
  }
  print.update(work);
  return dist::connect(options.runtime.dist, print.dump(), cuda);
}

// This rank's rows of a split that the ranks score together (valid, test, or
// the split dash_evaluate_with scores). Given the whole data: rows r,
// r + world_size, ... (every rank at least one; an empty split stays empty).
// Given shards (data_sharded): the rank's own, which every rank must have
// when any has.
task::Split scored_rows(const task::Split& s, const char* name, const dist::DistOptions& o,
                        dist::Communicator& comm) {
  const int64_t world = comm.world_size(), rank = comm.rank();
  if (!o.data_sharded) {
    if (s.empty()) return s;
    if (s.size() < world) {
      throw std::invalid_argument(std::string("the ") + name + " split has " + std::to_string(s.size()) +
                                  " rows, fewer than world_size (" + std::to_string(world) +
                                  "): every rank scores at least one");
    }
    const at::Tensor rows = torch::arange(rank, s.size(), world, torch::kLong);
    return {s.x.index_select(0, rows.to(s.x.device())), s.y.index_select(0, rows.to(s.y.device()))};
  }
  const int64_t fewest = comm.min_all(s.size()), most = -comm.min_all(-s.size());
  if (most > 0 && fewest == 0) {
    throw std::invalid_argument(std::string("data_sharded: a rank was given no rows of the ") + name +
                                " split, which the others have");
  }
  return s;
}

// This rank's part of a data-parallel call's data, all ranks holding the
// same number of train rows (so that they take the same steps) and at least
// one row of every split that has rows (so that each scores its part).
// Given the whole data: train is cut into world_size disjoint shards of a
// seeded permutation (the same on every rank; a remainder of fewer than
// world_size rows is left out), and valid and test are scored in turns
// (rank r takes rows r, r + world_size, ...). Given shards (data_sharded):
// train is cut to the shortest rank's, valid and test are the rank's own.
task::Dataset shard(task::Dataset d, const dist::DistOptions& o, dist::Communicator& comm, uint64_t seed,
                    json* report) {
  const int64_t world = comm.world_size(), rank = comm.rank();
  const int64_t given = d.train.size();
  if (!o.data_sharded) {
    const int64_t per = given / world;
    if (per < 1) {
      throw std::invalid_argument("train has " + std::to_string(given) + " rows, fewer than world_size (" +
                                  std::to_string(world) + "): every rank needs at least one");
    }
    at::Generator gen = at::detail::createCPUGenerator(seed ^ 0xd157ULL);
    const at::Tensor idx = torch::randperm(given, gen, torch::kLong).narrow(0, rank * per, per);
    d.train = {d.train.x.index_select(0, idx.to(d.train.x.device())),
               d.train.y.index_select(0, idx.to(d.train.y.device()))};
  } else {
    const int64_t per = comm.min_all(given);
    if (per < 1) throw std::invalid_argument("data_sharded: a rank was given no train rows");
    d.train = {d.train.x.narrow(0, 0, per), d.train.y.narrow(0, 0, per)};
  }
  d.valid = scored_rows(d.valid, "valid", o, comm);
  d.test = scored_rows(d.test, "test", o, comm);
  (*report)["distributed"] = {{"world_size", world},
                              {"rank", rank},
                              {"backend", "gloo"},
                              {"data_sharded", o.data_sharded},
                              {"train_rows_per_rank", d.train.size()},
                              {"train_rows_given", given}};
  return d;
}

// f(), but a failed data-parallel call drops its process group, so that the
// next call meets the other ranks afresh instead of through a broken group.
template <class F>
auto dropping_group_on_failure(const dist::DistOptions& o, F&& f) {
  try {
    return f();
  } catch (...) {
    if (o.world_size > 1) dist::disconnect(o);
    throw;
  }
}

// The batch of one rank's step.
int64_t rank_batch(int64_t batch_size, const dist::DistOptions& o) {
  return o.world_size > 1 && o.batch_size_global > 0 ? o.batch_size_global / o.world_size : batch_size;
}

// What is left of time_budget_s after preparing the data (that time counts
// inside the budget); 0 stays "no budget".
double budget_left(double budget, Clock::time_point t_call) {
  if (!(budget > 0)) return 0;
  const double used = std::chrono::duration<double>(Clock::now() - t_call).count();
  if (used >= budget) {
    throw std::invalid_argument("preparing the data took " + std::to_string(used) +
                                " s, the whole time_budget_s of " + std::to_string(budget) +
                                " s; raise time_budget_s or use fewer samples (max_train)");
  }
  return budget - used;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

}  // namespace

const char* split_name(SplitIndex split) {
  switch (split) {
    case kTrain:
      return "train";
    case kValid:
      return "valid";
    case kTest:
      return "test";
  }
  return "?";
}

int64_t values_per_sample(const std::vector<int64_t>& shape) {
  int64_t total = 1;
  for (int64_t d : shape) {
    if (d != 0 && total > std::numeric_limits<int64_t>::max() / d) {
      throw std::invalid_argument("the shape's size overflows int64_t");
    }
    total *= d;
  }
  return total;
}

task::Split split_from_buffers(const task::TaskSpec& spec, const float* x, const void* y, int64_t n,
                               SplitIndex split) {
  if (n < 1) throw std::invalid_argument("n must be >= 1, got " + std::to_string(n));
  const auto target = spec.target_shape();
  std::vector<int64_t> xshape = {n}, yshape = {n};
  xshape.insert(xshape.end(), spec.input_shape.begin(), spec.input_shape.end());
  yshape.insert(yshape.end(), target.begin(), target.end());
  // n x values per sample, checked: from_blob must not be told a wrapped size.
  for (const auto* shape : {&xshape, &yshape}) {
    try {
      values_per_sample(*shape);
    } catch (const std::invalid_argument&) {
      throw std::invalid_argument(std::string(shape == &xshape ? "x" : "y") + ": n * shape overflows");
    }
  }
  const bool classes = spec.kind == task::TaskKind::kClassification;
  // from_blob does not copy: clone so the caller may free its buffers.
  at::Tensor xt = at::from_blob(const_cast<float*>(x), xshape, at::kFloat).clone();
  at::Tensor yt = at::from_blob(const_cast<void*>(y), yshape, classes ? at::kLong : at::kFloat).clone();
  return task::checked_split(spec, xt, yt, split_name(split));
}

json ArchChoice::to_json() const {
  json j = architecture.to_json();
  j["hyperparameters"] = hp.to_json();
  return j;
}

ArchChoice ArchChoice::from_json(const json& text) {
  if (!text.is_object()) throw std::invalid_argument("the architecture must be a JSON object");
  json j = text;
  ArchChoice a;
  if (j.contains("hyperparameters")) {
    const json& h = j["hyperparameters"];
    if (!h.is_object()) throw std::invalid_argument("'hyperparameters' must be an object");
    json full = a.hp.to_json();
    for (const auto& [key, value] : h.items()) {
      if (!full.contains(key)) {
        throw std::invalid_argument("hyperparameters: unknown key '" + key + "' (lr, momentum, weight_decay, dropout)");
      }
      if (!value.is_number()) throw std::invalid_argument("hyperparameters: '" + key + "' must be a number");
      full[key] = value;
    }
    a.hp = train::Hyperparams::from_json(full);
    j.erase("hyperparameters");
  }
  a.architecture = nn::Architecture::from_json(j);
  return a;
}

ArchChoice plain_architecture(const task::TaskSpec& spec) {
  const search::CommonOptions defaults;
  const auto b = nn::backbone_for(spec, defaults.depth, defaults.width, 0, defaults.stem_stride);
  ArchChoice a;
  a.architecture = nn::Architecture::plain(b.name(), b.searchable_layers());
  return a;
}

namespace {

// What a call computes on: its process group (joined first; null alone) set
// in `core`, this rank's data normalised over every rank's train (the
// normaliser into `norm`, when set) and placed on the call's device, and the
// report's "distributed" entry (null alone).
template <class Call, class CoreOptions>
task::Dataset call_data(const TaskData& task, const Call& options, CoreOptions* core, task::Normalizer* norm,
                        json* dist_report) {
  const at::Device device = device_named(options.runtime.device);
  core->comm = join(task, options, device.is_cuda());
  auto raw = dataset(task, options.data, core->seed);
  if (core->comm) raw = shard(raw, options.runtime.dist, *core->comm, core->seed, dist_report);
  core->batch_size = rank_batch(core->batch_size, options.runtime.dist);
  return on_device(search::prepare(raw, norm, core->comm.get()), device);
}

ArchChoice search_call(const TaskData& task, const SearchCall& options, const train::ProgressFn& progress) {
  const auto t_call = Clock::now();
  apply(options.runtime);
  search::SearchOptions so = options.search;
  json dist_report;
  const auto data = call_data(task, options, &so, nullptr, &dist_report);
  so.time_budget_s = budget_left(so.time_budget_s, t_call);
  auto outcome = search::run_search(task.spec, data, so, progress);
  if (!dist_report.is_null()) outcome.report.update(dist_report);
  if (outcome.trained) outcome.trained->to(at::kCPU);
  return {outcome.architecture, outcome.hp, outcome.report, outcome.trained};
}

std::unique_ptr<model::TrainedModel> retrain_call(const TaskData& task, const ArchChoice& arch,
                                                  const RetrainCall& options, const train::ProgressFn& progress) {
  const auto t_call = Clock::now();
  apply(options.runtime);
  search::RetrainOptions ro = options.retrain;
  json dist_report;
  task::Normalizer norm;  // fitted on the CPU, where the model will infer
  const auto data = call_data(task, options, &ro, &norm, &dist_report);
  const train::Hyperparams hp = options.hp.applied_to(arch.hp);
  ro.time_budget_s = budget_left(ro.time_budget_s, t_call);
  // The search timed a training step of the plain backbone at its batch size
  // and width; no retrain network is cheaper, so the retrain refuses a budget
  // shorter than that step, and warns of one too short to learn in, before
  // it trains.
  const json probe = arch.report.is_object() ? arch.report.value("probe_step", json::object()) : json::object();
  if (probe.value("batch_size", int64_t{0}) == ro.batch_size && probe.value("width", 0) == ro.width) {
    ro.expected_step_s = probe.value("ms", 0.0) / 1000.0;
  }
  ro.warm = arch.trained;
  auto r = search::run_retrain(task.spec, data, arch.architecture, hp, ro, progress);
  json report = r.report;
  if (!dist_report.is_null()) report.update(dist_report);
  if (!arch.report.empty()) report["search"] = arch.report;
  r.model->to(at::kCPU);  // every model starts on the CPU (TrainedModel::to moves it)
  const nn::BackboneSpec bspec = r.model->spec();
  return std::make_unique<model::TrainedModel>(task.spec, bspec, arch.architecture, hp, norm, report, r.model);
}

}  // namespace

ArchChoice search(const TaskData& task, const SearchCall& options, const train::ProgressFn& progress) {
  return dropping_group_on_failure(options.runtime.dist, [&] { return search_call(task, options, progress); });
}

std::unique_ptr<model::TrainedModel> retrain(const TaskData& task, const ArchChoice& arch,
                                             const RetrainCall& options, const train::ProgressFn& progress) {
  return dropping_group_on_failure(options.runtime.dist,
                                   [&] { return retrain_call(task, arch, options, progress); });
}

namespace {

json evaluate_call(const model::TrainedModel& model, const TaskData& task, SplitIndex split,
                   const EvaluateCall& options) {
  const task::TaskSpec& m = model.spec();
  const task::TaskSpec& t = task.spec;
  if (m.kind != t.kind || m.input_shape != t.input_shape || m.num_outputs != t.num_outputs) {
    throw std::invalid_argument("the model was trained for a " + task::to_string(m.kind) + " task with input " +
                                shape_text(m.input_shape) + " and " + std::to_string(m.num_outputs) +
                                " outputs, but the task is " + task::to_string(t.kind) + " with input " +
                                shape_text(t.input_shape) + " and " + std::to_string(t.num_outputs));
  }
  const RuntimeOptions& o = options.runtime;
  // The model computes where dash_model_set_device put it; an evaluation
  // that moved it would hold back every other call on the model meanwhile.
  if (o.device != "auto" && device_named(o.device).type() != model.device().type()) {
    throw std::invalid_argument("option 'device' is \"" + o.device + "\" but the model is on " +
                                model.device().str() + ": dash_model_set_device moves it");
  }
  if (o.threads > 0) torch::set_num_threads(o.threads);
  if (o.tune_malloc) util::tune_malloc_for_training();
  const json work = {{"split", split_name(split)}, {"architecture", model.architecture().to_json()}};
  const auto comm = join(task, options, model.device().is_cuda(), {split}, work);
  task::Split data = task.splits[split];
  if (comm) data = scored_rows(data, split_name(split), o.dist, *comm);
  if (data.empty()) {
    throw std::invalid_argument(std::string("the ") + split_name(split) + " split is empty: set its data first");
  }
  const auto ev = model.evaluate(data, comm.get());
  json report = {{"split", split_name(split)},
                 {"samples", ev.samples},
                 {"loss", ev.loss},
                 {"metric_name", task::to_string(m.metric)},
                 {"metric", std::isfinite(ev.metric) ? json(ev.metric) : json(nullptr)},
                 {"higher_is_better", task::higher_is_better(m.metric)}};
  if (comm) {
    report["distributed"] = {{"world_size", comm->world_size()},
                             {"rank", comm->rank()},
                             {"backend", "gloo"},
                             {"data_sharded", o.dist.data_sharded}};
  }
  return report;
}

}  // namespace

json evaluate(const model::TrainedModel& model, const TaskData& task, SplitIndex split,
              const EvaluateCall& options) {
  return dropping_group_on_failure(options.runtime.dist, [&] { return evaluate_call(model, task, split, options); });
}

void infer(const model::TrainedModel& model, const float* x, int64_t n, float* out, int64_t out_len) {
  if (n < 1) throw std::invalid_argument("n must be >= 1, got " + std::to_string(n));
  const int64_t per = model.output_size();
  if (n > std::numeric_limits<int64_t>::max() / per || out_len != n * per) {
    throw std::invalid_argument("out_len is " + std::to_string(out_len) + " but " + std::to_string(n) +
                                " samples need " + std::to_string(n) + " x " + std::to_string(per) +
                                " values (dash_model_output_size)");
  }
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), model.spec().input_shape.begin(), model.spec().input_shape.end());
  try {
    values_per_sample(shape);
  } catch (const std::invalid_argument&) {
    throw std::invalid_argument("n is too large");
  }
  // Read-only view of the caller's buffer: no copy.
  const at::Tensor xt = at::from_blob(const_cast<float*>(x), shape, at::kFloat);
  const at::Tensor bad = xt.isfinite().logical_not().reshape({n, -1}).any(1);
  if (bad.any().item<bool>()) {
    const int64_t row = bad.nonzero()[0][0].item<int64_t>();
    throw std::invalid_argument("x has NaN or Inf in sample " + std::to_string(row));
  }
  const at::Tensor y = model.infer(xt);
  std::memcpy(out, y.contiguous().data_ptr<float>(), sizeof(float) * static_cast<size_t>(n * per));
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

}  // namespace dash::api
