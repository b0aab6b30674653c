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

}  // namespace
