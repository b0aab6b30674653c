// One rank of a data-parallel run through the C ABI, as its own process
// (test_dist.cpp starts them):
//
//   dashnas_dist_child RANK WORLD PORT OUT_DIR [DIE_AT_EPOCH] [TIMEOUT_S] [CHECKPOINT_DIR [resume]]
//
// searches and retrains the support.h task with WORLD ranks meeting on
// 127.0.0.1:PORT (WORLD 1: alone, no distributed options at all), with one
// global batch of the whole train split, and writes OUT_DIR/rank<R>.json:
// {"search": status, "retrain": status, "message", "architecture",
// "outputs" (the model's outputs on the test inputs), "test_metric",
// "seconds"}. DIE_AT_EPOCH > 0: the process exits abruptly (_exit) in that
// epoch of the retrain (one step each), as a crashed rank would.
// CHECKPOINT_DIR: both calls checkpoint there (rank 0 writes), and with
// "resume" continue from what is there.

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "support.h"

namespace {

using nlohmann::json;
using namespace dash_test;

int64_t g_die_at = 0;

int maybe_die(const dash_progress* p, void*) {
  if (g_die_at > 0 && std::string(p->stage) == "retrain" && p->epoch >= g_die_at) _exit(9);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr,
                 "usage: dashnas_dist_child RANK WORLD PORT OUT_DIR [DIE_AT_EPOCH] [TIMEOUT_S] "
                 "[CHECKPOINT_DIR [resume]]\n");
    return 2;
  }
  const int rank = std::atoi(argv[1]), world = std::atoi(argv[2]);
  const std::string port = argv[3], out = argv[4];
  g_die_at = argc > 5 ? std::atoll(argv[5]) : 0;
  const std::string timeout = argc > 6 ? argv[6] : "60";
  const std::string checkpoints = argc > 7 ? argv[7] : "";
  const bool resume = argc > 8 && std::string(argv[8]) == "resume";
  const auto t0 = std::chrono::steady_clock::now();

  dash_task* task = make_task(96);  // 86 train rows after valid (10) is carved out
  // The whole train split is one step's batch, so that one rank and two
  // compute the same steps; warm-up and patience short enough that the
  // logits move and settle in the steps there are.
  json common = {{"threads", 1}, {"seed", 3}};
  if (world > 1) {
    common.update({{"world_size", world},
                   {"rank", rank},
                   {"init", "tcp://127.0.0.1:" + port},
                   {"dist_timeout_s", std::stod(timeout)},
                   {"batch_size_global", 86},
                   {"sync_batch_norm", true}});
  } else {
    common["batch_size"] = 86;
  }
  if (!checkpoints.empty()) common.update({{"checkpoint_dir", checkpoints}, {"resume", resume}});
  json search = common, retrain = common;
  search.update({{"epochs", 16}, {"hpo", false}, {"guard", false}, {"cost_model", "macs"},
                 {"warmup_steps", 2}, {"patience", 3}, {"kernel_sizes", {3, 7}}, {"dilations", {1, 3}}});
  retrain.update({{"epochs", 20}, {"lr", 0.05}});

  json result;
  dash_arch* arch = nullptr;
  dash_status s = dash_search(task, search.dump().c_str(), nullptr, nullptr, &arch);
  result["search"] = dash_status_name(s);
  if (s != DASH_OK) result["message"] = dash_last_error();
  dash_model* model = nullptr;
  if (s == DASH_OK) {
    char* text = nullptr;
    dash_arch_to_json(arch, &text);
    result["architecture"] = json::parse(take(text))["layers"];
    s = dash_retrain(task, arch, retrain.dump().c_str(), maybe_die, nullptr, &model);
    result["retrain"] = dash_status_name(s);
    if (s != DASH_OK) result["message"] = dash_last_error();
  }
  if (model != nullptr) {
    std::vector<float> x;
    std::vector<int64_t> y;
    make_clips(40, 2, &x, &y);  // the test split
    result["outputs"] = infer(model, x, 40);
    char* info = nullptr;
    dash_model_info(model, &info);
    result["test_metric"] = json::parse(take(info))["report"]["test_metric"];
    dash_model_free(model);
  }
  result["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  dash_arch_free(arch);
  dash_task_free(task);
  write_all(out + "/rank" + std::to_string(rank) + ".json", result.dump());
  return 0;
}
