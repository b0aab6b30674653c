// Data-parallel runs through the C ABI: ranks as processes (dist_child.cpp)
// and as threads of this process, on loopback, ports picked free at run time.

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <thread>

#include <nlohmann/json.hpp>

#include "support.h"
#include "support/free_port.h"

namespace {

using nlohmann::json;
using namespace dash_test;

// Whether this build takes world_size > 1 (not without Gloo's headers).
bool distributed_build() {
  dash_task* task = make_task();
  dash_arch* arch = nullptr;
  const dash_status s = dash_search(
      task, R"({"world_size": 2, "rank": 0, "init": "tcp://127.0.0.1:1", "dist_timeout_s": 0.2, "epochs": 1})",
      nullptr, nullptr, &arch);
  dash_arch_free(arch);
  dash_task_free(task);
  return s != DASH_UNSUPPORTED;
}

#define SKIP_WITHOUT_GLOO() \
  if (!distributed_build()) GTEST_SKIP() << "built without Gloo's headers (libgloo-dev)"

pid_t start_rank(int rank, int world, int port, const std::string& dir, int die_at = 0, double timeout_s = 60,
                 const std::string& checkpoints = "", bool resume = false) {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string r = std::to_string(rank), w = std::to_string(world), p = std::to_string(port),
                      d = std::to_string(die_at), t = std::to_string(timeout_s);
    execl(DASH_DIST_CHILD, DASH_DIST_CHILD, r.c_str(), w.c_str(), p.c_str(), dir.c_str(), d.c_str(), t.c_str(),
          checkpoints.c_str(), resume ? "resume" : "", static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

json finish(pid_t pid, const std::string& dir, int rank) {
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string text = read_all(dir + "/rank" + std::to_string(rank) + ".json");
  return text.empty() ? json{{"exit", status}} : json::parse(text);
}

std::string fresh_dir(const std::string& name) {
  const std::string dir = scratch(name);
  mkdir(dir.c_str(), 0755);
  return dir;
}

double max_difference(const json& a, const json& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i].get<double>() - b[i].get<double>()));
  return worst;
}

// Two processes of one global batch search the same architecture and train
// a model whose outputs equal one process's (within float tolerance), and
// are identical to each other's.
TEST(Distributed, TwoProcessesSearchAndRetrainAsOne) {
  SKIP_WITHOUT_GLOO();
  const std::string one = fresh_dir("dist_one"), two = fresh_dir("dist_two");
  const pid_t alone = start_rank(0, 1, 0, one);
  const int port = dash_test::free_loopback_port();
  const pid_t r0 = start_rank(0, 2, port, two), r1 = start_rank(1, 2, port, two);
  const json a = finish(alone, one, 0), b0 = finish(r0, two, 0), b1 = finish(r1, two, 1);
  for (const json* r : {&a, &b0, &b1}) {
    ASSERT_EQ(r->value("retrain", ""), "DASH_OK") << r->dump();
  }
  EXPECT_EQ(b0["architecture"], b1["architecture"]);
  EXPECT_EQ(b0["outputs"], b1["outputs"]);  // the ranks hold the same model
  EXPECT_EQ(b0["test_metric"], b1["test_metric"]);
  EXPECT_EQ(a["architecture"], b0["architecture"]);
  EXPECT_GT(a["test_metric"].get<double>(), 0.7);  // a model that learnt: its outputs differ by input
  EXPECT_LT(max_difference(a["outputs"], b0["outputs"]), 1e-3) << a["outputs"] << "\n" << b0["outputs"];
}

