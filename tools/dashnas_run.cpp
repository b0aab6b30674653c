// dashnas-run: the whole DASH pipeline (or the plain backbone alone) from a
// JSON task spec and data files, with progress on stderr and a JSON result.
//
//   dashnas-run --task task.json --train-x X --train-y Y [--test-x X --test-y Y]
//               [--valid-x X --valid-y Y] [--options opts.json | --set key=value ...]
//               [--method dash|backbone] [--out result.json] [--work-dir DIR] [--resume]
//
// Data files: .npy, .idx, .idx.gz (Fashion-MNIST's files work as shipped).

#include <torch/torch.h>

#include <boost/program_options.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "ops/cpu/fftw_plans.h"
#include "search/dash.h"
#include "task/dataset.h"
#include "task/io.h"
#include "train/checkpoint.h"

namespace po = boost::program_options;
using nlohmann::json;

namespace {

// Every option the runner accepts, with its default: unknown keys are errors.
json default_options() {
  return {
      {"seed", 0},
      {"threads", 0},                // 0: all cores
      {"fft_planner", "estimate"},   // "estimate": bit-reproducible; "measure": faster steps, slower start
      {"budget_s", 0.0},             // total wall-clock budget, split across stages; 0: none
      {"batch_size", 64},
      {"valid_fraction", 0.1},       // of train, when no validation files are given
      {"max_train", 0},              // use only the first N training rows (0: all)
      {"max_test", 0},
      {"depth", 16},                 // WRN depth (2D tasks)
      {"search_width", 1},
      {"retrain_width", 1},
      {"kernel_sizes", json::array()},  // empty: DASH's default for the task
      {"dilations", json::array()},
      {"search_epochs", 4},
      {"search_batch_fraction", 1.0},
      {"search_lr", 0.1},
      {"arch_lr", 0.05},
      {"grad_scale", 1.0},
      {"field_penalty", 0.05},
      {"temperature", 1.0},
      {"hpo", true},
      {"hpo_grid", "small"},         // "small" (3 learning rates) or "dash" (24 configurations)
      {"hpo_epochs", 1},
      {"hpo_batch_fraction", 0.5},
      {"retrain_epochs", 10},
      {"retrain_batch_fraction", 1.0},
      {"lr", 0.1},                   // backbone method, or dash with hpo off
      {"search_share", 0.4},         // of budget_s; hpo_share likewise; retrain gets the rest
      {"hpo_share", 0.15},
  };
}

json merge_options(json options, const json& user) {
  for (const auto& [key, value] : user.items()) {
    if (!options.contains(key)) {
      throw std::invalid_argument("unknown option '" + key + "'; known options: " + [&] {
        std::string names;
        for (const auto& [k, v] : options.items()) names += (names.empty() ? "" : ", ") + k;
        return names;
      }());
    }
    const json& def = options[key];
    const bool ok = (def.is_number() && value.is_number()) || (def.is_boolean() && value.is_boolean()) ||
                    (def.is_string() && value.is_string()) || (def.is_array() && value.is_array());
    if (!ok) {
      throw std::invalid_argument("option '" + key + "' must be a " + def.type_name() + ", got " +
                                  value.dump());
    }
    options[key] = value;
  }
  return options;
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw std::runtime_error(path + " is not valid JSON: " + e.what());
  }
}

// x as stored (e.g. [n, 28, 28] for IDX images) reshaped to [n, input_shape...].
at::Tensor shaped_inputs(at::Tensor x, const dash::task::TaskSpec& spec, const std::string& path) {
  int64_t per_row = 1;
  for (int64_t s : spec.input_shape) per_row *= s;
  if (x.dim() >= 1 && x.numel() == x.size(0) * per_row) {
    std::vector<int64_t> shape{x.size(0)};
    shape.insert(shape.end(), spec.input_shape.begin(), spec.input_shape.end());
    return x.reshape(shape);
  }
  std::ostringstream msg;
  msg << path << " holds " << x.sizes() << " but the task's input_shape needs " << per_row
      << " values per row";
  throw std::invalid_argument(msg.str());
}

dash::task::Split load_split(const dash::task::TaskSpec& spec, const std::string& x_path,
                             const std::string& y_path, const std::string& name, int64_t max_rows) {
  if (x_path.empty() && y_path.empty()) return {};
  if (x_path.empty() || y_path.empty()) {
    throw std::invalid_argument(name + " needs both --" + name + "-x and --" + name + "-y");
  }
  at::Tensor x = shaped_inputs(dash::task::load_array(x_path), spec, x_path);
  at::Tensor y = dash::task::load_array(y_path);
  if (max_rows > 0 && x.size(0) > max_rows) {
    x = x.narrow(0, 0, max_rows);
    if (y.size(0) > max_rows) y = y.narrow(0, 0, max_rows);
  }
  return dash::task::checked_split(spec, x, y, name);
}

