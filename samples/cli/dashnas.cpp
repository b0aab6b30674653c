// dashnas: the command-line runner, a program on the C ABI like any user's.
//
//   dashnas --task spec.json --train-x X --train-y Y [--valid-x X --valid-y Y]
//           [--test-x X --test-y Y] [--method dash|backbone] [--budget SECONDS]
//           [--set key=value ...] [--out result.json] [--model model.dash]
//           [--work-dir DIR] [--resume] [--report report.html] [--list-options]
//   dashnas report RESULT.json [-o report.html]
//   dashnas export MODEL.dash [-o MODEL.onnx] [--opset N] [--fixed-batch N] [--no-normalize]
//
// Runs DASH (search, guard and hyperparameter grid, then retrain) or the plain
// backbone (k=3, d=1 everywhere, the same grid, then retrain), evaluates on
// test, and writes a JSON result. --budget is the whole run's wall-clock
// budget, loading the data included: dash_search may use 35% of it (with the default hpo_share, 15% for
// the search itself and 20% for the guard and grid trials; what it leaves,
// e.g. when the search settles early, goes to the retrain), the retrain the rest. --set key=value sets an option of
// dash_search and/or dash_retrain (whichever use it; --list-options shows them).
// Ctrl-C cancels cleanly at the next step; with --work-dir the run resumes
// from its last checkpoint with --resume. --report (or the report command, on
// a saved --out file) writes the run's report: one HTML page that opens
// offline (dash_report_html). The export command writes a saved model as an
// ONNX file for runtimes without LibTorch (dash_model_export_onnx).
//
// Data parallel (c10d): --nproc N starts N ranks of this same command on this
// machine (loopback, a free port, cores shared out unless threads is set) and
// waits for them; --rank R --world-size N --init tcp://HOST:PORT makes this
// process one rank of a run over several machines (start one per machine,
// rank 0 on HOST). Rank 0 writes --out, --model and --report; every rank
// prints its own progress, prefixed with its rank.

#include <dash/dash.h>

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }

// A failed C call: its status and the library's message.
struct Failure : std::runtime_error {
  Failure(dash_status s, const std::string& what) : std::runtime_error(what), status(s) {}
  dash_status status;
};

void check(dash_status s, const char* call) {
  if (s != DASH_OK) {
    throw Failure(s, std::string(call) + ": " + dash_status_name(s) + ": " + dash_last_error());
  }
}

std::string take_string(char* s) {
  std::string out = s ? s : "";
  dash_string_free(s);
  return out;
}

json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("cannot open " + path);
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw std::invalid_argument(path + " is not valid JSON: " + e.what());
  }
}

// Written whole or not at all: a temporary file renamed over `path`.
void write_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot write " + path);
}

std::string report_html(const std::string& run_json) {
  char* html = nullptr;
  check(dash_report_html(run_json.c_str(), &html), "dash_report_html");
  return take_string(html);
}

// The last warning a progress event carried (printed as it came).
std::string g_warned;
// "[rank R] " in a data-parallel run, "" alone.
std::string g_prefix;

// One line per epoch, and one every 10 s within long epochs; warnings as they come.
int print_progress(const dash_progress* e, void*) {
  static Clock::time_point last;
  const auto now = Clock::now();
  if (e->size >= offsetof(dash_progress, warning) + sizeof e->warning && e->warning != nullptr) {
    g_warned = e->warning;
    std::fprintf(stderr, "%swarning: %s\n", g_prefix.c_str(), e->warning);
  }
  if (e->step == 0) return g_interrupted ? 1 : 0;
  if (e->step == e->steps || now - last >= std::chrono::seconds(10)) {
    last = now;
    std::fprintf(stderr, "%s[%s] epoch %lld/%lld step %lld/%lld loss %.4f valid %.4f elapsed %.0fs eta %.0fs\n",
                 g_prefix.c_str(), e->stage, (long long)e->epoch, (long long)e->epochs, (long long)e->step,
                 (long long)e->steps, e->loss, e->metric, e->elapsed_s, e->eta_s);
  }
  return g_interrupted ? 1 : 0;
}

struct Args {
  std::map<std::string, std::string> files;  // "train-x" -> path, ...
  std::string task, method = "dash", out, model, work_dir, report;
  double budget = 0;
  bool resume = false, list = false, markdown = false;
  std::vector<std::string> sets;
  int nproc = 0;                      // --nproc: start this many local ranks
  int rank = 0, world_size = 1;       // --rank, --world-size
  std::string init;                   // --init
};