// A rank that crashes mid-retrain: the other returns DASH_IO_ERROR within
// dist_timeout_s, saying what happened, and does not hang.
TEST(Distributed, ARankThatDiesFailsTheOtherWithinTheTimeout) {
  SKIP_WITHOUT_GLOO();
  const std::string dir = fresh_dir("dist_die");
  const int port = dash_test::free_loopback_port();
  const pid_t r0 = start_rank(0, 2, port, dir, 0, 10), r1 = start_rank(1, 2, port, dir, 3, 10);
  const json b0 = finish(r0, dir, 0);
  int status = 0;
  waitpid(r1, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 9);  // it did die
  EXPECT_EQ(b0.value("retrain", ""), "DASH_IO_ERROR") << b0.dump();
  EXPECT_NE(b0.value("message", "").find("rank 0 of 2"), std::string::npos) << b0.dump();
  EXPECT_LT(b0["seconds"].get<double>(), 60.0) << b0.dump();
}

// A run that lost a rank mid-retrain starts again with the same world size
// and resume: it goes on from rank 0's last checkpoint and ends with the
// model an uninterrupted run trains, on both ranks.
TEST(Distributed, ARunThatLostARankResumesToTheUninterruptedModel) {
  SKIP_WITHOUT_GLOO();
  auto run = [](const std::string& name, const std::string& checkpoints, int die_at, bool resume) {
    const std::string dir = fresh_dir(name);
    const int port = dash_test::free_loopback_port();
    const pid_t r0 = start_rank(0, 2, port, dir, 0, 10, checkpoints, resume);
    const pid_t r1 = start_rank(1, 2, port, dir, die_at, 10, checkpoints, resume);
    std::vector<json> ranks{finish(r0, dir, 0), finish(r1, dir, 1)};
    return ranks;
  };
  const auto straight = run("dist_straight", fresh_dir("dist_straight_ckpt"), 0, false);
  const std::string checkpoints = fresh_dir("dist_resume_ckpt");
  const auto broken = run("dist_broken", checkpoints, 10, false);
  ASSERT_EQ(broken[0].value("retrain", ""), "DASH_IO_ERROR") << broken[0].dump();
  const auto resumed = run("dist_resumed", checkpoints, 0, true);
  for (const auto* r : {&straight[0], &straight[1], &resumed[0], &resumed[1]}) {
    ASSERT_EQ(r->value("retrain", ""), "DASH_OK") << r->dump();
  }
  EXPECT_EQ(resumed[0]["architecture"], straight[0]["architecture"]);
  EXPECT_EQ(resumed[0]["outputs"], resumed[1]["outputs"]);
  EXPECT_LT(max_difference(resumed[0]["outputs"], straight[0]["outputs"]), 1e-5)
      << resumed[0]["outputs"] << "\n" << straight[0]["outputs"];
}

// A rank that never comes: rank 0 returns DASH_IO_ERROR naming it.
TEST(Distributed, ARankThatNeverJoinsIsNamed) {
  SKIP_WITHOUT_GLOO();
  const std::string dir = fresh_dir("dist_alone");
  const json b0 = finish(start_rank(0, 2, dash_test::free_loopback_port(), dir, 0, 3), dir, 0);
  EXPECT_EQ(b0.value("search", ""), "DASH_IO_ERROR") << b0.dump();
  EXPECT_NE(b0.value("message", "").find("rank 1 did not join"), std::string::npos) << b0.dump();
  EXPECT_LT(b0["seconds"].get<double>(), 30.0);
}

