// The task module against references computed by hand: task JSON, split
// checks and carving, normalisation, the .npy and IDX readers (hand-written
// bytes and the real Fashion-MNIST files), losses and metrics.

#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <boost/iostreams/device/back_inserter.hpp>
#include <boost/iostreams/filter/gzip.hpp>
#include <boost/iostreams/filtering_stream.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "task/dataset.h"
#include "task/io.h"
#include "task/loss_metric.h"
#include "task/task_spec.h"

namespace {

namespace fs = std::filesystem;
using dash::task::LossKind;
using dash::task::MetricKind;
using dash::task::Split;
using dash::task::TaskKind;
using dash::task::TaskSpec;
using nlohmann::json;

// Runs `stmt`, expecting an exception of `type` whose message contains `text`.
#define EXPECT_ERROR(stmt, type, text)                                    \
  do {                                                                    \
    std::string msg_ = "(no exception)";                                  \
    try {                                                                 \
      stmt;                                                               \
    } catch (const type& e_) {                                            \
      msg_ = e_.what();                                                   \
    } catch (const std::exception& e_) {                                  \
      msg_ = std::string("(another exception type) ") + e_.what();        \
    }                                                                     \
    EXPECT_NE(msg_.find(text), std::string::npos) << "message: " << msg_; \
  } while (0)

// The exact message, for the ones the documentation quotes.
#define EXPECT_ERROR_IS(stmt, type, text) \
  do {                                    \
    std::string msg_ = "(no exception)";  \
    try {                                 \
      stmt;                               \
    } catch (const type& e_) {            \
      msg_ = e_.what();                   \
    }                                     \
    EXPECT_EQ(msg_, text);                \
  } while (0)

// A scratch directory for this process, removed at exit.
struct ScratchDir {
  fs::path dir;
  ScratchDir() {
    dir = fs::temp_directory_path() / ("dashnas_test_task_" + std::to_string(::getpid()));
    fs::create_directories(dir);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::string scratch(const std::string& name) {
  static ScratchDir d;
  return (d.dir / name).string();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

std::string gzip(const std::string& raw) {
  std::string out;
  {
    boost::iostreams::filtering_ostream os;
    os.push(boost::iostreams::gzip_compressor());
    os.push(boost::iostreams::back_inserter(out));
    os.write(raw.data(), static_cast<std::streamsize>(raw.size()));
  }
  return out;
}

at::TensorOptions f32() { return at::TensorOptions().dtype(at::kFloat); }
at::TensorOptions f64() { return at::TensorOptions().dtype(at::kDouble); }
at::TensorOptions i64() { return at::TensorOptions().dtype(at::kLong); }
at::Tensor longs(const std::vector<int64_t>& v) { return at::tensor(v, i64()); }

TaskSpec classification_spec(int64_t classes = 10, std::vector<int64_t> shape = {1, 28, 28}) {
  return TaskSpec::from_json(
      {{"kind", "classification"}, {"input_shape", shape}, {"num_classes", classes}});
}

// ---- TaskSpec ---------------------------------------------------------------

TEST(TaskSpec, DefaultsPerKind) {
  struct Case {
    const char* kind;
    const char* count_key;
    LossKind loss;
    MetricKind metric;
  };
  const Case cases[] = {
      {"classification", "num_classes", LossKind::kCrossEntropy, MetricKind::kAccuracy},
      {"multilabel", "num_classes", LossKind::kBCEWithLogits, MetricKind::kMacroAUROC},
      {"regression", "num_outputs", LossKind::kMSE, MetricKind::kMAE},
      {"dense", "num_outputs", LossKind::kRelativeL2, MetricKind::kRelativeL2},
  };
  for (const Case& c : cases) {
    const TaskSpec s =
        TaskSpec::from_json({{"kind", c.kind}, {"input_shape", {3, 100}}, {c.count_key, 4}});
    EXPECT_EQ(s.loss, c.loss) << c.kind;
    EXPECT_EQ(s.metric, c.metric) << c.kind;
    EXPECT_EQ(s.num_outputs, 4);
    EXPECT_EQ(s.dims(), 1);
    EXPECT_EQ(s.in_channels(), 3);
    EXPECT_FALSE(s.pos_weight.has_value());
  }
}

TEST(TaskSpec, JsonRoundTrip) {
  const json docs[] = {
      {{"kind", "classification"},
       {"input_shape", {1, 28, 28}},
       {"num_classes", 10},
       {"loss", "cross_entropy"},
       {"metric", "macro_f1"}},
      {{"kind", "multilabel"},
       {"input_shape", {12, 1000}},
       {"num_classes", 5},
       {"loss", "bce_with_logits"},
       {"metric", "map"},
       {"pos_weight", 2.5}},
      {{"kind", "regression"},
       {"input_shape", {2, 64}},
       {"num_outputs", 1},
       {"loss", "relative_l2"},
       {"metric", "relative_l2"}},
      {{"kind", "dense"},
       {"input_shape", {3, 85, 85}},
       {"num_outputs", 1},
       {"loss", "mse"},
       {"metric", "mae"}},
  };
  for (const json& doc : docs) {
    const TaskSpec s = TaskSpec::from_json(doc);
    EXPECT_EQ(s.to_json(), doc);
    EXPECT_EQ(TaskSpec::from_json(s.to_json()).to_json(), doc);
  }
}

TEST(TaskSpec, UnknownKeyIsNamed) {
  EXPECT_ERROR(TaskSpec::from_json(
                   {{"kind", "classification"}, {"input_shape", {1, 28, 28}}, {"num_clases", 10}}),
               std::invalid_argument, "unknown key \"num_clases\"");
  EXPECT_ERROR(TaskSpec::from_json(json::array()), std::invalid_argument, "JSON object");
}

TEST(TaskSpec, WrongTypeNamesKeyAndExpectedType) {
  auto base = [] {
    return json{{"kind", "classification"}, {"input_shape", {1, 28, 28}}, {"num_classes", 10}};
  };
  json j = base();
  j["num_classes"] = "10";
  EXPECT_ERROR(TaskSpec::from_json(j), std::invalid_argument,
               "\"num_classes\" must be an integer, got string");
  j = base();
  j["num_classes"] = 10.5;
  EXPECT_ERROR(TaskSpec::from_json(j), std::invalid_argument, "\"num_classes\" must be an integer");
  j = base();
  j["input_shape"] = {1, 2.5};
  EXPECT_ERROR(TaskSpec::from_json(j), std::invalid_argument,
               "\"input_shape\" must be an array of integers");
  j = base();
  j["kind"] = 3;
  EXPECT_ERROR(TaskSpec::from_json(j), std::invalid_argument, "\"kind\" must be a string");
  j = base();
  j["loss"] = json::array();
  EXPECT_ERROR(TaskSpec::from_json(j), std::invalid_argument, "\"loss\" must be a string");
  j = {{"kind", "multilabel"}, {"input_shape", {1, 8}}, {"num_classes", 2}, {"pos_weight", "2"}};
  EXPECT_ERROR(TaskSpec::from_json(j), std::invalid_argument, "\"pos_weight\" must be a number");
  j = base();
  j["num_classes"] = 18446744073709551615ull;
  EXPECT_ERROR(TaskSpec::from_json(j), std::invalid_argument, "\"num_classes\" is too large");
}

TEST(TaskSpec, OutputCountsPerKind) {
  EXPECT_ERROR(TaskSpec::from_json({{"kind", "classification"}, {"input_shape", {1, 8}}}),
               std::invalid_argument, "classification tasks need \"num_classes\"");
  EXPECT_ERROR(classification_spec(1), std::invalid_argument, "\"num_classes\" >= 2, got 1");
  EXPECT_EQ(
      TaskSpec::from_json({{"kind", "multilabel"}, {"input_shape", {1, 8}}, {"num_classes", 1}})
          .num_outputs,
      1);
  EXPECT_ERROR(
      TaskSpec::from_json({{"kind", "multilabel"}, {"input_shape", {1, 8}}, {"num_classes", 0}}),
      std::invalid_argument, "\"num_classes\" >= 1, got 0");
  EXPECT_ERROR(
      TaskSpec::from_json({{"kind", "regression"}, {"input_shape", {1, 8}}, {"num_classes", 3}}),
      std::invalid_argument, "\"num_classes\" does not apply to regression");
  EXPECT_ERROR(
      TaskSpec::from_json({{"kind", "dense"}, {"input_shape", {1, 8, 8}}, {"num_outputs", -1}}),
      std::invalid_argument, "\"num_outputs\" >= 1, got -1");
  EXPECT_ERROR(TaskSpec::from_json(
                   {{"kind", "classification"}, {"input_shape", {1, 8}}, {"num_outputs", 3}}),
               std::invalid_argument, "use \"num_classes\"");
}

TEST(TaskSpec, InputShapeNeedsTwoOrThreePositiveEntries) {
  for (const json& shape : {json{28}, json{1, 2, 3, 4}, json::array()}) {
    EXPECT_ERROR(TaskSpec::from_json(
                     {{"kind", "classification"}, {"input_shape", shape}, {"num_classes", 2}}),
                 std::invalid_argument, "\"input_shape\" must be [channels, length]");
  }
  EXPECT_ERROR(TaskSpec::from_json(
                   {{"kind", "classification"}, {"input_shape", {0, 28}}, {"num_classes", 2}}),
               std::invalid_argument, "entries must be positive, got [0, 28]");
  EXPECT_ERROR(TaskSpec::from_json({{"kind", "classification"},
                                    {"input_shape", {1000000, 1000000, 1000000}},
                                    {"num_classes", 2}}),
               std::invalid_argument, "impossibly large");
}

TEST(TaskSpec, LossAndMetricMustFitTheKind) {
  EXPECT_ERROR(
      TaskSpec::from_json({{"kind", "regression"},
                           {"input_shape", {1, 8}},
                           {"num_outputs", 1},
                           {"loss", "cross_entropy"}}),
      std::invalid_argument,
      "loss \"cross_entropy\" does not fit regression tasks; use \"mse\", \"relative_l2\"");
  EXPECT_ERROR(TaskSpec::from_json({{"kind", "classification"},
                                    {"input_shape", {1, 8}},
                                    {"num_classes", 3},
                                    {"metric", "mae"}}),
               std::invalid_argument, "metric \"mae\" does not fit classification");
  EXPECT_ERROR(TaskSpec::from_json({{"kind", "classification"},
                                    {"input_shape", {1, 8}},
                                    {"num_classes", 3},
                                    {"loss", "hinge"}}),
               std::invalid_argument,
               "unknown loss \"hinge\"; expected one of \"cross_entropy\", \"bce_with_logits\", "
               "\"mse\", \"relative_l2\"");
  // A binary mask per position: bce_with_logits on a dense task.
  EXPECT_NO_THROW(TaskSpec::from_json({{"kind", "dense"},
                                       {"input_shape", {1, 16, 16}},
                                       {"num_outputs", 1},
                                       {"loss", "bce_with_logits"},
                                       {"metric", "accuracy"}}));
}

TEST(TaskSpec, DenseMasksDefaultToAveragePrecision) {
  // Rare positives per position: accuracy rewards all-negative outputs, so a
  // dense bce_with_logits task is scored by map unless it asks otherwise.
  const nlohmann::json mask = {{"kind", "dense"}, {"input_shape", {1, 16, 16}}, {"num_outputs", 1},
                               {"loss", "bce_with_logits"}};
  EXPECT_EQ(TaskSpec::from_json(mask).metric, MetricKind::kMeanAveragePrecision);
  nlohmann::json auroc = mask;
  auroc["metric"] = "macro_auroc";
  EXPECT_EQ(TaskSpec::from_json(auroc).metric, MetricKind::kMacroAUROC);
  // Other dense losses keep relative_l2 and may not rank.
  nlohmann::json field = {{"kind", "dense"}, {"input_shape", {1, 16, 16}}, {"num_outputs", 1}};
  EXPECT_EQ(TaskSpec::from_json(field).metric, MetricKind::kRelativeL2);
  field["metric"] = "map";
  EXPECT_THROW(TaskSpec::from_json(field), std::invalid_argument);
}

TEST(Loss, BalancingPosWeightIsNegativesOverPositives) {
  at::Tensor y = torch::zeros({4, 1, 5, 5});
  y[0][0][1][2] = 1;
  y[3][0][4][4] = 1;
  EXPECT_DOUBLE_EQ(dash::task::balancing_pos_weight(y), 98.0 / 2.0);
  EXPECT_DOUBLE_EQ(dash::task::balancing_pos_weight(torch::zeros({3, 2})), 1.0);
  EXPECT_DOUBLE_EQ(dash::task::balancing_pos_weight(torch::ones({3, 2})), 1.0);
  at::Tensor rare = torch::zeros({200000});
  rare[7] = 1;
  EXPECT_DOUBLE_EQ(dash::task::balancing_pos_weight(rare), 1e3);  // capped
}

TEST(TaskSpec, PosWeightOnlyWithBCEAndPositive) {
  EXPECT_ERROR(TaskSpec::from_json({{"kind", "classification"},
                                    {"input_shape", {1, 8}},
                                    {"num_classes", 3},
                                    {"pos_weight", 2.0}}),
               std::invalid_argument, "\"pos_weight\" applies only to loss \"bce_with_logits\"");
  EXPECT_ERROR(
      TaskSpec::from_json(
          {{"kind", "multilabel"}, {"input_shape", {1, 8}}, {"num_classes", 3}, {"pos_weight", 0}}),
      std::invalid_argument, "\"pos_weight\" must be a positive number");
  EXPECT_EQ(
      *TaskSpec::from_json(
           {{"kind", "multilabel"}, {"input_shape", {1, 8}}, {"num_classes", 3}, {"pos_weight", 3}})
           .pos_weight,
      3.0);
}

TEST(TaskSpec, NamesTargetShapesAndDirections) {
  for (auto k : {TaskKind::kClassification, TaskKind::kMultilabel, TaskKind::kRegression,
                 TaskKind::kDense}) {
    EXPECT_EQ(dash::task::parse_task_kind(dash::task::to_string(k)), k);
  }
  for (auto m : {MetricKind::kAccuracy, MetricKind::kMacroAUROC, MetricKind::kMacroF1,
                 MetricKind::kRelativeL2, MetricKind::kMAE, MetricKind::kMeanAveragePrecision}) {
    EXPECT_EQ(dash::task::parse_metric(dash::task::to_string(m)), m);
  }
  EXPECT_ERROR(dash::task::parse_task_kind("segmentation"), std::invalid_argument,
               "\"segmentation\"; expected one of \"classification\", \"multilabel\"");
  EXPECT_ERROR(dash::task::parse_metric("auc"), std::invalid_argument, "\"map\"");

  EXPECT_EQ(classification_spec().target_shape(), std::vector<int64_t>{});
  EXPECT_EQ(
      TaskSpec::from_json({{"kind", "regression"}, {"input_shape", {2, 9}}, {"num_outputs", 3}})
          .target_shape(),
      (std::vector<int64_t>{3}));
  const TaskSpec dense =
      TaskSpec::from_json({{"kind", "dense"}, {"input_shape", {2, 9, 7}}, {"num_outputs", 4}});
  EXPECT_EQ(dense.target_shape(), (std::vector<int64_t>{4, 9, 7}));
  EXPECT_EQ(dense.spatial(), (std::vector<int64_t>{9, 7}));

  EXPECT_TRUE(dash::task::higher_is_better(MetricKind::kAccuracy));
  EXPECT_TRUE(dash::task::higher_is_better(MetricKind::kMacroAUROC));
  EXPECT_TRUE(dash::task::higher_is_better(MetricKind::kMeanAveragePrecision));
  EXPECT_TRUE(dash::task::higher_is_better(MetricKind::kMacroF1));
  EXPECT_FALSE(dash::task::higher_is_better(MetricKind::kMAE));
  EXPECT_FALSE(dash::task::higher_is_better(MetricKind::kRelativeL2));
}

// ---- checked_split and make_dataset -----------------------------------------

TEST(Dataset, CheckedSplitConvertsDtypes) {
  const TaskSpec spec = classification_spec(3, {1, 2, 2});
  const at::Tensor x = at::arange(16, at::TensorOptions().dtype(at::kByte)).reshape({4, 1, 2, 2});
  const Split a =
      dash::task::checked_split(spec, x, at::tensor({0.0, 2.0, 1.0, 2.0}, f64()), "train");
  EXPECT_EQ(a.x.scalar_type(), at::kFloat);
  EXPECT_TRUE(a.x.is_contiguous());
  EXPECT_TRUE(a.x.equal(x.to(at::kFloat)));
  EXPECT_EQ(a.y.scalar_type(), at::kLong);
  EXPECT_TRUE(a.y.equal(at::tensor({0, 2, 1, 2}, i64())));
  const Split b = dash::task::checked_split(
      spec, x.to(at::kDouble), at::tensor({0, 1, 1, 2}, at::TensorOptions().dtype(at::kInt)),
      "train");
  EXPECT_TRUE(b.y.equal(at::tensor({0, 1, 1, 2}, i64())));
  EXPECT_EQ(b.size(), 4);

  EXPECT_ERROR(dash::task::checked_split(spec, x, at::tensor({0.0, 2.5, 1.0, 2.0}, f64()), "train"),
               std::invalid_argument, "train: label 2.5 at row 1 is not a whole number");
  EXPECT_ERROR(
      dash::task::checked_split(spec, x.to(at::kComplexFloat), at::zeros({4}, i64()), "train"),
      std::invalid_argument, "train: x has dtype");
}

TEST(Dataset, LabelOutOfRangeNamesLabelAndRow) {
  const TaskSpec spec = classification_spec(10, {1, 4});
  const at::Tensor x = at::zeros({4000, 1, 4}, f32());
  at::Tensor y = at::zeros({4000}, i64());
  y[3051] = 12;
  EXPECT_ERROR_IS(dash::task::checked_split(spec, x, y, "train"), std::invalid_argument,
                  "train: label 12 is out of range for 10 classes at row 3051");
  y[3051] = 0;
  y[7] = -1;
  EXPECT_ERROR_IS(dash::task::checked_split(spec, x, y.to(at::kFloat), "valid"),
                  std::invalid_argument, "valid: label -1 is out of range for 10 classes at row 7");
}

TEST(Dataset, NonFiniteValuesNameTheFirstRow) {
  const TaskSpec spec = classification_spec(2, {2, 3});
  at::Tensor x = at::zeros({40, 2, 3}, f64());
  x[33][1][2] = std::numeric_limits<double>::infinity();
  x[17][0][1] = std::nan("");
  EXPECT_ERROR_IS(dash::task::checked_split(spec, x, at::zeros({40}, i64()), "valid"),
                  std::invalid_argument, "valid: x has NaN or Inf at row 17");
  // A float64 value beyond float32's range becomes Inf on conversion.
  x = at::zeros({40, 2, 3}, f64());
  x[5][0][0] = 1e300;
  EXPECT_ERROR_IS(dash::task::checked_split(spec, x, at::zeros({40}, i64()), "train"),
                  std::invalid_argument, "train: x has NaN or Inf at row 5");

  const TaskSpec reg =
      TaskSpec::from_json({{"kind", "regression"}, {"input_shape", {2, 3}}, {"num_outputs", 2}});
  at::Tensor y = at::zeros({40, 2}, f32());
  y[9][1] = std::nanf("");
  EXPECT_ERROR_IS(dash::task::checked_split(reg, at::zeros({40, 2, 3}), y, "test"),
                  std::invalid_argument, "test: y has NaN or Inf at row 9");
}

TEST(Dataset, ShapeAndRowCountMismatches) {
  const TaskSpec spec = classification_spec(10);
  EXPECT_ERROR_IS(
      dash::task::checked_split(spec, at::zeros({5, 1, 28, 27}), at::zeros({5}, i64()), "test"),
      std::invalid_argument,
      "test: x has shape [5, 1, 28, 27] but the task expects [n, 1, 28, 28]");
  EXPECT_ERROR_IS(
      dash::task::checked_split(spec, at::zeros({100, 1, 28, 28}), at::zeros({99}, i64()), "train"),
      std::invalid_argument, "train: x has 100 rows but y has 99");
  EXPECT_ERROR_IS(
      dash::task::checked_split(spec, at::zeros({3, 1, 28, 28}), at::zeros({3, 2}, i64()), "train"),
      std::invalid_argument, "train: y has shape [3, 2] but the task expects [n]");
  EXPECT_ERROR_IS(
      dash::task::checked_split(spec, at::zeros({0, 1, 28, 28}), at::zeros({0}, i64()), "train"),
      std::invalid_argument, "train split is empty");
  EXPECT_ERROR_IS(dash::task::checked_split(spec, at::Tensor(), at::Tensor(), "train"),
                  std::invalid_argument, "train split is empty");
}

TEST(Dataset, SingleChannelAndSingleOutputShapesAreReshaped) {
  // MNIST arrays come as [n, 28, 28]; one-output targets as [n].
  const TaskSpec spec = classification_spec(10);
  const Split s =
      dash::task::checked_split(spec, at::zeros({6, 28, 28}, at::TensorOptions().dtype(at::kByte)),
                                at::zeros({6, 1}, i64()), "train");
  EXPECT_EQ(s.x.sizes(), (std::vector<int64_t>{6, 1, 28, 28}));
  EXPECT_EQ(s.y.sizes(), (std::vector<int64_t>{6}));

  const TaskSpec reg =
      TaskSpec::from_json({{"kind", "regression"}, {"input_shape", {3, 10}}, {"num_outputs", 1}});
  const Split r =
      dash::task::checked_split(reg, at::ones({4, 3, 10}), at::arange(4, i64()), "train");
  EXPECT_EQ(r.y.scalar_type(), at::kFloat);
  EXPECT_TRUE(r.y.equal(at::arange(4, f32()).reshape({4, 1})));

  const TaskSpec dense =
      TaskSpec::from_json({{"kind", "dense"}, {"input_shape", {2, 4, 4}}, {"num_outputs", 1}});
  const Split d =
      dash::task::checked_split(dense, at::ones({3, 2, 4, 4}), at::ones({3, 4, 4}), "train");
  EXPECT_EQ(d.y.sizes(), (std::vector<int64_t>{3, 1, 4, 4}));

  const TaskSpec ml =
      TaskSpec::from_json({{"kind", "multilabel"}, {"input_shape", {3, 10}}, {"num_classes", 2}});
  at::Tensor y = at::zeros({4, 2}, f32());
  y[2][1] = 0.5;
  EXPECT_ERROR_IS(dash::task::checked_split(ml, at::ones({4, 3, 10}), y, "train"),
                  std::invalid_argument, "train: multilabel target 0.5 at row 2 must be 0 or 1");
}

TEST(Dataset, CarvesValidationDeterministicallyAndDisjointly) {
  const TaskSpec spec =
      TaskSpec::from_json({{"kind", "regression"}, {"input_shape", {1, 2}}, {"num_outputs", 1}});
  const int64_t n = 50;
  // Row i holds the value i everywhere, so rows can be traced after the split.
  const at::Tensor x = at::arange(n, f32()).reshape({n, 1, 1}).expand({n, 1, 2}).contiguous();
  const at::Tensor y = at::arange(n, f32()) * 10;
  auto carve = [&](uint64_t seed) {
    return dash::task::make_dataset(spec, {x, y}, {}, {}, 0.2, seed);
  };
  const auto a = carve(7);
  EXPECT_EQ(a.valid.size(), 10);
  EXPECT_EQ(a.train.size(), 40);
  EXPECT_TRUE(a.test.empty());
  std::set<int64_t> seen;
  for (const Split* s : {&a.train, &a.valid}) {
    for (int64_t i = 0; i < s->size(); ++i) {
      const auto row = static_cast<int64_t>(s->x[i][0][0].item<float>());
      EXPECT_EQ(s->y[i][0].item<float>(), 10.0f * static_cast<float>(row));  // y follows x
      EXPECT_TRUE(seen.insert(row).second) << "row " << row << " appears twice";
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(n));

  const auto b = carve(7);
  EXPECT_TRUE(a.valid.x.equal(b.valid.x));
  EXPECT_TRUE(a.train.x.equal(b.train.x));
  const auto c = carve(8);
  EXPECT_FALSE(a.valid.x.equal(c.valid.x));

  // At least one row each way, whatever the fraction.
  const auto tiny =
      dash::task::make_dataset(spec, {x.narrow(0, 0, 2), y.narrow(0, 0, 2)}, {}, {}, 0.01, 1);
  EXPECT_EQ(tiny.valid.size(), 1);
  EXPECT_EQ(tiny.train.size(), 1);
  EXPECT_ERROR(
      dash::task::make_dataset(spec, {x.narrow(0, 0, 1), y.narrow(0, 0, 1)}, {}, {}, 0.5, 1),
      std::invalid_argument, "needs at least 2");
  EXPECT_ERROR(dash::task::make_dataset(spec, {x, y}, {}, {}, 1.0, 1), std::invalid_argument,
               "valid_fraction must be in (0, 1)");
}

TEST(Dataset, KeepsGivenSplitsAndChecksThem) {
  const TaskSpec spec = classification_spec(3, {1, 4});
  const Split train{at::zeros({8, 1, 4}), at::zeros({8}, i64())};
  const Split valid{at::ones({3, 1, 4}), at::ones({3}, i64())};
  const Split test{at::ones({2, 1, 4}), at::full({2}, 2, i64())};
  const auto d = dash::task::make_dataset(spec, train, valid, test, 0.5, 1);
  EXPECT_EQ(d.train.size(), 8);
  EXPECT_TRUE(d.valid.x.equal(valid.x));
  EXPECT_TRUE(d.test.y.equal(test.y));
  const auto no_test = dash::task::make_dataset(spec, train, valid, {}, 0.5, 1);
  EXPECT_TRUE(no_test.test.empty());
  EXPECT_EQ(no_test.test.x.sizes(), (std::vector<int64_t>{0, 1, 4}));
  EXPECT_ERROR_IS(dash::task::make_dataset(spec, train, valid,
                                           {at::ones({2, 1, 4}), at::full({2}, 3, i64())}, 0.5, 1),
                  std::invalid_argument, "test: label 3 is out of range for 3 classes at row 0");
  EXPECT_ERROR_IS(dash::task::make_dataset(spec, {}, valid, test, 0.5, 1), std::invalid_argument,
                  "train split is empty");
}

// ---- Normalizer -------------------------------------------------------------

TEST(Normalizer, TrainBecomesZeroMeanUnitStd) {
  torch::manual_seed(3);
  const at::Tensor scale = at::tensor({1.0f, 10.0f, 0.1f}).reshape({1, 3, 1, 1});
  const at::Tensor shift = at::tensor({5.0f, -3.0f, 1000.0f}).reshape({1, 3, 1, 1});
  const at::Tensor x = at::randn({64, 3, 5, 7}) * scale + shift;
  const auto norm = dash::task::Normalizer::fit(x);

  // The mean and population std by plain loops in double.
  auto acc = x.accessor<float, 4>();
  for (int64_t c = 0; c < 3; ++c) {
    double sum = 0, sq = 0;
    const double count = 64 * 5 * 7;
    for (int64_t i = 0; i < 64; ++i)
      for (int64_t h = 0; h < 5; ++h)
        for (int64_t w = 0; w < 7; ++w) sum += acc[i][c][h][w];
    const double mean = sum / count;
    for (int64_t i = 0; i < 64; ++i)
      for (int64_t h = 0; h < 5; ++h)
        for (int64_t w = 0; w < 7; ++w) sq += (acc[i][c][h][w] - mean) * (acc[i][c][h][w] - mean);
    EXPECT_NEAR(norm.mean[c].item<float>(), mean, 1e-6 * std::abs(mean) + 1e-6);
    EXPECT_NEAR(norm.std[c].item<float>(), std::sqrt(sq / count), 1e-5 * std::sqrt(sq / count));
  }
  const at::Tensor z = norm.apply(x).to(at::kDouble);
  EXPECT_EQ(z.scalar_type(), at::kDouble);  // the check below runs in double
  const at::Tensor m = z.mean({0, 2, 3});
  const at::Tensor s = z.std({0, 2, 3}, /*unbiased=*/false);
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_NEAR(m[c].item<double>(), 0.0, 1e-4);
    EXPECT_NEAR(s[c].item<double>(), 1.0, 1e-4);
  }

  // A constant channel: std clamped, so apply stays finite.
  const auto flat = dash::task::Normalizer::fit(at::full({4, 1, 3}, 2.5f));
  EXPECT_FLOAT_EQ(flat.std[0].item<float>(), 1e-6f);
  EXPECT_TRUE(flat.apply(at::full({2, 1, 3}, 2.5f)).eq(0).all().item<bool>());
  EXPECT_ERROR(norm.apply(at::zeros({2, 4, 5})), std::invalid_argument, "fitted on 3 channels");
}

TEST(Normalizer, JsonRoundTripAndErrors) {
  dash::task::Normalizer n{at::tensor({0.1f, -2.0f, 1e-3f}), at::tensor({1e-6f, 3.0f, 0.7f})};
  const json j = n.to_json();
  ASSERT_TRUE(j.at("mean").is_array());
  const auto back = dash::task::Normalizer::from_json(j);
  EXPECT_TRUE(back.mean.equal(n.mean));
  EXPECT_TRUE(back.std.equal(n.std));
  const auto fitted = dash::task::Normalizer::fit(at::full({4, 1, 3}, 2.5f));
  EXPECT_TRUE(dash::task::Normalizer::from_json(fitted.to_json()).std.equal(fitted.std));

  EXPECT_ERROR(dash::task::Normalizer::from_json({{"mean", {1.0}}, {"std", {1.0, 2.0}}}),
               std::invalid_argument, "\"mean\" has 1 channels but \"std\" has 2");
  EXPECT_ERROR(dash::task::Normalizer::from_json({{"mean", {1.0}}, {"std", {0.0}}}),
               std::invalid_argument, "\"std\" entries must be >= 1e-6");
  EXPECT_ERROR(dash::task::Normalizer::from_json({{"mean", {"a"}}, {"std", {1.0}}}),
               std::invalid_argument, "\"mean\" must hold finite numbers");
  EXPECT_ERROR(dash::task::Normalizer::from_json({{"mean", {1.0}}, {"std", {1.0}}, {"var", 1}}),
               std::invalid_argument, "unknown key \"var\"");
}

// ---- .npy -------------------------------------------------------------------

std::string npy_v1(const std::string& dict, const std::string& data) {
  std::string header = dict;
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  return out + header + data;
}

template <typename T>
std::string le_bytes(std::initializer_list<T> values) {
  std::string out;
  for (T v : values) {
    unsigned char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));  // the test machine is little-endian (x86-64, arm64)
    out.append(reinterpret_cast<const char*>(b), sizeof(T));
  }
  return out;
}

TEST(Npy, RoundTripsEveryDtype) {
  torch::manual_seed(5);
  const std::vector<at::Tensor> tensors = {
      at::randn({2, 3}),
      at::randn({4}, f64()),
      at::randint(0, 256, {2, 2, 2}, at::TensorOptions().dtype(at::kByte)),
      at::full({}, static_cast<int64_t>(-1234567890123LL), i64()),  // 0-d
      at::empty({0, 3}, f32()),
      at::randn({3, 4}).t(),  // non-contiguous
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string path = scratch("rt" + std::to_string(i) + ".npy");
    dash::task::save_npy(tensors[i], path);
    const at::Tensor back = dash::task::load_npy(path);
    EXPECT_EQ(back.scalar_type(), tensors[i].scalar_type()) << i;
    EXPECT_EQ(back.sizes(), tensors[i].sizes()) << i;
    EXPECT_TRUE(back.equal(tensors[i])) << i;

    const std::string bytes = read_file(path);
    ASSERT_GE(bytes.size(), 10u);
    EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    const size_t header_len = static_cast<unsigned char>(bytes[8]) |
                              (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    EXPECT_EQ((10 + header_len) % 64, 0u) << i;
    EXPECT_EQ(bytes[10 + header_len - 1], '\n');
    EXPECT_EQ(bytes.size() - 10 - header_len, tensors[i].numel() * tensors[i].element_size());
  }
  // The exact header NumPy writes for a 1-D float32 array.
  dash::task::save_npy(at::zeros({3}), scratch("one.npy"));
  EXPECT_EQ(read_file(scratch("one.npy")).substr(10, 60),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }   ");
  EXPECT_ERROR(
      dash::task::save_npy(at::zeros({2}, at::TensorOptions().dtype(at::kHalf)), scratch("h.npy")),
      std::invalid_argument, "dtype Half is not supported");
  EXPECT_ERROR(dash::task::save_npy(at::zeros({2}), scratch("no/such/dir/x.npy")),
               std::runtime_error, "No such file or directory");
}

TEST(Npy, ReadsHandWrittenFiles) {
  // int32, C order, version 1.0: widened to int64.
  const std::string p1 = scratch("i4.npy");
  write_file(p1, npy_v1("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }",
                        le_bytes<int32_t>({1, -2, 3, 2147483647, -2147483647 - 1, 0})));
  const at::Tensor a = dash::task::load_npy(p1);
  EXPECT_EQ(a.scalar_type(), at::kLong);
  EXPECT_TRUE(a.equal(longs({1, -2, 3, 2147483647, -2147483648LL, 0}).reshape({2, 3})));

  // int8, version 2.0 (4-byte header length), keys in another order, no padding.
  std::string dict = "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"|i1\"}\n";
  std::string v2 = std::string("\x93NUMPY\x02\x00", 8);
  v2 += le_bytes<uint32_t>({static_cast<uint32_t>(dict.size())});
  write_file(scratch("i1.npy"), v2 + dict + std::string("\xff\x00\x7f", 3));
  EXPECT_TRUE(dash::task::load_npy(scratch("i1.npy")).equal(longs({-1, 0, 127})));

  // float64 with a Python 2 'L' suffix; bool.
  write_file(scratch("f8.npy"), npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), }",
                                       le_bytes<double>({0.5, -2.0})));
  EXPECT_TRUE(dash::task::load_npy(scratch("f8.npy")).equal(at::tensor({0.5, -2.0}, f64())));
  write_file(scratch("b1.npy"), npy_v1("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }",
                                       std::string("\x01\x00\x01", 3)));
  EXPECT_TRUE(
      dash::task::load_npy(scratch("b1.npy"))
          .equal(at::tensor({1, 0, 1}, at::TensorOptions().dtype(at::kByte)).to(at::kBool)));
}