const char* kUsage =
    "usage: dashnas --task spec.json --train-x X --train-y Y [--valid-x X --valid-y Y]\n"
    "               [--test-x X --test-y Y] [--method dash|backbone] [--budget SECONDS]\n"
    "               [--set key=value ...] [--out result.json] [--model model.dash]\n"
    "               [--work-dir DIR] [--resume] [--report report.html]\n"
    "               [--list-options] [--options-markdown]\n"
    "               [--nproc N | --rank R --world-size N --init tcp://HOST:PORT]\n"
    "       dashnas report RESULT.json [-o report.html]\n"
    "       dashnas export MODEL.dash [-o MODEL.onnx] [--opset N] [--fixed-batch N] [--no-normalize]\n";

Args parse_args(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--task") a.task = value();
    else if (arg == "--method") a.method = value();
    else if (arg == "--budget") a.budget = std::stod(value());
    else if (arg == "--set") a.sets.push_back(value());
    else if (arg == "--out") a.out = value();
    else if (arg == "--model") a.model = value();
    else if (arg == "--work-dir") a.work_dir = value();
    else if (arg == "--report") a.report = value();
    else if (arg == "--resume") a.resume = true;
    else if (arg == "--list-options") a.list = true;
    else if (arg == "--options-markdown") a.list = a.markdown = true;
    else if (arg == "--nproc") a.nproc = std::stoi(value());
    else if (arg == "--rank") a.rank = std::stoi(value());
    else if (arg == "--world-size") a.world_size = std::stoi(value());
    else if (arg == "--init") a.init = value();
    else if (arg == "--train-x" || arg == "--train-y" || arg == "--valid-x" ||
             arg == "--valid-y" || arg == "--test-x" || arg == "--test-y") {
      a.files[arg.substr(2)] = value();
    } else {
      throw std::invalid_argument("unknown argument " + arg);
    }
  }
  if (a.list) return a;
  if (a.task.empty()) throw std::invalid_argument("--task is required");
  if (a.method != "dash" && a.method != "backbone") {
    throw std::invalid_argument("--method must be dash or backbone, got " + a.method);
  }
  if (a.resume && a.work_dir.empty()) throw std::invalid_argument("--resume needs --work-dir");
  if (a.nproc < 0 || a.nproc > 1024) throw std::invalid_argument("--nproc must be in 1..1024");
  if (a.nproc > 0 && (a.world_size != 1 || !a.init.empty())) {
    throw std::invalid_argument("--nproc starts its own ranks: give it without --rank, --world-size and --init");
  }
  if (a.world_size > 1 && a.init.empty()) throw std::invalid_argument("--world-size needs --init tcp://HOST:PORT");
  return a;
}

// --set key=value into the search, retrain and evaluate option objects, by
// each option's "used_by" in dash_options_describe.
void apply_sets(const Args& a, const json& described, json* search, json* retrain, json* evaluate) {
  for (const auto& s : a.sets) {
    const auto eq = s.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("--set needs key=value, got " + s);
    const std::string key = s.substr(0, eq);
    json value;
    try {
      value = json::parse(s.substr(eq + 1));
    } catch (const json::exception&) {
      value = s.substr(eq + 1);  // a bare string
    }
    if (!described.contains(key)) {
      throw std::invalid_argument("unknown option '" + key + "' (dashnas --list-options lists them)");
    }
    for (const auto& use : described[key]["used_by"]) {
      (use == "search" ? *search : use == "retrain" ? *retrain : *evaluate)[key] = value;
    }
  }
}