// Two ranks as threads of one process, through the C ABI: the same
// architecture and identical models on both.
TEST(Distributed, TwoThreadsSearchAndRetrainTogether) {
  SKIP_WITHOUT_GLOO();
  const int port = dash_test::free_loopback_port();
  std::vector<std::string> arch(2);
  std::vector<std::vector<float>> outputs(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] {
      const std::string dist = R"("world_size": 2, "rank": )" + std::to_string(r) +
                               R"(, "init": "tcp://127.0.0.1:)" + std::to_string(port) + R"(", "threads": 1)";
      dash_task* task = make_task();
      dash_arch* a = nullptr;
      dash_model* model = nullptr;
      if (dash_search(task, ("{" + dist + R"(, "epochs": 2, "batch_size": 16})").c_str(), nullptr, nullptr, &a) !=
              DASH_OK ||
          dash_retrain(task, a, ("{" + dist + R"(, "epochs": 2, "batch_size": 16})").c_str(), nullptr, nullptr,
                       &model) != DASH_OK) {
        errors[static_cast<size_t>(r)] = dash_last_error();
      } else {
        char* text = nullptr;
        dash_arch_to_json(a, &text);
        arch[static_cast<size_t>(r)] = take(text);
        std::vector<float> x;
        std::vector<int64_t> y;
        make_clips(40, 2, &x, &y);
        outputs[static_cast<size_t>(r)] = infer(model, x, 40);
      }
      dash_model_free(model);
      dash_arch_free(a);
      dash_task_free(task);
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_EQ(arch[0], arch[1]);
  EXPECT_EQ(outputs[0], outputs[1]);
}

// --- The grid spread over ranks ------------------------------------------------

// The plain backbone's grid (no architecture search: the grid starts at its
// first point) on 96 train and 120 valid clips, rank `rank` of `world` given
// rows [rank, rank + 1) / world of each (its own shard, data_sharded), one
// global batch of the whole train split; then one retrain step from the
// grid's trained trial. Returns {"search": the search's report, "outputs":
// the model's outputs on 8 other clips}, or {"error": ...}.
json grid_run(int world, int rank, int port, const std::string& spread, const std::string& grid = "small") {
  std::vector<float> x, vx, probe;
  std::vector<int64_t> y, vy, unused;
  make_clips(96, 1, &x, &y);
  make_clips(120, 5, &vx, &vy);
  make_clips(8, 6, &probe, &unused);
  for (size_t i = 0; i < vy.size(); i += 10) vy[i] = 1 - vy[i];  // no trial scores valid perfectly
  // (AUROC: trials that classify alike still rank valid differently.)
  dash_task* task = nullptr;
  EXPECT_EQ(dash_task_create(R"({"kind": "classification", "input_shape": [1, 32], "num_classes": 2,
                                 "metric": "macro_auroc"})",
                             &task),
            DASH_OK)
      << dash_last_error();
  const int64_t t0 = 96 * rank / world, t1 = 96 * (rank + 1) / world;
  const int64_t v0 = 120 * rank / world, v1 = 120 * (rank + 1) / world;
  EXPECT_EQ(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data() + t0 * kLen, y.data() + t0, t1 - t0), DASH_OK);
  EXPECT_EQ(dash_task_set_data(task, DASH_SPLIT_VALID, vx.data() + v0 * kLen, vy.data() + v0, v1 - v0), DASH_OK);
  json common = {{"threads", 1}, {"seed", 3}};
  if (world > 1) {
    common.update({{"world_size", world}, {"rank", rank}, {"init", "tcp://127.0.0.1:" + std::to_string(port)},
                   {"data_sharded", true}, {"batch_size_global", 96}, {"sync_batch_norm", true}});
  } else {
    common["batch_size"] = 96;
  }
  json search = common, retrain = common;
  search.update({{"arch_search", false}, {"hpo_grid", grid}, {"hpo_epochs", 12}});
  if (world > 1) search["grid_spread"] = spread;
  retrain.update({{"epochs", 1}, {"lr", 0.01}});
  dash_arch* arch = nullptr;
  dash_model* model = nullptr;
  json out;
  if (dash_search(task, search.dump().c_str(), nullptr, nullptr, &arch) != DASH_OK ||
      dash_retrain(task, arch, retrain.dump().c_str(), nullptr, nullptr, &model) != DASH_OK) {
    out = {{"error", dash_last_error()}};
  } else {
    char* text = nullptr;
    EXPECT_EQ(dash_arch_info(arch, &text), DASH_OK);
    out["search"] = json::parse(take(text))["report"]["search"];
    out["outputs"] = infer(model, probe, 8);
  }
  dash_model_free(model);
  dash_arch_free(arch);
  dash_task_free(task);
  return out;
}

std::vector<json> grid_on_two_ranks(const std::string& spread, const std::string& grid = "small") {
  const int port = dash_test::free_loopback_port();
  std::vector<json> runs(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back([&, r] { runs[static_cast<size_t>(r)] = grid_run(2, r, port, spread, grid); });
  }
  for (auto& t : ranks) t.join();
  return runs;
}