TEST(Npy, RejectsBadFilesWithClearMessages) {
  using dash::task::load_npy;
  const std::string missing = scratch("missing.npy");
  EXPECT_ERROR_IS(load_npy(missing), std::runtime_error,
                  "cannot open " + missing + ": No such file or directory");
  EXPECT_ERROR(load_npy(fs::path(scratch("x")).parent_path().string()), std::runtime_error,
               "Is a directory");

  auto check = [](const std::string& name, const std::string& bytes, const std::string& text) {
    const std::string path = scratch(name);
    write_file(path, bytes);
    SCOPED_TRACE(name);
    EXPECT_ERROR(load_npy(path), std::runtime_error, text);
  };
  const std::string f4x4 = le_bytes<float>({1, 2, 3, 4});
  check("magic.npy", "PK\x03\x04 this is a zip", "not a .npy file");
  check("short.npy", std::string("\x93NUMPY\x01", 7), "truncated");
  check("version.npy", std::string("\x93NUMPY\x04\x00\x10\x00", 10) + std::string(16, ' '),
        "unsupported .npy format version 4.0");
  check("hlen.npy", std::string("\x93NUMPY\x01\x00\xff\xff", 10) + "{}",
        "truncated: the header length says 65535");
  check("data.npy", npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", f4x4),
        "truncated: the shape (5) of '<f4' needs 20 bytes of data but only 16 follow");
  check("trailing.npy", npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4x4),
        "4 bytes follow the data");
  check("fortran.npy", npy_v1("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", f4x4),
        "Fortran-order arrays are not supported");
  check("big.npy", npy_v1("{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", f4x4),
        "big-endian data ('>f4') is not supported");
  check("object.npy", npy_v1("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", f4x4),
        "object arrays ('|O') cannot be loaded");
  check("half.npy", npy_v1("{'descr': '<f2', 'fortran_order': False, 'shape': (8,), }", f4x4),
        "unsupported dtype '<f2'");
  check("struct.npy",
        npy_v1("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }", f4x4),
        "structured dtypes");
  check(
      "overflow.npy",
      npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", f4x4),
      "is too large");
  check("huge.npy",
        npy_v1("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000,), }", f4x4),
        "needs 800000000000 bytes of data but only 16 follow");
  check("nodescr.npy", npy_v1("{'fortran_order': False, 'shape': (4,), }", f4x4),
        "'descr' is missing");
  check("garbage.npy", npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", f4x4),
        "malformed .npy header");
}

