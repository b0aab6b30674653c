// The core's pipeline and its options, called from C++ without the C ABI.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <set>

#include "api/options.h"
#include "api/pipeline.h"
#include "search/dash.h"
#include "train/trainer.h"
#include "util/malloc_tuning.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

using dash::api::describe_options;
using dash::api::parse_evaluate_options;
using dash::api::parse_retrain_options;
using dash::api::parse_search_options;
using nlohmann::json;

const json& described_default(const json& all, const std::string& name, const char* call) {
  const json& d = all.at(name).at("default");
  return d.is_object() ? d.at(call) : d;
}

// The defaults a user reads (dash_options_describe, README) are the ones the
// core's stages run with when a C++ caller default-constructs its options.
TEST(Options, DescribedDefaultsAreTheCoresDefaults) {
  const json all = describe_options();
  const dash::search::SearchOptions so;
  const dash::search::RetrainOptions ro;
  EXPECT_EQ(described_default(all, "epochs", "search").get<int64_t>(), so.epochs);
  EXPECT_EQ(described_default(all, "epochs", "retrain").get<int64_t>(), ro.epochs);
  EXPECT_EQ(described_default(all, "batch_size", "search").get<int64_t>(), dash::train::kBatchSize);
  EXPECT_EQ(described_default(all, "batch_size", "retrain").get<int64_t>(), ro.batch_size);
  EXPECT_EQ(described_default(all, "depth", "retrain").get<int>(), ro.depth);
  EXPECT_EQ(described_default(all, "hpo_epochs", "search").get<int64_t>(), so.hpo_epochs);
  EXPECT_EQ(described_default(all, "hpo_share", "search").get<double>(), so.hpo_share);
  EXPECT_EQ(described_default(all, "cost_weight", "search").get<double>(), so.cost_weight);
  EXPECT_EQ(described_default(all, "max_cost_ratio", "search").get<double>(), so.max_cost_ratio);
  EXPECT_EQ(described_default(all, "warmup_steps", "search").get<int64_t>(), so.warmup_steps);
  EXPECT_EQ(described_default(all, "temperature", "search").get<double>(), so.arch.temperature);
  EXPECT_EQ(described_default(all, "hpo_grid", "search").get<std::string>(), so.hpo_grid);
  EXPECT_TRUE(described_default(all, "lr", "search").is_null());  // the task's default
  EXPECT_TRUE(described_default(all, "arch_lr", "search").is_null());
  // Every described option, for each call that takes it, is what parsing
  // nothing gives.
  const json parsed = {{"search", to_json(parse_search_options(""))},
                       {"retrain", to_json(parse_retrain_options(""))},
                       {"evaluate", to_json(parse_evaluate_options(""))}};
  for (const auto& [name, d] : all.items()) {
    for (const auto& call : d.at("used_by")) {
      const std::string c = call;
      EXPECT_EQ(described_default(all, name, c.c_str()), parsed.at(c).at(name)) << name << " in " << call;
    }
  }
  EXPECT_EQ(parsed["search"].size() + parsed["retrain"].size() + parsed["evaluate"].size(), [&] {
    size_t n = 0;
    for (const auto& [name, d] : all.items()) n += d.at("used_by").size();
    return n;
  }());
}

// A value other than the default for one option, for a call that takes it.
json other_value(const json& described) {
  const std::string type = described.at("type");
  const json& def = described.at("default");
  const json d = def.is_object() ? def.begin().value() : def;
  if (described.contains("choices")) {
    for (const auto& c : described.at("choices")) {
      if (c != d) return c;
    }
  }
  if (type == "bool") return !d.get<bool>();
  if (type == "int") return d.get<int64_t>() + 3;
  if (type == "number") {  // inside every option's range
    if (d.is_null()) return 0.25;
    const double v = d.get<double>();
    return v == 0 || v == 1 ? 0.5 : (v < 1 ? v / 2 : v / 2 + 1);
  }
  if (type == "string") return "elsewhere";
  if (type == "int_list") return json::array({3, 5});
  return nullptr;
}