int run(const Args& a) {
  const json described = json::parse(take_string([] {
    char* s = nullptr;
    check(dash_options_describe(&s), "dash_options_describe");
    return s;
  }()));
  if (a.markdown) {  // the table README.md carries (a test keeps them equal)
    std::cout << "| option | type | default | used by | what it does |\n|---|---|---|---|---|\n";
    for (const auto& [name, d] : described.items()) {
      std::string used;
      for (const auto& u : d["used_by"]) used += (used.empty() ? "" : ", ") + u.get<std::string>();
      std::string help = d["help"].get<std::string>();
      if (d.contains("choices")) help += " (" + d["choices"].dump() + ")";
      std::cout << "| `" << name << "` | " << d["type"].get<std::string>() << " | `"
                << d["default"].dump() << "` | " << used << " | " << help << " |\n";
    }
    return 0;
  }
  if (a.list) {
    std::cout << described.dump(2) << "\n";
    return 0;
  }
  json search_opt = json::object(), retrain_opt = json::object(), evaluate_opt = json::object();
  apply_sets(a, described, &search_opt, &retrain_opt, &evaluate_opt);
  if (a.world_size > 1) {
    for (json* o : {&search_opt, &retrain_opt, &evaluate_opt}) {
      (*o)["world_size"] = a.world_size;
      (*o)["rank"] = a.rank;
      (*o)["init"] = a.init;
    }
    g_prefix = "[rank " + std::to_string(a.rank) + "] ";
  }
  const bool writes = a.rank == 0;  // rank 0 alone writes the run's files
  if (!a.work_dir.empty()) {
    search_opt["checkpoint_dir"] = retrain_opt["checkpoint_dir"] = a.work_dir;
    search_opt["resume"] = retrain_opt["resume"] = a.resume;
  }

  // The budget is the run's: loading the data counts inside it.
  const auto t0 = Clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  const json spec = read_json_file(a.task);
  dash_task* task = nullptr;
  check(dash_task_create(spec.dump().c_str(), &task), "dash_task_create");
  std::unique_ptr<dash_task, void (*)(dash_task*)> task_guard(task, dash_task_free);
  const std::pair<const char*, dash_split> splits[] = {
      {"train", DASH_SPLIT_TRAIN}, {"valid", DASH_SPLIT_VALID}, {"test", DASH_SPLIT_TEST}};
  for (const auto& [name, split] : splits) {
    const std::string x = a.files.count(std::string(name) + "-x") ? a.files.at(std::string(name) + "-x") : "";
    const std::string y = a.files.count(std::string(name) + "-y") ? a.files.at(std::string(name) + "-y") : "";
    if (x.empty() && y.empty()) continue;
    if (x.empty() || y.empty()) {
      throw std::invalid_argument(std::string(name) + " needs both --" + name + "-x and --" + name + "-y");
    }
    check(dash_task_load_files(task, split, x.c_str(), y.c_str()), "dash_task_load_files");
  }
  int64_t n_train = 0, n_test = 0;
  check(dash_task_split_size(task, DASH_SPLIT_TRAIN, &n_train), "dash_task_split_size");
  check(dash_task_split_size(task, DASH_SPLIT_TEST, &n_test), "dash_task_split_size");
  std::fprintf(stderr, "%sdashnas %s: %s, %lld train and %lld test samples, method %s, budget %.0f s\n",
               g_prefix.c_str(), dash_version(), spec.value("kind", "?").c_str(), (long long)n_train,
               (long long)n_test, a.method.c_str(), a.budget);

  const double load_s = seconds();
  dash_arch* arch = nullptr;
  double search_s = 0;
  // Both methods go through dash_search with the same budget: the backbone
  // skips the architecture search but gets the same hyperparameter grid.
  if (a.method == "backbone") search_opt["arch_search"] = false;
  if (a.budget > 0) search_opt["time_budget_s"] = std::max(1.0, 0.35 * a.budget - load_s);
  check(dash_search(task, search_opt.dump().c_str(), print_progress, nullptr, &arch), "dash_search");
  search_s = seconds() - load_s;
  std::unique_ptr<dash_arch, void (*)(dash_arch*)> arch_guard(arch, dash_arch_free);
  char* arch_text = nullptr;
  check(dash_arch_to_json(arch, &arch_text), "dash_arch_to_json");
  const json arch_json = json::parse(take_string(arch_text));
  std::fprintf(stderr, "%sarchitecture: %s\n", g_prefix.c_str(), arch_json["layers"].dump().c_str());

  if (a.budget > 0) retrain_opt["time_budget_s"] = std::max(1.0, a.budget - seconds());
  dash_model* model = nullptr;
  const double retrain_start = seconds();
  check(dash_retrain(task, arch, retrain_opt.dump().c_str(), print_progress, nullptr, &model),
        "dash_retrain");
  std::unique_ptr<dash_model, void (*)(dash_model*)> model_guard(model, dash_model_free);
  const double retrain_s = seconds() - retrain_start;
  const double wall = seconds();

  json result = {{"task", spec},
                 {"method", a.method},
                 {"architecture", json{{"backbone", arch_json["backbone"]}, {"layers", arch_json["layers"]}}},
                 {"hyperparameters", arch_json["hyperparameters"]},
                 {"wall_s", wall},
                 {"load_s", load_s},
                 {"search_s", search_s},
                 {"retrain_s", retrain_s},
                 {"budget_s", a.budget},
                 {"commit", std::getenv("DASH_COMMIT") ? std::getenv("DASH_COMMIT") : "unknown"},
                 {"library_version", dash_version()},
                 {"search_options", search_opt},
                 {"retrain_options", retrain_opt}};
  char* info = nullptr;
  check(dash_model_info(model, &info), "dash_model_info");
  result["training"] = json::parse(take_string(info))["report"];
  const json& retrained = result["training"];
  // The report's warning, unless the progress events said it already (it can
  // also hold what came later: a test pass the budget cut short).
  if (retrained.contains("retrain") && retrained["retrain"].value("warning", json()).is_string() &&
      retrained["retrain"]["warning"].get<std::string>() != g_warned) {
    std::fprintf(stderr, "%swarning: %s\n", g_prefix.c_str(),
                 retrained["retrain"]["warning"].get<std::string>().c_str());
  }
  if (retrained.contains("pos_weight")) {
    std::fprintf(stderr, "%spos_weight %.4g from the train split\n", g_prefix.c_str(),
                 retrained["pos_weight"]["value"].get<double>());
  }
  if (n_test > 0 && retrained.contains("test_metric") && retrained["test_metric"].is_number()) {
    // The retrain scored test once, inside its budget: no second pass.
    result["metric_name"] = retrained["metric_name"];
    result["metric"] = retrained["test_metric"];
    result["higher_is_better"] = retrained["higher_is_better"];
    std::fprintf(stderr, "%s%s: test %s = %s in %.0f s\n", g_prefix.c_str(), a.method.c_str(),
                 retrained["metric_name"].get<std::string>().c_str(), result["metric"].dump().c_str(), wall);
  } else if (n_test > 0) {
    // Every rank takes this branch (the ranks' reports agree) and scores its
    // share of test.
    char* report = nullptr;
    check(dash_evaluate_with(model, task, DASH_SPLIT_TEST, evaluate_opt.dump().c_str(), &report),
          "dash_evaluate_with");
    const json r = json::parse(take_string(report));
    result["metric_name"] = r["metric_name"];
    result["metric"] = r["metric"];
    result["higher_is_better"] = r["higher_is_better"];
    std::fprintf(stderr, "%s%s: test %s = %s in %.0f s\n", g_prefix.c_str(), a.method.c_str(),
                 r["metric_name"].get<std::string>().c_str(), r["metric"].dump().c_str(), wall);
  }
  if (!writes) return 0;
  if (!a.model.empty()) check(dash_model_save(model, a.model.c_str()), "dash_model_save");
  const std::string text = result.dump(2);
  if (a.out.empty()) {
    std::cout << text << "\n";
  } else {
    write_file(a.out, text + "\n");
  }
  if (!a.report.empty()) {
    write_file(a.report, report_html(text));
    std::fprintf(stderr, "report: %s\n", a.report.c_str());
  }
  return 0;
}