// ---- IDX --------------------------------------------------------------------

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

std::string idx_file(unsigned char type, const std::vector<uint32_t>& dims,
                     const std::string& data) {
  std::string out{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) out += be32(d);
  return out + data;
}

TEST(Idx, ReadsHandMadeFilesPlainAndGzipped) {
  struct Case {
    const char* name;
    unsigned char type;
    std::vector<uint32_t> dims;
    std::string data;  // big-endian
    at::Tensor expected;
  };
  const Case cases[] = {
      {"ubyte",
       0x08,
       {2, 3},
       std::string("\x00\x01\x7f\x80\xfe\xff", 6),
       at::tensor({0, 1, 127, 128, 254, 255}, at::TensorOptions().dtype(at::kByte))
           .reshape({2, 3})},
      {"byte", 0x09, {3}, std::string("\xff\x00\x7f", 3), longs({-1, 0, 127})},
      {"short", 0x0B, {2}, std::string("\x01\x02\xff\xfe", 4), longs({258, -2})},
      {"int", 0x0C, {2}, be32(70000) + be32(0xFFFFFFFE), longs({70000, -2})},
      // 1.0f is 0x3F800000, -2.5f is 0xC0200000.
      {"float",
       0x0D,
       {1, 2},
       be32(0x3F800000) + be32(0xC0200000),
       at::tensor({1.0f, -2.5f}).reshape({1, 2})},
      // 1.5 is 0x3FF8000000000000.
      {"double", 0x0E, {1}, be32(0x3FF80000) + be32(0), at::tensor({1.5}, f64())},
  };
  for (const Case& c : cases) {
    const std::string raw = idx_file(c.type, c.dims, c.data);
    for (bool gz : {false, true}) {
      const std::string path = scratch(std::string(c.name) + (gz ? ".idx.gz" : ".idx"));
      write_file(path, gz ? gzip(raw) : raw);
      const at::Tensor t = dash::task::load_idx(path);
      EXPECT_EQ(t.scalar_type(), c.expected.scalar_type()) << path;
      EXPECT_TRUE(t.equal(c.expected)) << path;
    }
  }
}