// Two ranks spread the grid ("always"): its first two points at once, one on
// each rank, over both ranks' rows at the global batch. Each point trains
// and scores as it does in one process given all the rows, the ranks replay
// the one-process decisions, so they choose what one process chooses, and
// the chosen trial's weights reach every rank (the retrain starts from them:
// its model is one process's). "auto" spreads the same first round (its
// change of learning rate is the grid's first, which only records the best)
// and would not spread points 1 and 2 (the early stop may fall between
// them: Search.GridSpreadsOnlyRoundsOneProcessWouldRunWhole); point 2, alone
// after the round, runs data-parallel, and the choice is the same.
TEST(Distributed, TwoRanksSpreadTheGridAndChooseAsOneProcess) {
  SKIP_WITHOUT_GLOO();
  const json alone = grid_run(1, 0, 0, "");
  ASSERT_FALSE(alone.contains("error")) << alone;
  const std::vector<json> spread = grid_on_two_ranks("always");
  for (const auto& r : spread) ASSERT_FALSE(r.contains("error")) << r;
  const json& one = alone["search"]["hpo"];
  const json& two = spread[0]["search"]["hpo"];
  const json& other = spread[1]["search"]["hpo"];
  EXPECT_EQ(two["chosen"], other["chosen"]);
  EXPECT_EQ(two["chosen"], one["chosen"]) << "one process:\n" << one.dump(1) << "\ntwo ranks:\n" << two.dump(1);
  EXPECT_EQ(two["spread_rounds"], 1);
  ASSERT_EQ(two["trials"].size(), one["trials"].size()) << two["trials"] << "\n" << one["trials"];
  ASSERT_EQ(other["trials"].size(), one["trials"].size());
  for (size_t i = 0; i < one["trials"].size(); ++i) {
    const json &a = one["trials"][i], &b = two["trials"][i];
    EXPECT_EQ(b["hp"], a["hp"]);
    EXPECT_EQ(b["steps"], a["steps"]);
    EXPECT_NEAR(b["valid_metric"].get<double>(), a["valid_metric"].get<double>(), 1e-6) << i;
    for (const char* key : {"hp", "steps", "valid_metric", "rank"}) {  // every rank reports every point alike
      EXPECT_EQ(other["trials"][i].value(key, json()), b.value(key, json())) << key;
    }
    if (i < 2) EXPECT_EQ(b["rank"], static_cast<int>(i));  // the first round: point i on rank i
  }
  // The first two points score differently (else the test decides nothing).
  EXPECT_NE(two["trials"][0]["valid_metric"], two["trials"][1]["valid_metric"]) << one.dump(1);
  EXPECT_EQ(spread[0]["outputs"], spread[1]["outputs"]);
  EXPECT_LT(max_difference(alone["outputs"], spread[0]["outputs"]), 1e-3)
      << alone["outputs"] << "\n" << spread[0]["outputs"];

  const std::vector<json> together = grid_on_two_ranks("auto");
  for (const auto& r : together) ASSERT_FALSE(r.contains("error")) << r;
  EXPECT_EQ(together[0]["search"]["hpo"]["chosen"], one["chosen"]);
  const json& auto_hpo = together[0]["search"]["hpo"];
  EXPECT_EQ(auto_hpo["spread_rounds"], 1);
  ASSERT_EQ(auto_hpo["trials"].size(), one["trials"].size());
  for (size_t i = 0; i < auto_hpo["trials"].size(); ++i) {
    const json& t = auto_hpo["trials"][i];
    EXPECT_FALSE(t.contains("discarded")) << t;
    if (i < 2) EXPECT_EQ(t["rank"], static_cast<int>(i)) << t;
    else EXPECT_FALSE(t.contains("rank")) << t;
  }
}