// Each option reaches its own field: setting one changes that option and no
// other (two options bound to one field, or a getter reading another field
// than the setter writes, fail here).
TEST(Options, EachOptionSetsItsOwnField) {
  const json all = describe_options();
  auto parsed = [](const std::string& call, const std::string& text) {
    if (call == "search") return to_json(parse_search_options(text));
    if (call == "retrain") return to_json(parse_retrain_options(text));
    return to_json(parse_evaluate_options(text));
  };
  for (const auto& [name, d] : all.items()) {
    json value = other_value(d);
    for (const auto& call : d.at("used_by")) {
      json user = {{name, value}};
      if (name == "kernel_sizes") user["dilations"] = json::array({1, 2});
      if (name == "dilations") user["kernel_sizes"] = json::array({3, 5});
      if (name == "resume") user["checkpoint_dir"] = "ckpt";
      if (name == "max_cost_ratio") user[name] = 3.0;
      if (name == "world_size" || name == "rank") user["init"] = "tcp://node0:29500";
      if (name == "rank") user["world_size"] = 4;
      const json got = parsed(call, user.dump());
      const json defaults = parsed(call, "");
      for (const auto& [key, v] : got.items()) {
        if (user.contains(key)) {
          EXPECT_EQ(v, user[key]) << name << " in " << call;
        } else {
          EXPECT_EQ(v, defaults.at(key)) << "setting " << name << " changed " << key << " in " << call;
        }
      }
    }
  }
}