TEST(Idx, RejectsBadFilesWithClearMessages) {
  using dash::task::load_idx;
  auto check = [](const std::string& name, const std::string& bytes, const std::string& text) {
    const std::string path = scratch(name);
    write_file(path, bytes);
    SCOPED_TRACE(name);
    EXPECT_ERROR(load_idx(path), std::runtime_error, text);
  };
  const std::string five = "\x01\x02\x03\x04\x05";
  check("short.idx", idx_file(0x08, {10}, five),
        "truncated: the IDX shape (10) needs 10 bytes of data but only 5 follow");
  check("long.idx", idx_file(0x08, {4}, five), "1 bytes follow the data");
  check("dims.idx", std::string("\0\0\x08\x03", 4) + be32(2), "ends inside them");
  check("magic.idx", "\x01\x02\x08\x01" + be32(1) + "x", "not an IDX file");
  check("gzname.idx", gzip(idx_file(0x08, {5}, five)), "looks gzip-compressed");
  check("type.idx", idx_file(0x07, {5}, five), "unknown IDX element type 0x07");
  check("overflow.idx", idx_file(0x0E, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, ""), "is too large");
  check("huge.idx", idx_file(0x08, {4000000000u}, five), "needs 4000000000 bytes");
  check("short.gz", gzip(idx_file(0x08, {10}, five)),
        "truncated: the IDX shape (10) needs 10 bytes of data but the file holds only 5");
  check("long.gz", gzip(idx_file(0x08, {4}, five)), "longer than the 4 bytes");
  check("huge.gz", gzip(idx_file(0x08, {4000000000u}, five)), "more than a gzip file of");
  check("notgz.gz", idx_file(0x08, {5}, five), "corrupt gzip data: bad gzip header");
  const std::string whole = gzip(idx_file(0x08, {4096}, std::string(4096, 'a')));
  check("cut.gz", whole.substr(0, whole.size() / 2),
        scratch("cut.gz") + ": corrupt gzip data: the compressed stream ends early");
  EXPECT_ERROR_IS(load_idx(scratch("none.gz")), std::runtime_error,
                  "cannot open " + scratch("none.gz") + ": No such file or directory");
}