// "auto" spreads DASH's grid by its learning rates' groups of 8: the
// guard-less grid's first 8 points (lr 0.1) in 4 rounds, point 2k on rank 0
// and 2k + 1 on rank 1, and the ranks agree on the choice.
TEST(Distributed, TwoRanksSpreadEachLearningRatesGroup) {
  SKIP_WITHOUT_GLOO();
  const std::vector<json> runs = grid_on_two_ranks("auto", "dash");
  for (const auto& r : runs) ASSERT_FALSE(r.contains("error")) << r;
  const json& hpo = runs[0]["search"]["hpo"];
  EXPECT_EQ(hpo["chosen"], runs[1]["search"]["hpo"]["chosen"]);
  EXPECT_GE(hpo["spread_rounds"].get<int>(), 4);
  ASSERT_GE(hpo["trials"].size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(hpo["trials"][i]["rank"], static_cast<int>(i % 2)) << i;
    EXPECT_EQ(hpo["trials"][i]["hp"]["lr"], 0.1) << i;
    EXPECT_FALSE(hpo["trials"][i].contains("discarded")) << i;
  }
}

// --- dash_evaluate_with over ranks ----------------------------------------------

const char* const kAurocSpec =
    R"({"kind": "classification", "input_shape": [1, 32], "num_classes": 2, "metric": "macro_auroc"})";

// A model of `spec` trained for a few steps in this process alone (the plain
// backbone: no search needed to have something to score).
dash_model* small_model(const char* spec) {
  dash_task* task = nullptr;
  EXPECT_EQ(dash_task_create(spec, &task), DASH_OK) << dash_last_error();
  std::vector<float> x;
  std::vector<int64_t> y;
  make_clips(96, 1, &x, &y);
  EXPECT_EQ(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), y.data(), 96), DASH_OK) << dash_last_error();
  dash_arch* arch = nullptr;
  dash_model* model = nullptr;
  EXPECT_EQ(dash_arch_plain(task, &arch), DASH_OK) << dash_last_error();
  EXPECT_EQ(dash_retrain(task, arch, R"({"epochs": 2, "threads": 1, "batch_size": 16})", nullptr, nullptr, &model),
            DASH_OK)
      << dash_last_error();
  dash_arch_free(arch);
  dash_task_free(task);
  return model;
}

// A task of `spec` whose test split holds rows [from, to) of 41 clips that
// no model here trained on, every fifth label flipped: no model scores them
// perfectly, so the AUROC of all rows is not the mean of its parts'.
dash_task* test_rows(const char* spec, int64_t from, int64_t to) {
  std::vector<float> x;
  std::vector<int64_t> y;
  make_clips(41, 7, &x, &y);
  for (size_t i = 0; i < y.size(); i += 5) y[i] = 1 - y[i];
  dash_task* task = nullptr;
  EXPECT_EQ(dash_task_create(spec, &task), DASH_OK) << dash_last_error();
  EXPECT_EQ(dash_task_set_data(task, DASH_SPLIT_TEST, x.data() + from * kLen, y.data() + from, to - from), DASH_OK)
      << dash_last_error();
  return task;
}

struct RankResult {
  dash_status status = DASH_INTERNAL;
  std::string text;  // the report, or the message
  double seconds = 0;
};

// dash_evaluate_with of test on one thread per task, rank r scoring tasks[r]
// with the data-parallel options plus `extra` (a ", key: value" tail).
std::vector<RankResult> evaluate_on_ranks(const dash_model* model, const std::vector<const dash_task*>& tasks,
                                          const std::string& extra) {
  const int port = dash_test::free_loopback_port();
  const int world = static_cast<int>(tasks.size());
  std::vector<RankResult> results(tasks.size());
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.emplace_back([&, r] {
      const std::string options = R"({"world_size": )" + std::to_string(world) + R"(, "rank": )" +
                                  std::to_string(r) + R"(, "init": "tcp://127.0.0.1:)" + std::to_string(port) +
                                  R"(", "threads": 1)" + extra + "}";
      RankResult& out = results[static_cast<size_t>(r)];
      const auto t0 = std::chrono::steady_clock::now();
      char* report = nullptr;
      out.status = dash_evaluate_with(model, tasks[static_cast<size_t>(r)], DASH_SPLIT_TEST, options.c_str(), &report);
      out.text = out.status == DASH_OK ? take(report) : std::string(dash_last_error());
      out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    });
  }
  for (auto& t : ranks) t.join();
  return results;
}