// dashnas report RESULT.json [-o report.html]
int report_command(int argc, char** argv) {
  std::string in, out;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "-o" || arg == "--out") && i + 1 < argc) out = argv[++i];
    else if (in.empty() && arg[0] != '-') in = arg;
    else throw std::invalid_argument("report: unexpected argument " + arg);
  }
  if (in.empty()) throw std::invalid_argument("report needs a result file: dashnas report RESULT.json [-o report.html]");
  if (out.empty()) {
    const bool json_ext = in.size() > 5 && in.compare(in.size() - 5, 5, ".json") == 0;
    out = (json_ext ? in.substr(0, in.size() - 5) : in) + ".html";
  }
  write_file(out, report_html(read_json_file(in).dump()));
  std::printf("report: %s\n", out.c_str());
  return 0;
}

// dashnas export MODEL.dash [-o MODEL.onnx] [--opset N] [--fixed-batch N] [--no-normalize]
int export_command(int argc, char** argv) {
  std::string in, out;
  json options = json::object();
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto number = [&]() {
      if (i + 1 >= argc) throw std::invalid_argument("export: " + arg + " needs a number");
      const std::string v = argv[++i];
      size_t used = 0;
      const long n = std::stol(v, &used);
      if (used != v.size()) throw std::invalid_argument("export: " + arg + " needs a number, got " + v);
      return n;
    };
    if ((arg == "-o" || arg == "--out") && i + 1 < argc) out = argv[++i];
    else if (arg == "--opset") options["opset"] = number();
    else if (arg == "--fixed-batch") options["dynamic_batch"] = false, options["batch_size"] = number();
    else if (arg == "--no-normalize") options["normalize_input"] = false;
    else if (in.empty() && arg[0] != '-') in = arg;
    else throw std::invalid_argument("export: unexpected argument " + arg);
  }
  if (in.empty()) throw std::invalid_argument("export needs a model file: dashnas export MODEL.dash [-o MODEL.onnx]");
  if (out.empty()) {
    const bool dash_ext = in.size() > 5 && in.compare(in.size() - 5, 5, ".dash") == 0;
    out = (dash_ext ? in.substr(0, in.size() - 5) : in) + ".onnx";
  }
  dash_model* model = nullptr;
  check(dash_model_load(in.c_str(), &model), "dash_model_load");
  const std::unique_ptr<dash_model, void (*)(dash_model*)> owned(model, dash_model_free);
  check(dash_model_export_onnx(model, out.c_str(), options.dump().c_str()), "dash_model_export_onnx");
  std::printf("onnx: %s\n", out.c_str());
  return 0;
}