const std::string kFashion = "/usr/share/datasets/fashion-mnist/";

TEST(Idx, ReadsFashionMnist) {
  if (!fs::exists(kFashion + "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "no Fashion-MNIST here";
  const at::Tensor labels = dash::task::load_array(kFashion + "train-labels-idx1-ubyte.gz");
  EXPECT_EQ(labels.scalar_type(), at::kByte);
  EXPECT_EQ(labels.sizes(), (std::vector<int64_t>{60000}));
  EXPECT_TRUE(labels.narrow(0, 0, 10).equal(
      at::tensor({9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, at::TensorOptions().dtype(at::kByte))));
  EXPECT_EQ(labels.max().item<int64_t>(), 9);
  // Fashion-MNIST is balanced: 6000 of each class.
  EXPECT_TRUE(labels.to(at::kLong).bincount().eq(6000).all().item<bool>());

  // The one read of the 60000-image file.
  const at::Tensor images = dash::task::load_array(kFashion + "train-images-idx3-ubyte.gz");
  EXPECT_EQ(images.scalar_type(), at::kByte);
  EXPECT_EQ(images.sizes(), (std::vector<int64_t>{60000, 28, 28}));
  EXPECT_GT(images.max().item<int64_t>(), 200);

  // Straight into a task: [n, 28, 28] uint8 becomes [n, 1, 28, 28] float32.
  const Split s = dash::task::checked_split(classification_spec(10), images.narrow(0, 0, 100),
                                            labels.narrow(0, 0, 100), "train");
  EXPECT_EQ(s.x.sizes(), (std::vector<int64_t>{100, 1, 28, 28}));
  EXPECT_EQ(s.y[0].item<int64_t>(), 9);
}

TEST(Idx, LoadArrayChoosesTheReaderByName) {
  dash::task::save_npy(at::arange(3, i64()), scratch("a.npy"));
  EXPECT_TRUE(dash::task::load_array(scratch("a.npy")).equal(at::arange(3, i64())));
  write_file(scratch("b-ubyte"), idx_file(0x08, {2}, "\x01\x02"));
  EXPECT_EQ(dash::task::load_array(scratch("b-ubyte")).sizes(), (std::vector<int64_t>{2}));
  write_file(scratch("c.idx1"), idx_file(0x08, {2}, "\x01\x02"));
  EXPECT_EQ(dash::task::load_array(scratch("c.idx1")).sizes(), (std::vector<int64_t>{2}));
  EXPECT_ERROR(dash::task::load_array(scratch("d.csv")), std::invalid_argument,
               "cannot tell the format of");
}

// ---- losses -----------------------------------------------------------------

TEST(Loss, CrossEntropyMatchesHandComputation) {
  torch::manual_seed(11);
  const TaskSpec spec = classification_spec(4, {1, 8});
  const at::Tensor logits = at::randn({6, 4}, f64()) * 3;
  const at::Tensor y = at::tensor({0, 3, 1, 1, 2, 3}, i64());
  double expected = 0;
  for (int64_t i = 0; i < 6; ++i) {
    double mx = -1e300;
    for (int64_t c = 0; c < 4; ++c) mx = std::max(mx, logits[i][c].item<double>());
    double z = 0;
    for (int64_t c = 0; c < 4; ++c) z += std::exp(logits[i][c].item<double>() - mx);
    expected += mx + std::log(z) - logits[i][y[i].item<int64_t>()].item<double>();
  }
  expected /= 6;
  EXPECT_NEAR(dash::task::compute_loss(spec, logits, y).item<double>(), expected, 1e-12);

  EXPECT_ERROR(dash::task::compute_loss(spec, logits, at::tensor({0, 4, 1, 1, 2, 3}, i64())),
               std::invalid_argument, "label 4 is out of range for 4 classes");
  EXPECT_ERROR(dash::task::compute_loss(spec, logits.narrow(1, 0, 3), y), std::invalid_argument,
               "outputs must be [n, 4], got [6, 3]");
  EXPECT_ERROR(dash::task::compute_loss(spec, logits, y.to(at::kFloat)), std::invalid_argument,
               "class labels must be integers");
}

TEST(Loss, BCEWithPosWeightMatchesHandComputation) {
  const TaskSpec spec = TaskSpec::from_json(
      {{"kind", "multilabel"}, {"input_shape", {1, 8}}, {"num_classes", 2}, {"pos_weight", 3.0}});
  const at::Tensor logits = at::tensor({0.5, -1.0, 2.0, 0.0}, f64()).reshape({2, 2});
  const at::Tensor y = at::tensor({1.0, 0.0, 0.0, 1.0}, f64()).reshape({2, 2});
  double expected = 0;
  for (int64_t i = 0; i < 4; ++i) {
    const double x = logits.flatten()[i].item<double>(), t = y.flatten()[i].item<double>();
    const double p = 1 / (1 + std::exp(-x));
    expected += -(3.0 * t * std::log(p) + (1 - t) * std::log(1 - p));
  }
  expected /= 4;
  EXPECT_NEAR(dash::task::compute_loss(spec, logits, y).item<double>(), expected, 1e-12);
  EXPECT_ERROR(dash::task::compute_loss(spec, logits, y.reshape({4})), std::invalid_argument,
               "outputs have shape [2, 2] but y has shape [4]");
}

TEST(Loss, MSEAndRelativeL2ByHand) {
  const TaskSpec rel = TaskSpec::from_json({{"kind", "regression"},
                                            {"input_shape", {1, 8}},
                                            {"num_outputs", 2},
                                            {"loss", "relative_l2"}});
  const at::Tensor out = at::tensor({3.0, 4.0, 1.0, 1.0}, f64()).reshape({2, 2});
  const at::Tensor y = at::tensor({0.0, 5.0, 1.0, 0.0}, f64()).reshape({2, 2});
  // Row 0: ||(3, -1)|| / ||(0, 5)|| = sqrt(10) / 5; row 1: ||(0, 1)|| / ||(1, 0)|| = 1.
  const double expected = (std::sqrt(10.0) / 5 + 1) / 2;
  EXPECT_NEAR(dash::task::compute_loss(rel, out, y).item<double>(), expected, 1e-12);
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kRelativeL2, out, y), expected, 1e-12);

  TaskSpec mse = rel;
  mse.loss = LossKind::kMSE;
  // Squared errors 9, 1, 0, 1.
  EXPECT_NEAR(dash::task::compute_loss(mse, out, y).item<double>(), 11.0 / 4, 1e-12);
  EXPECT_ERROR(dash::task::compute_loss(mse, out.reshape({4, 1}), y.reshape({4, 1})),
               std::invalid_argument, "outputs have shape [4, 1] but the task expects [n, 2]");

  // A perfect prediction has a zero, finite gradient.
  const at::Tensor p = y.clone().requires_grad_(true);
  dash::task::compute_loss(rel, p, y).backward();
  EXPECT_TRUE(p.grad().isfinite().all().item<bool>());
  EXPECT_EQ(p.grad().abs().max().item<double>(), 0.0);
}

// ---- metrics ----------------------------------------------------------------

TEST(Metric, AUROCByHandWithTies) {
  // The textbook case: of the 4 (positive, negative) pairs, 3 are ordered right.
  const at::Tensor s = at::tensor({0.1, 0.4, 0.35, 0.8}, f64()).reshape({4, 1});
  const at::Tensor y = at::tensor({0.0, 0.0, 1.0, 1.0}, f64()).reshape({4, 1});
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kMacroAUROC, s, y), 0.75, 1e-12);
  // Ties count one half: positives {0.5, 0.9} against negatives {0.5, 0.2}
  // give 0.5 + 1 + 1 + 1 out of 4.
  const at::Tensor st = at::tensor({0.5, 0.5, 0.2, 0.9}, f64()).reshape({4, 1});
  const at::Tensor yt = at::tensor({1.0, 0.0, 0.0, 1.0}, f64()).reshape({4, 1});
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kMacroAUROC, st, yt), 0.875, 1e-12);
  // Two columns averaged; a third with no negatives is left out.
  const at::Tensor s3 = at::cat({s, st, at::zeros({4, 1}, f64())}, 1);
  const at::Tensor y3 = at::cat({y, yt, at::ones({4, 1}, f64())}, 1);
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kMacroAUROC, s3, y3), (0.75 + 0.875) / 2,
              1e-12);
  EXPECT_TRUE(std::isnan(
      dash::task::compute_metric(MetricKind::kMacroAUROC, at::zeros({4, 1}), at::ones({4, 1}))));
  // Classification, one-vs-rest on softmax: with logits (0, s) both classes
  // rank the rows by s, so each class's AUROC is the one above.
  const at::Tensor logits = at::cat({at::zeros({4, 1}, f64()), s}, 1);
  EXPECT_NEAR(
      dash::task::compute_metric(MetricKind::kMacroAUROC, logits, at::tensor({0, 0, 1, 1}, i64())),
      0.75, 1e-12);
  // Dense outputs [n, k, length]: each position is a sample.
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kMacroAUROC, s.reshape({1, 1, 4}),
                                         y.reshape({1, 1, 4})),
              0.75, 1e-12);
}

