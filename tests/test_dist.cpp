// Data parallelism (src/dist, and the trainer on it): ranks as threads of this
// process, each with its own c10d process group, meeting on loopback on a
// port free at run time. What needs separate processes (the whole pipeline,
// a rank that dies) is in tests/capi/test_dist.cpp.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>

#include "api/options.h"
#include "dist/communicator.h"
#include "dist/sync_batch_norm.h"
#include "nn/backbones.h"
#include "train/trainer.h"
#include "support/free_port.h"
#include "util/errors.h"

namespace {

using dash::dist::Communicator;
using dash::dist::DistOptions;

DistOptions rank_options(int world, int rank, int port, double timeout_s = 60) {
  DistOptions o;
  o.world_size = world;
  o.rank = rank;
  o.init = "tcp://127.0.0.1:" + std::to_string(port);
  o.timeout_s = timeout_s;
  return o;
}

// body(rank) on `world` threads at once; a failure on any is the test's.
void on_ranks(int world, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  std::vector<std::string> errors(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
}

#define SKIP_WITHOUT_GLOO() \
  if (!dash::dist::available()) GTEST_SKIP() << "built without Gloo's headers (libgloo-dev)"

TEST(Dist, OneProcessMakesNoProcessGroup) {
  EXPECT_EQ(dash::dist::connect(DistOptions{}, "x", false), nullptr);
  EXPECT_EQ(dash::api::parse_search_options("").runtime.dist.world_size, 1);
}

TEST(Dist, OptionsAreCheckedBeforeAnyoneMeets) {
  using dash::api::parse_search_options;
  EXPECT_THROW(parse_search_options(R"({"world_size": 2, "rank": 2, "init": "tcp://127.0.0.1:1"})"),
               std::invalid_argument);
  EXPECT_THROW(parse_search_options(R"({"world_size": 2, "rank": 1})"), std::invalid_argument);  // no init
  EXPECT_THROW(parse_search_options(R"({"world_size": 2, "init": "udp://x:1"})"), std::invalid_argument);
  EXPECT_THROW(parse_search_options(R"({"world_size": 2, "init": "tcp://h:1", "batch_size_global": 33})"),
               std::invalid_argument);
  EXPECT_THROW(parse_search_options(R"({"dist_backend": "mpi"})"), std::invalid_argument);
  EXPECT_NO_THROW(parse_search_options(R"({"world_size": 2, "rank": 1, "init": "file:///tmp/x"})"));
}

// Every collective against what it must compute, two buckets of gradients
// included (one gradient larger than a bucket).
TEST(Dist, CollectivesComputeTheSameOnEveryRank) {
  SKIP_WITHOUT_GLOO();
  const int port = dash_test::free_loopback_port();
  on_ranks(2, [&](int rank) {
    auto comm = dash::dist::connect(rank_options(2, rank, port), "same", false);
    ASSERT_NE(comm, nullptr);
    EXPECT_EQ(comm->rank(), rank);
    const int64_t big = Communicator::kBucketBytes / 4 + 1000;
    std::vector<at::Tensor> params{torch::zeros({3}, torch::requires_grad()), torch::zeros({big}, torch::requires_grad()),
                                   torch::zeros({2, 2}, torch::requires_grad())};
    params[0].mutable_grad() = torch::full({3}, static_cast<float>(rank + 1));
    params[1].mutable_grad() = torch::full({big}, static_cast<float>(10 * rank));
    // params[2] has no gradient: zeros, averaged
    std::vector<double> values{static_cast<double>(rank)};
    comm->average_gradients(params, &values);
    EXPECT_TRUE(params[0].grad().eq(1.5).all().item<bool>());
    EXPECT_TRUE(params[1].grad().eq(5.0).all().item<bool>());
    EXPECT_TRUE(params[2].grad().eq(0.0).all().item<bool>());
    EXPECT_DOUBLE_EQ(values[0], 0.5);
    EXPECT_EQ(comm->last_gradient_bytes(), (3 + big + 4 + 1) * 4);

    EXPECT_DOUBLE_EQ(comm->from_root(rank == 0 ? 7.0 : 9.0), 7.0);
    EXPECT_EQ(comm->from_root(std::string(rank == 0 ? "rank zero's" : "")), "rank zero's");
    EXPECT_EQ(comm->any(std::vector<bool>{rank == 1, false}), (std::vector<bool>{true, false}));
    EXPECT_EQ(comm->min_all(rank + 5), 5);
    const at::Tensor rows = comm->gather_rows(torch::full({rank + 1, 2}, static_cast<float>(rank)));
    EXPECT_TRUE(rows.equal(torch::tensor({0.f, 0.f, 1.f, 1.f, 1.f, 1.f}).view({3, 2})));
    EXPECT_EQ(comm->gather_all(std::string(static_cast<size_t>(rank + 1), 'a' + rank)),
              (std::vector<std::string>{"a", "bb"}));
    // From rank 1 (a grid point's weights, from the rank that trained them).
    std::vector<at::Tensor> state{torch::full({2}, static_cast<float>(rank)),
                                  torch::full({1}, static_cast<int64_t>(10 + rank))};
    comm->broadcast(state, 1);
    EXPECT_TRUE(state[0].eq(1.0).all().item<bool>());
    EXPECT_EQ(state[1].item<int64_t>(), 11);
    comm->barrier();
  });
}

// A rank given other work than the others is refused by all of them.
TEST(Dist, RanksGivenDifferentWorkAreRefused) {
  SKIP_WITHOUT_GLOO();
  const int port = dash_test::free_loopback_port();
  on_ranks(2, [&](int rank) {
    EXPECT_THROW(dash::dist::connect(rank_options(2, rank, port), rank == 0 ? "task A" : "task B", false),
                 std::invalid_argument);
  });
}

TEST(Dist, ARankThatNeverJoinsFailsTheOthersWithinTheTimeout) {
  SKIP_WITHOUT_GLOO();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    dash::dist::connect(rank_options(2, 0, dash_test::free_loopback_port(), 2.0), "x", false);
    ADD_FAILURE() << "joined without rank 1";
  } catch (const dash::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 did not join"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
}

TEST(Dist, AWrongWorldSizeIsNamedAndNobodyHangs) {
  SKIP_WITHOUT_GLOO();
  const int port = dash_test::free_loopback_port();
  const auto t0 = std::chrono::steady_clock::now();
  std::string said0, said1;
  std::thread r1([&] {
    try {
      dash::dist::connect(rank_options(3, 1, port, 3.0), "x", false);
    } catch (const std::exception& e) {
      said1 = e.what();
    }
  });
  try {
    dash::dist::connect(rank_options(2, 0, port, 3.0), "x", false);
  } catch (const std::exception& e) {
    said0 = e.what();
  }
  r1.join();
  EXPECT_NE(said0.find("rank 1 was started with world_size 3"), std::string::npos) << said0;
  EXPECT_NE(said1, "");  // rank 2 never comes, or rank 0 has gone
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 15.0);
}

TEST(Dist, APortInUseIsAnIoError) {
  SKIP_WITHOUT_GLOO();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  try {
    dash::dist::connect(rank_options(2, 0, ntohs(a.sin_port), 3.0), "x", false);
    ADD_FAILURE() << "hosted a store on a port in use";
  } catch (const dash::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot host"), std::string::npos) << e.what();
  }
  ::close(fd);
}

// A rank that has gone (its process group closed) fails the other's next
// collective with an IoError, within the timeout.
TEST(Dist, ARankThatLeavesFailsTheOthersNextStep) {
  SKIP_WITHOUT_GLOO();
  const int port = dash_test::free_loopback_port();
  std::shared_ptr<Communicator> comm0;
  on_ranks(2, [&](int rank) {
    auto comm = dash::dist::connect(rank_options(2, rank, port, 5.0), "x", false);
    if (rank == 0) comm0 = comm;
    comm->barrier();
    if (rank == 1) dash::dist::disconnect(rank_options(2, rank, port, 5.0));  // and `comm` goes with the thread
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(comm0->any(true), dash::IoError);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 15.0);
  dash::dist::disconnect(rank_options(2, 0, port, 5.0));
}

// Synchronised batch norm on two halves of a batch computes what plain batch
// norm does on the whole: outputs, the input's and the affine parameters'
// gradients, and the running statistics.
TEST(Dist, SyncedBatchNormOnHalvesIsBatchNormOnTheWhole) {
  SKIP_WITHOUT_GLOO();
  torch::manual_seed(1);
  const at::Tensor x = torch::randn({8, 3, 5, 5}) * 2 + 1;
  const at::Tensor g = torch::randn({8, 3, 5, 5});
  torch::nn::BatchNorm2d whole(3);
  torch::nn::init::uniform_(whole->weight);
  const at::Tensor xw = x.clone().requires_grad_();
  (whole->forward(xw) * g).sum().backward();
  const int port = dash_test::free_loopback_port();
  std::vector<at::Tensor> y(2), dx(2), dw(2), rm(2), rv(2);
  on_ranks(2, [&](int rank) {
    auto comm = dash::dist::connect(rank_options(2, rank, port), "bn", false);
    torch::nn::BatchNorm2d half(3);
    {
      torch::NoGradGuard no_grad;
      half->weight.copy_(whole->weight);
    }
    const at::Tensor xh = x.narrow(0, 4 * rank, 4).clone().requires_grad_();
    const at::Tensor out = dash::dist::synced_batch_norm(xh, half->weight, half->bias, half->running_mean,
                                                         half->running_var, half->num_batches_tracked, 0.1, 1e-5,
                                                         *comm);
    (out * g.narrow(0, 4 * rank, 4)).sum().backward();
    // Each rank's gradient of the affine parameters is its part; the trainer
    // averages them over ranks (x2 here: two ranks' sums of one loss).
    std::vector<at::Tensor> params{half->weight, half->bias};
    comm->average_gradients(params, nullptr);
    y[static_cast<size_t>(rank)] = out.detach();
    dx[static_cast<size_t>(rank)] = xh.grad();
    dw[static_cast<size_t>(rank)] = half->weight.grad() * 2;
    rm[static_cast<size_t>(rank)] = half->running_mean.clone();
    rv[static_cast<size_t>(rank)] = half->running_var.clone();
  });
  const at::Tensor y_whole = whole->forward(x.clone()).detach();  // (a second update of whole's running stats: not compared)
  EXPECT_TRUE(torch::allclose(torch::cat(y), y_whole, 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(torch::cat(dx), xw.grad(), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(dw[0], whole->weight.grad(), 1e-4, 1e-4));
  EXPECT_TRUE(torch::equal(rm[0], rm[1]));
  EXPECT_TRUE(torch::equal(rv[0], rv[1]));
}

// Two ranks, each with half of a full batch, train a Wide ResNet as one
// process does with the whole batch (sync_batch_norm): the same weights and
// running statistics after a few steps (within float tolerance), identical
// on both ranks. With each rank's own batch statistics (the default) the
// ranks still end identical (their running statistics averaged).
TEST(Dist, TwoRanksTrainAsOneOnTheGlobalBatch) {
  SKIP_WITHOUT_GLOO();
  dash::nn::BackboneSpec spec;
  spec.depth = 10;
  spec.in_channels = 1;
  spec.spatial = {8, 8};
  spec.num_outputs = 3;
  dash::nn::LayerSetup plain;
  plain.architecture = dash::nn::Architecture::plain(spec.name(), spec.searchable_layers());
  const auto task = dash::task::TaskSpec::from_json({{"kind", "classification"}, {"input_shape", {1, 8, 8}},
                                                     {"num_classes", 3}});
  torch::manual_seed(5);
  const at::Tensor x = torch::randn({24, 1, 8, 8});
  const at::Tensor y = torch::randint(0, 3, {24}, torch::kLong);
  dash::nn::Backbone start(spec, plain);
  auto state_of = [](dash::nn::Backbone& m) {
    std::vector<at::Tensor> s;
    for (const auto& p : m->parameters()) s.push_back(p.detach().clone());
    for (const auto& b : m->buffers()) s.push_back(b.detach().clone());
    return s;
  };
  auto load = [](dash::nn::Backbone& m, const std::vector<at::Tensor>& s) {
    torch::NoGradGuard no_grad;
    size_t i = 0;
    for (auto& p : m->parameters()) p.copy_(s.at(i++));
    for (auto& b : m->buffers()) b.copy_(s.at(i++));
  };
  const auto initial = state_of(start);
  auto stage = [&](int64_t batch) {
    dash::train::StageOptions o;
    o.epochs = 4;  // 4 steps of the full batch
    o.batch_size = batch;
    o.validate = false;
    o.keep_best = false;
    o.hp.lr = 0.05;
    return o;
  };
  dash::nn::Backbone alone(spec, plain);
  load(alone, initial);
  dash::task::Dataset whole{{x, y}, {}, {}};
  dash::train::run_stage(alone, task, whole, stage(24), nullptr);
  const auto expected = state_of(alone);

  auto two_ranks = [&](bool sync) {
    const int port = dash_test::free_loopback_port();
    std::vector<std::vector<at::Tensor>> got(2);
    on_ranks(2, [&](int rank) {
      dash::nn::Backbone net(spec, plain);
      load(net, initial);
      dash::task::Dataset half{{x.narrow(0, 12 * rank, 12), y.narrow(0, 12 * rank, 12)}, {}, {}};
      auto o = stage(12);
      auto options = rank_options(2, rank, port);
      options.sync_batch_norm = sync;
      o.comm = dash::dist::connect(options, "train", false);
      const auto r = dash::train::run_stage(net, task, half, o, nullptr);
      EXPECT_EQ(r.steps_done, 4);
      got[static_cast<size_t>(rank)] = state_of(net);
    });
    return got;
  };
  const auto local = two_ranks(false);
  ASSERT_EQ(local[0].size(), expected.size());
  double farthest = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(torch::equal(local[0][i], local[1][i])) << "tensor " << i << " differs between the ranks";
    if (expected[i].is_floating_point()) {
      farthest = std::max(farthest, (local[0][i] - expected[i]).abs().max().item<double>());
    }
  }
  EXPECT_GT(farthest, 1e-3);  // each rank's own statistics: not the global batch's step
  const auto got = two_ranks(true);
  ASSERT_EQ(got[0].size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_TRUE(torch::equal(got[0][i], got[1][i])) << "tensor " << i << " differs between the ranks";
    if (expected[i].is_floating_point()) {
      EXPECT_TRUE(torch::allclose(got[0][i], expected[i], 1e-3, 1e-4))
          << "tensor " << i << ": " << (got[0][i] - expected[i]).abs().max().item<double>();
    } else {
      EXPECT_TRUE(torch::equal(got[0][i], expected[i])) << "tensor " << i;
    }
  }
}

}  // namespace