// The ranks' reports agree with each other exactly (apart from the rank
// each names), say how they ran, and score what one process scores alone
// over the whole split.
void expect_scored_as_one(const std::vector<RankResult>& ranks, const json& alone, bool sharded) {
  ASSERT_EQ(ranks.size(), 2u);
  for (const auto& r : ranks) ASSERT_EQ(r.status, DASH_OK) << r.text;
  json r0 = json::parse(ranks[0].text), r1 = json::parse(ranks[1].text);
  EXPECT_EQ(r0["distributed"], (json{{"world_size", 2}, {"rank", 0}, {"backend", "gloo"}, {"data_sharded", sharded}}));
  EXPECT_EQ(r1["distributed"]["rank"], 1);
  r1["distributed"]["rank"] = 0;
  EXPECT_EQ(r0, r1);  // the same numbers, to the bit, on both ranks
  EXPECT_EQ(r0["samples"], alone["samples"]);
  EXPECT_EQ(r0["split"], alone["split"]);
  EXPECT_EQ(r0["metric_name"], alone["metric_name"]);
  EXPECT_NEAR(r0["metric"].get<double>(), alone["metric"].get<double>(), 1e-6) << r0 << "\n" << alone;
  EXPECT_NEAR(r0["loss"].get<double>(), alone["loss"].get<double>(), 1e-5 * std::abs(alone["loss"].get<double>()))
      << r0 << "\n" << alone;
}

// Two ranks given the whole split, each scoring every other row (41 rows:
// 21 and 20), report what one process scores over all of it. The metric is
// macro AUROC, which ranks every row against every other: the ranks must
// score their rows together, not average their own AUROCs.
TEST(Distributed, TwoRanksEvaluateTheWholeSplitAsOneProcess) {
  SKIP_WITHOUT_GLOO();
  dash_model* model = small_model(kAurocSpec);
  ASSERT_NE(model, nullptr);
  dash_task* whole = test_rows(kAurocSpec, 0, 41);
  char* text = nullptr;
  ASSERT_OK(dash_evaluate(model, whole, DASH_SPLIT_TEST, &text));
  const json alone = json::parse(take(text));
  ASSERT_EQ(alone["samples"], 41);
  ASSERT_EQ(alone["metric_name"], "macro_auroc");
  expect_scored_as_one(evaluate_on_ranks(model, {whole, whole}, ""), alone, false);
  dash_task_free(whole);
  dash_model_free(model);
}

// data_sharded: each rank is given its own rows (21 and 20) as its own task.
TEST(Distributed, TwoRanksEvaluateTheirOwnRowsAsOneProcess) {
  SKIP_WITHOUT_GLOO();
  dash_model* model = small_model(kAurocSpec);
  ASSERT_NE(model, nullptr);
  dash_task* whole = test_rows(kAurocSpec, 0, 41);
  dash_task* first = test_rows(kAurocSpec, 0, 21);
  dash_task* second = test_rows(kAurocSpec, 21, 41);
  auto metric_of = [&](const dash_task* t) {
    char* text = nullptr;
    EXPECT_EQ(dash_evaluate(model, t, DASH_SPLIT_TEST, &text), DASH_OK) << dash_last_error();
    return json::parse(take(text));
  };
  const json alone = metric_of(whole);
  // (What averaging each rank's own AUROC would give is another number.)
  EXPECT_GT(std::abs((metric_of(first)["metric"].get<double>() + metric_of(second)["metric"].get<double>()) / 2 -
                     alone["metric"].get<double>()),
            1e-4);
  expect_scored_as_one(evaluate_on_ranks(model, {first, second}, R"(, "data_sharded": true)"), alone, true);
  for (dash_task* t : {whole, first, second}) dash_task_free(t);
  dash_model_free(model);
}