TEST(Metric, AveragePrecisionByHand) {
  // Descending: 0.8 (+) precision 1, 0.4 (-), 0.35 (+) precision 2/3.
  const at::Tensor s = at::tensor({0.1, 0.4, 0.35, 0.8}, f64()).reshape({4, 1});
  const at::Tensor y = at::tensor({0.0, 0.0, 1.0, 1.0}, f64()).reshape({4, 1});
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kMeanAveragePrecision, s, y),
              (1 + 2.0 / 3) / 2, 1e-12);
  // A tie is one threshold: a positive and a negative tied at the top give
  // precision 1/2 for the full recall, not 1.
  const at::Tensor st = at::tensor({0.5, 0.5}, f64()).reshape({2, 1});
  const at::Tensor yt = at::tensor({0.0, 1.0}, f64()).reshape({2, 1});
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kMeanAveragePrecision, st, yt), 0.5, 1e-12);
  // Thresholds 0.9 (P 1, R 1/2) and 0.5 (P 2/3, R 1).
  const at::Tensor s2 = at::tensor({0.9, 0.5, 0.5, 0.1}, f64()).reshape({4, 1});
  const at::Tensor y2 = at::tensor({1.0, 0.0, 1.0, 0.0}, f64()).reshape({4, 1});
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kMeanAveragePrecision, s2, y2),
              0.5 * 1 + 0.5 * 2.0 / 3, 1e-12);
}