// A TCP port free on the loopback interface now (bound, read back, released).
int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  if (fd >= 0) ::close(fd);
  if (!ok) throw std::runtime_error("--nproc: cannot find a free loopback port");
  return ntohs(addr.sin_port);
}

// --nproc N: this command N times as ranks 0..N-1 on loopback. Ctrl-C (or a
// rank that fails) stops them all; the exit status is the first failure's.
int run_local_ranks(int argc, char** argv, const Args& a) {
  const std::string init = "tcp://127.0.0.1:" + std::to_string(free_loopback_port());
  bool threads_set = false;
  for (const auto& s : a.sets) threads_set = threads_set || s.rfind("threads=", 0) == 0;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::vector<pid_t> ranks;
  for (int r = 0; r < a.nproc; ++r) {
    std::vector<std::string> args;
    for (int i = 0; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--nproc") {
        ++i;  // and its value
        continue;
      }
      args.push_back(arg);
    }
    for (const std::string& extra : {std::string("--rank"), std::to_string(r), std::string("--world-size"),
                                     std::to_string(a.nproc), std::string("--init"), init}) {
      args.push_back(extra);
    }
    if (!threads_set) {
      args.push_back("--set");
      args.push_back("threads=" + std::to_string(std::max(1u, cores / static_cast<unsigned>(a.nproc))));
    }
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("--nproc: cannot start rank " + std::to_string(r));
    if (pid == 0) {
      std::vector<char*> cargs;
      for (auto& s : args) cargs.push_back(s.data());
      cargs.push_back(nullptr);
      ::execv("/proc/self/exe", cargs.data());
      std::perror("dashnas --nproc: exec");
      ::_exit(127);
    }
    ranks.push_back(pid);
  }
  int status_out = 0;
  size_t running = ranks.size();
  bool stopping = false, forwarded = false;
  while (running > 0) {
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done < 0) break;
    if (done == 0) {
      // Ctrl-C or SIGTERM reached this process: hand it to every rank once
      // (each stops at its next step; from a terminal they have it already).
      if (g_interrupted && !forwarded) {
        for (pid_t p : ranks) ::kill(p, SIGINT);
        forwarded = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    --running;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && status_out == 0) status_out = code;
    if (code != 0 && !stopping) {
      // One rank failed: the others would wait for it until dist_timeout_s.
      stopping = true;
      for (pid_t p : ranks) {
        if (p != done) ::kill(p, SIGTERM);
      }
    }
  }
  return status_out;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    if (argc > 1 && std::string(argv[1]) == "report") return report_command(argc, argv);
    if (argc > 1 && std::string(argv[1]) == "export") return export_command(argc, argv);
    const Args args = parse_args(argc, argv);
    if (args.nproc > 0) return run_local_ranks(argc, argv, args);
    return run(args);
  } catch (const Failure& f) {
    std::fprintf(stderr, "%sdashnas: %s\n", g_prefix.c_str(), f.what());
    if (f.status == DASH_CANCELLED) {
      std::fprintf(stderr, "%sdashnas: interrupted; rerun with --resume to continue\n", g_prefix.c_str());
    }
    return f.status == DASH_CANCELLED ? 130 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dashnas: %s\n%s", e.what(), kUsage);
    return 2;
  }
}
