#pragma once
// What a task is: the kind of prediction, the shape of one sample, and how it is
// scored. Parsed from JSON at the edge (capi, the runner) and typed inside.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dash::task {

enum class TaskKind { kClassification, kMultilabel, kRegression, kDense };
enum class LossKind { kCrossEntropy, kBCEWithLogits, kMSE, kRelativeL2 };
enum class MetricKind { kAccuracy, kMacroAUROC, kMacroF1, kRelativeL2, kMAE, kMeanAveragePrecision };

// JSON names: "classification" | "multilabel" | "regression" | "dense";
// "cross_entropy" | "bce_with_logits" | "mse" | "relative_l2";
// "accuracy" | "macro_auroc" | "macro_f1" | "relative_l2" | "mae" | "map".
std::string to_string(TaskKind);
std::string to_string(LossKind);
std::string to_string(MetricKind);
TaskKind parse_task_kind(const std::string&);    // throws std::invalid_argument naming the value
LossKind parse_loss(const std::string&);         // and listing the accepted ones
MetricKind parse_metric(const std::string&);

bool higher_is_better(MetricKind);

struct TaskSpec {
  TaskKind kind = TaskKind::kClassification;
  std::vector<int64_t> input_shape;  // [channels, length] or [channels, height, width]
  // classification/multilabel: number of classes; regression: values per
  // sample; dense: output channels per position (outputs keep the input's
  // spatial shape).
  int64_t num_outputs = 0;
  LossKind loss = LossKind::kCrossEntropy;
  MetricKind metric = MetricKind::kAccuracy;
  std::optional<double> pos_weight;  // bce_with_logits only
  // 1D only: outputs may not depend on later positions (a causal backbone,
  // as the reference's retrained ResNet1D). Default: on for dense 1D tasks
  // (a target per position, e.g. the next notes of a piece), off otherwise.
  bool causal = false;

  int dims() const { return static_cast<int>(input_shape.size()) - 1; }  // 1 or 2
  int64_t in_channels() const { return input_shape.at(0); }
  std::vector<int64_t> spatial() const { return {input_shape.begin() + 1, input_shape.end()}; }

  // The shape of one target: {} for classification (an int64 class index),
  // {num_outputs} for multilabel and regression, {num_outputs, spatial...} for dense.
  std::vector<int64_t> target_shape() const;

  // Throws std::invalid_argument with a message naming the field and the fix.
  // Losses per kind: classification cross_entropy; multilabel bce_with_logits;
  // regression mse, relative_l2; dense relative_l2, mse, bce_with_logits (a
  // mask per position). Metrics: classification and multilabel accuracy,
  // macro_auroc, macro_f1, map; regression and dense mae, relative_l2, and
  // dense with bce_with_logits also map (its default), macro_auroc, accuracy.
  void validate() const;

  // Keys: "kind" (required), "input_shape" (required), "num_classes" (classification,
  // multilabel) or "num_outputs" (regression, dense), optional "loss", "metric",
  // "pos_weight", "causal". Missing loss/metric take the kind's defaults. Unknown keys and
  // wrong types are errors naming the key.
  static TaskSpec from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
};

LossKind default_loss(TaskKind);
// Dense tasks with bce_with_logits (a mask per position) default to map.
MetricKind default_metric(TaskKind, LossKind);

}  // namespace dash::task