TEST(Options, RefusalsNameTheOption) {
  auto message = [](const std::string& text, bool search) {
    try {
      if (search) {
        parse_search_options(text);
      } else {
        parse_retrain_options(text);
      }
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(R"({"batch_fraction": 0})", true).find("'batch_fraction' must be in (0, 1]"), std::string::npos);
  EXPECT_NE(message(R"({"batch_size": 0})", false).find("'batch_size' must be >= 1"), std::string::npos);
  EXPECT_NE(message(R"({"hpo": false})", false).find("used by dash_search, not dash_retrain"), std::string::npos);
  EXPECT_NE(message(R"({"dropout": 0.1})", true).find("used by dash_retrain, not dash_search"), std::string::npos);
  EXPECT_NE(message(R"({"augment": "rotate"})", true).find("one of none, shift, flip, shift_flip"),
            std::string::npos);
  EXPECT_NE(message(R"({"lr": 0})", false).find("'lr' must be > 0"), std::string::npos);
  EXPECT_NE(message(R"({"epochs": 1.5})", true).find("must be of type int"), std::string::npos);
  EXPECT_NE(message(R"({"kernel_sizes": [3]})", true).find("both 'kernel_sizes' and 'dilations'"),
            std::string::npos);
  EXPECT_NE(message(R"({"resume": true})", false).find("'resume' needs 'checkpoint_dir'"), std::string::npos);
  EXPECT_NE(message(R"([1])", true).find("a JSON object"), std::string::npos);
  EXPECT_EQ(message(R"({"lr": null, "arch_lr": null})", true), "accepted");
}

// dash_evaluate_with takes the runtime and data-parallel options only.
TEST(Options, EvaluateTakesRuntimeOptionsOnly) {
  auto message = [](const std::string& text) {
    try {
      parse_evaluate_options(text);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(R"({"hpo_share": 0.3})").find("'hpo_share' is used by dash_search, not dash_evaluate_with"),
            std::string::npos);
  EXPECT_NE(message(R"({"dropout": 0.1})").find("used by dash_retrain, not dash_evaluate_with"), std::string::npos);
  EXPECT_NE(message(R"({"sync_batch_norm": true})")
                .find("used by dash_search and dash_retrain, not dash_evaluate_with"),
            std::string::npos);
  EXPECT_NE(message(R"({"rank": 2, "world_size": 2, "init": "tcp://h:1"})")
                .find("'rank' must be in [0, world_size - 1]"),
            std::string::npos);
  EXPECT_EQ(message(R"({"threads": 2, "device": "cpu", "world_size": 2, "rank": 1, "init": "tcp://h:1",
                        "dist_backend": "gloo", "dist_timeout_s": 5, "data_sharded": true})"),
            "accepted");
}

TEST(Options, RetrainOverridesReplaceOnlyWhatIsSet) {
  const auto call = parse_retrain_options(R"({"lr": 0.02, "dropout": 0.1})");
  dash::train::Hyperparams arch_hp;
  arch_hp.lr = 0.3;
  arch_hp.momentum = 0.5;
  const auto hp = call.hp.applied_to(arch_hp);
  EXPECT_EQ(hp.lr, 0.02);
  EXPECT_EQ(hp.dropout, 0.1);
  EXPECT_EQ(hp.momentum, 0.5);
  EXPECT_EQ(hp.weight_decay, arch_hp.weight_decay);
}

// 1D two-class task whose class is the sign of the sequence's mean.
dash::api::TaskData mean_sign_task() {
  dash::api::TaskData t;
  t.spec = dash::task::TaskSpec::from_json({{"kind", "classification"}, {"input_shape", {1, 32}}, {"num_classes", 2}});
  torch::manual_seed(3);
  auto make = [](int64_t n) {
    at::Tensor x = torch::randn({n, 1, 32}) + torch::randn({n, 1, 1}) * 2;
    at::Tensor y = (x.mean({1, 2}) > 0).to(torch::kLong);
    return dash::task::Split{x, y};
  };
  t.splits[dash::api::kTrain] = make(192);
  t.splits[dash::api::kTest] = make(64);
  return t;
}

// search -> retrain -> evaluate and infer, with no C in between; the
// evaluation's accuracy is the share of infer()'s argmaxes that are right.
TEST(Pipeline, SearchRetrainEvaluateInferFromCpp) {
  const auto task = mean_sign_task();
  const auto arch = dash::api::search(
      task,
      parse_search_options(R"({"epochs": 1, "hpo": false, "guard": false, "cost_model": "macs", "threads": 1,
                               "kernel_sizes": [3, 5], "dilations": [1, 2], "batch_size": 32})"),
      nullptr);
  EXPECT_EQ(arch.architecture.layers.size(), dash::api::plain_architecture(task.spec).architecture.layers.size());
  EXPECT_FALSE(arch.report.empty());
  const auto model = dash::api::retrain(task, arch, parse_retrain_options(R"({"epochs": 3, "threads": 1})"), nullptr);
  EXPECT_EQ(model->metadata().at("report").at("search"), arch.report);

  const json report = dash::api::evaluate(*model, task, dash::api::kTest);
  EXPECT_EQ(report.at("samples").get<int64_t>(), 64);
  const auto& test = task.splits[dash::api::kTest];
  std::vector<float> out(static_cast<size_t>(64 * model->output_size()));
  dash::api::infer(*model, test.x.contiguous().data_ptr<float>(), 64, out.data(), static_cast<int64_t>(out.size()));
  const at::Tensor logits = torch::from_blob(out.data(), {64, 2});
  const double accuracy = (logits.argmax(1) == test.y).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(report.at("metric").get<double>(), accuracy, 1e-9);
  EXPECT_GT(accuracy, 0.6);  // it learnt something: chance is ~0.5

  // Misuse is refused with a message, not a crash.
  EXPECT_THROW(dash::api::infer(*model, test.x.data_ptr<float>(), 64, out.data(), 3), std::invalid_argument);
  dash::api::TaskData other = task;
  other.spec = dash::task::TaskSpec::from_json({{"kind", "classification"}, {"input_shape", {1, 16}}, {"num_classes", 2}});
  EXPECT_THROW(dash::api::evaluate(*model, other, dash::api::kTest), std::invalid_argument);
  EXPECT_THROW(dash::api::evaluate(*model, task, dash::api::kValid), std::invalid_argument);  // empty
}

// A timed search reports the plain backbone's step time; a retrain of that
// architecture given less time than one such step refuses before training
// (at once, not after the step), and only when its batch size and width are
// those the step was timed at.
TEST(Pipeline, ARetrainRefusesABudgetShorterThanTheSearchsTimedStep) {
  const auto task = mean_sign_task();
  auto arch = dash::api::search(
      task, parse_search_options(R"({"arch_search": false, "hpo": false, "threads": 1, "batch_size": 32,
                                     "time_budget_s": 5})"),
      nullptr);
  const json probe = arch.report.at("probe_step");
  EXPECT_GT(probe.at("ms").get<double>(), 0.0);
  EXPECT_EQ(probe.at("batch_size").get<int64_t>(), 32);
  EXPECT_EQ(probe.at("width").get<int>(), 1);

  arch.report["probe_step"]["ms"] = 60000.0;  // as if one step took a minute
  const auto t0 = std::chrono::steady_clock::now();
  try {
    dash::api::retrain(task, arch, parse_retrain_options(R"({"threads": 1, "batch_size": 32, "time_budget_s": 10})"),
                       nullptr);
    ADD_FAILURE() << "a 10 s retrain of a 60 s step was not refused";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("cannot train anything"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("60 s"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  // Another batch size: the figure does not apply, the retrain runs.
  const auto model = dash::api::retrain(
      task, arch, parse_retrain_options(R"({"threads": 1, "batch_size": 16, "time_budget_s": 3})"), nullptr);
  EXPECT_GT(model->output_size(), 0);
}

TEST(Pipeline, ArchitectureJsonKeepsHyperparameters) {
  const auto task = mean_sign_task();
  auto a = dash::api::plain_architecture(task.spec);
  a.hp.lr = 0.07;
  const auto b = dash::api::ArchChoice::from_json(a.to_json());
  EXPECT_EQ(b.hp.lr, 0.07);
  EXPECT_EQ(b.architecture.to_json(), a.architecture.to_json());
  json partial = a.architecture.to_json();
  partial["hyperparameters"] = {{"dropout", 0.2}};
  const auto c = dash::api::ArchChoice::from_json(partial);
  EXPECT_EQ(c.hp.dropout, 0.2);
  EXPECT_EQ(c.hp.lr, dash::train::Hyperparams{}.lr);
  partial["hyperparameters"] = {{"gamma", 0.2}};
  EXPECT_THROW(dash::api::ArchChoice::from_json(partial), std::invalid_argument);
}

}  // namespace

// tune_malloc (on by default): glibc serves a 40 MB block with a fresh
// mapping (its adaptive threshold stops at 32 MB), which the kernel zero-fills
// page by page each time; once tuned, the block comes from the heap, and a
// second one reuses the first's pages. Where the environment sets malloc's
// thresholds, they are left alone.
TEST(Malloc, TuningServesLargeBlocksFromTheHeapUnlessTheEnvironmentChose) {
#if !defined(__GLIBC__) || defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "glibc's own malloc only (ASan replaces it)";
#else
  constexpr size_t kBlock = 40u << 20;
  auto mapped_while_held = [&] {
    const size_t before = mallinfo2().hblkhd;
    void* p = std::malloc(kBlock);
    static_cast<volatile char*>(p)[0] = 1;
    const size_t during = mallinfo2().hblkhd;
    std::free(p);
    return during - before;
  };
  // glibc's starting threshold (128 KB), whatever this process did before.
  ASSERT_EQ(mallopt(M_MMAP_THRESHOLD, 128 << 10), 1);
  ::setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=1048576", 1);
  EXPECT_FALSE(dash::util::tune_malloc_for_training());
  EXPECT_GE(mapped_while_held(), kBlock);
  ::unsetenv("GLIBC_TUNABLES");
  EXPECT_TRUE(dash::util::tune_malloc_for_training());
  EXPECT_EQ(mapped_while_held(), 0u);
  EXPECT_EQ(mapped_while_held(), 0u);
#endif
}