// A rank that never comes: the other returns DASH_IO_ERROR naming it within
// dist_timeout_s; ranks given different splits (each its own, without
// data_sharded) are both refused, saying why.
TEST(Distributed, AnEvaluationWithoutItsOtherRankOrItsRowsFails) {
  SKIP_WITHOUT_GLOO();
  dash_model* model = small_model(kSpec);
  ASSERT_NE(model, nullptr);
  dash_task* first = test_rows(kSpec, 0, 21);
  dash_task* second = test_rows(kSpec, 21, 41);
  char* report = nullptr;
  const std::string alone = R"({"world_size": 2, "rank": 0, "init": "tcp://127.0.0.1:)" +
                            std::to_string(dash_test::free_loopback_port()) + R"(", "dist_timeout_s": 2})";
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_STATUS(dash_evaluate_with(model, first, DASH_SPLIT_TEST, alone.c_str(), &report), DASH_IO_ERROR,
                "rank 1 did not join");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 20.0);
  EXPECT_EQ(report, nullptr);
  for (const auto& r : evaluate_on_ranks(model, {first, second}, "")) {
    EXPECT_EQ(r.status, DASH_INVALID_ARGUMENT) << r.text;
    EXPECT_NE(r.text.find("another task or other options"), std::string::npos) << r.text;
  }
  dash_task_free(first);
  dash_task_free(second);
  dash_model_free(model);
}

// Options of search or retrain are refused by name, the report left untouched.
TEST(Distributed, EvaluateRefusesOptionsOfOtherCalls) {
  dash_model* model = small_model(kSpec);
  ASSERT_NE(model, nullptr);
  dash_task* task = test_rows(kSpec, 0, 41);
  char* report = nullptr;
  EXPECT_STATUS(dash_evaluate_with(model, task, DASH_SPLIT_TEST, R"({"hpo_share": 0.3})", &report),
                DASH_INVALID_ARGUMENT, "option 'hpo_share' is used by dash_search, not dash_evaluate_with");
  EXPECT_STATUS(dash_evaluate_with(model, task, DASH_SPLIT_TEST, R"({"seed": 1})", &report), DASH_INVALID_ARGUMENT,
                "option 'seed' is used by dash_search and dash_retrain, not dash_evaluate_with");
  EXPECT_STATUS(dash_evaluate_with(model, task, DASH_SPLIT_TEST, R"({"world_size": 0})", &report),
                DASH_INVALID_ARGUMENT, "'world_size' must be >= 1");
  // A model on the CPU is not scored on CUDA: unsupported in a build without
  // it, refused where a GPU is.
  const dash_status cuda = dash_evaluate_with(model, task, DASH_SPLIT_TEST, R"({"device": "cuda"})", &report);
  EXPECT_TRUE(cuda == DASH_UNSUPPORTED || cuda == DASH_INVALID_ARGUMENT) << dash_status_name(cuda);
  EXPECT_NE(last_error().find("cuda"), std::string::npos) << last_error();
  EXPECT_EQ(report, nullptr);
  dash_task_free(task);
  dash_model_free(model);
}

// No options (NULL, "" or "{}") and one process's own options are dash_evaluate.
TEST(Distributed, EvaluateWithoutOptionsIsDashEvaluate) {
  dash_model* model = small_model(kSpec);
  ASSERT_NE(model, nullptr);
  dash_task* task = test_rows(kSpec, 0, 41);
  char* text = nullptr;
  ASSERT_OK(dash_evaluate(model, task, DASH_SPLIT_TEST, &text));
  const std::string plain = take(text);
  for (const char* options : {static_cast<const char*>(nullptr), "", "{}", R"({"world_size": 1, "device": "cpu"})"}) {
    ASSERT_OK(dash_evaluate_with(model, task, DASH_SPLIT_TEST, options, &text));
    EXPECT_EQ(take(text), plain) << (options ? options : "NULL");
  }
  dash_task_free(task);
  dash_model_free(model);
}

}  // namespace