class ProgressPrinter {
 public:
  bool operator()(const dash::train::Progress& p) {
    const auto now = std::chrono::steady_clock::now();
    const bool epoch_end = p.step == p.steps;
    if (!epoch_end && now - last_ < std::chrono::seconds(10)) return true;
    last_ = now;
    std::fprintf(stderr, "[%s] epoch %lld/%lld step %lld/%lld loss %.4f valid %.4f elapsed %.0fs eta %.0fs\n",
                 p.stage.c_str(), p.epoch, p.epochs, p.step, p.steps, p.loss, p.metric,
                 p.elapsed_s, p.eta_s);
    return true;
  }

 private:
  std::chrono::steady_clock::time_point last_{};
};

json nullable(double v) { return std::isnan(v) ? json() : json(v); }

}  // namespace

int main(int argc, char** argv) {
  std::string task_path, options_path, out_path, work_dir, method = "dash";
  std::string train_x, train_y, valid_x, valid_y, test_x, test_y;
  std::vector<std::string> sets;
  bool resume = false;
  po::options_description desc("dashnas-run options");
  desc.add_options()("help,h", "show this help")
      ("task", po::value(&task_path)->required(), "task spec JSON file")
      ("train-x", po::value(&train_x)->required(), "training inputs (.npy, .idx, .idx.gz)")
      ("train-y", po::value(&train_y)->required(), "training targets")
      ("valid-x", po::value(&valid_x), "validation inputs (default: carved from train)")
      ("valid-y", po::value(&valid_y), "validation targets")
      ("test-x", po::value(&test_x), "test inputs")
      ("test-y", po::value(&test_y), "test targets")
      ("options", po::value(&options_path), "options JSON file")
      ("set", po::value(&sets)->composing(), "one option as key=JSON, e.g. --set budget_s=600")
      ("method", po::value(&method), "dash (search + tuning + retrain) or backbone (k=3, d=1 everywhere)")
      ("out", po::value(&out_path), "write the result JSON here (default: stdout)")
      ("work-dir", po::value(&work_dir), "checkpoints go here; with --resume a killed run continues")
      ("resume", po::bool_switch(&resume), "continue from the checkpoints in --work-dir")
      ("list-options", "print every option with its default and exit");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    if (vm.count("list-options")) {
      std::cout << default_options().dump(2) << "\n";
      return 0;
    }
    po::notify(vm);
    if (method != "dash" && method != "backbone") {
      throw std::invalid_argument("--method must be dash or backbone, got " + method);
    }
    if (resume && work_dir.empty()) throw std::invalid_argument("--resume needs --work-dir");

    json user = options_path.empty() ? json::object() : read_json_file(options_path);
    for (const auto& s : sets) {
      const auto eq = s.find('=');
      if (eq == std::string::npos) throw std::invalid_argument("--set needs key=value, got " + s);
      try {
        user[s.substr(0, eq)] = json::parse(s.substr(eq + 1));
      } catch (const json::parse_error&) {
        user[s.substr(0, eq)] = s.substr(eq + 1);  // a bare string
      }
    }
    const json opt = merge_options(default_options(), user);

    const int threads = opt["threads"].get<int>() > 0
                            ? opt["threads"].get<int>()
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(threads);
    dash::ops::cpu::set_fft_planner(opt["fft_planner"].get<std::string>());

    const auto spec = dash::task::TaskSpec::from_json(read_json_file(task_path));
    const int64_t max_train = opt["max_train"].get<int64_t>();
    const int64_t max_test = opt["max_test"].get<int64_t>();
    auto train = load_split(spec, train_x, train_y, "train", max_train);
    auto valid = load_split(spec, valid_x, valid_y, "valid", 0);
    auto test = load_split(spec, test_x, test_y, "test", max_test);
    const uint64_t seed = opt["seed"].get<uint64_t>();
    auto raw = dash::task::make_dataset(spec, train, valid, test, opt["valid_fraction"].get<double>(), seed);
    dash::task::Normalizer norm;
    const auto data = dash::search::prepare(raw, &norm);
    std::fprintf(stderr, "task %s, train %lld, valid %lld, test %lld, %d threads, method %s\n",
                 dash::task::to_string(spec.kind).c_str(), (long long)data.train.size(),
                 (long long)data.valid.size(), (long long)data.test.size(), threads, method.c_str());

    const double budget = opt["budget_s"].get<double>();
    const double search_budget = budget * opt["search_share"].get<double>();
    const double hpo_budget = budget * opt["hpo_share"].get<double>();
    ProgressPrinter printer;
    dash::train::ProgressFn progress = [&](const dash::train::Progress& p) { return printer(p); };

    const auto t0 = std::chrono::steady_clock::now();
    json result;
    dash::nn::Architecture arch;
    dash::train::Hyperparams hp{opt["lr"].get<double>(), 0.9, 5e-4, 0.0};
    double search_s = 0, hpo_s = 0;
    const int depth = opt["depth"].get<int>();
    const int64_t batch = opt["batch_size"].get<int64_t>();
    if (method == "dash") {
      dash::search::SearchOptions so;
      so.seed = seed;
      so.space.kernel_sizes = opt["kernel_sizes"].get<std::vector<int64_t>>();
      so.space.dilations = opt["dilations"].get<std::vector<int64_t>>();
      if (so.space.kernel_sizes.empty() != so.space.dilations.empty()) {
        throw std::invalid_argument("give both kernel_sizes and dilations, or neither");
      }
      so.depth = depth;
      so.width = opt["search_width"].get<int>();
      so.batch_size = batch;
      so.epochs = opt["search_epochs"].get<int64_t>();
      so.batch_fraction = opt["search_batch_fraction"].get<double>();
      so.time_budget_s = search_budget;
      so.hp = {opt["search_lr"].get<double>(), 0.9, 5e-4, 0.0};
      so.arch.lr = opt["arch_lr"].get<double>();
      so.arch.grad_scale = opt["grad_scale"].get<double>();
      so.arch.field_penalty = opt["field_penalty"].get<double>();
      so.arch.temperature = opt["temperature"].get<double>();
      so.hpo = opt["hpo"].get<bool>();
      const std::string grid = opt["hpo_grid"].get<std::string>();
      if (grid != "small" && grid != "dash") throw std::invalid_argument("hpo_grid must be small or dash");
      so.grid = grid == "dash" ? dash::search::dash_grid() : dash::search::small_grid();
      so.hpo_epochs = opt["hpo_epochs"].get<int64_t>();
      so.hpo_batch_fraction = opt["hpo_batch_fraction"].get<double>();
      so.hpo_time_budget_s = hpo_budget;
      so.checkpoint_dir = work_dir;
      so.resume = resume;
      auto s = dash::search::run_search(spec, data, so, progress);
      arch = s.architecture;
      if (so.hpo) hp = s.hp;
      search_s = s.search_seconds;
      hpo_s = s.hpo_seconds;
      result["search"] = s.report;
      std::fprintf(stderr, "architecture: %s\n", arch.to_json()["layers"].dump().c_str());
    } else {
      arch = dash::nn::Architecture::plain(
          dash::search::backbone_for(spec, depth, 1, 0).name(),
          dash::search::backbone_for(spec, depth, 1, 0).searchable_layers());
    }

    dash::search::RetrainOptions ro;
    ro.seed = seed;
    ro.depth = depth;
    ro.width = opt["retrain_width"].get<int>();
    ro.batch_size = batch;
    ro.epochs = opt["retrain_epochs"].get<int64_t>();
    ro.batch_fraction = opt["retrain_batch_fraction"].get<double>();
    const double spent = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ro.time_budget_s = budget > 0 ? std::max(1.0, budget - spent) : 0;
    ro.checkpoint_dir = work_dir;
    ro.resume = resume;
    auto r = dash::search::run_retrain(spec, data, arch, hp, ro, progress);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    const char* commit = std::getenv("DASH_COMMIT");
    result["task"] = spec.to_json();
    result["method"] = method;
    result["metric_name"] = dash::task::to_string(spec.metric);
    result["metric"] = nullable(r.test_metric);
    result["valid_metric"] = nullable(r.valid_metric);
    result["higher_is_better"] = dash::task::higher_is_better(spec.metric);
    result["wall_s"] = wall;
    result["search_s"] = search_s;
    result["hpo_s"] = hpo_s;
    result["retrain_s"] = r.seconds;
    result["budget_s"] = budget;
    result["commit"] = commit ? commit : "unknown";
    result["threads"] = threads;
    result["architecture"] = arch.to_json();
    result["hyperparameters"] = hp.to_json();
    result["retrain"] = r.report;
    result["options"] = opt;
    result["normalizer"] = norm.to_json();
    const std::string text = result.dump(2);
    if (out_path.empty()) {
      std::cout << text << "\n";
    } else {
      dash::train::write_atomically(out_path, [&](const std::string& tmp) {
        std::ofstream out(tmp);
        out << text << "\n";
        if (!out) throw std::runtime_error("cannot write " + tmp);
      });
    }
    std::fprintf(stderr, "%s %s: test %s = %s (valid %s) in %.0f s\n", method.c_str(),
                 arch.backbone.c_str(), dash::task::to_string(spec.metric).c_str(),
                 result["metric"].dump().c_str(), result["valid_metric"].dump().c_str(), wall);
    return 0;
  } catch (const po::error& e) {
    std::cerr << "dashnas-run: " << e.what() << "\n" << desc << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "dashnas-run: " << e.what() << "\n";
    return 1;
  }
}