TEST(Metric, MacroF1ByHand) {
  // y = (0, 1, 2, 0, 1, 2), predicted (0, 2, 1, 0, 0, 1): class 0 has tp 2,
  // fp 1, fn 0 (F1 0.8); classes 1 and 2 have no hit (F1 0). Class 3 is
  // neither present nor predicted and is left out: 0.8 / 3.
  const std::vector<int64_t> pred = {0, 2, 1, 0, 0, 1};
  at::Tensor logits = at::zeros({6, 4}, f64());
  for (int64_t i = 0; i < 6; ++i) logits[i][pred[static_cast<size_t>(i)]] = 5;
  const at::Tensor y = at::tensor({0, 1, 2, 0, 1, 2}, i64());
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kMacroF1, logits, y), 0.8 / 3, 1e-12);
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kAccuracy, logits, y), 2.0 / 6, 1e-12);

  // Multilabel at logit 0 (sigmoid 0.5): column 0 predicted (1, 1, 0, 1) for
  // truth (1, 0, 1, 1): F1 = 4 / 6; column 1 exact: 1; column 2 empty: left out.
  const at::Tensor ml =
      at::tensor({1.0, -1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0}, f64())
          .reshape({4, 3});
  const at::Tensor my =
      at::tensor({1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0}, f64())
          .reshape({4, 3});
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kMacroF1, ml, my), (4.0 / 6 + 1) / 2, 1e-12);
  // Elementwise accuracy: 10 of 12 agree.
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kAccuracy, ml, my), 10.0 / 12, 1e-12);
}

TEST(Metric, MAEAndErrors) {
  const at::Tensor out = at::tensor({1.0f, -2.0f, 3.0f, 0.5f}).reshape({2, 2});
  const at::Tensor y = at::tensor({0.0f, 0.0f, 3.0f, -0.5f}).reshape({2, 2});
  EXPECT_NEAR(dash::task::compute_metric(MetricKind::kMAE, out, y), (1 + 2 + 0 + 1) / 4.0, 1e-7);
  EXPECT_ERROR(dash::task::compute_metric(MetricKind::kMAE, out, y.reshape({4})),
               std::invalid_argument, "outputs have shape [2, 2] but y has shape [4]");
  EXPECT_ERROR(dash::task::compute_metric(MetricKind::kAccuracy, out, at::tensor({0, 2}, i64())),
               std::invalid_argument, "label 2 is out of range for 2 classes");
  EXPECT_ERROR(dash::task::compute_metric(MetricKind::kMAE, at::zeros({0, 2}), at::zeros({0, 2})),
               std::invalid_argument, "no rows");
}

}  // namespace
