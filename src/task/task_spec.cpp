#include "task/task_spec.h"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace dash::task {

namespace {

const TaskKind kAllKinds[] = {TaskKind::kClassification, TaskKind::kMultilabel,
                              TaskKind::kRegression, TaskKind::kDense};
const LossKind kAllLosses[] = {LossKind::kCrossEntropy, LossKind::kBCEWithLogits, LossKind::kMSE,
                               LossKind::kRelativeL2};
const MetricKind kAllMetrics[] = {MetricKind::kAccuracy, MetricKind::kMacroAUROC,
                                  MetricKind::kMacroF1,  MetricKind::kRelativeL2,
                                  MetricKind::kMAE,      MetricKind::kMeanAveragePrecision};

template <typename E>
std::string join_names(const std::vector<E>& values) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ", ";
    out += "\"" + to_string(values[i]) + "\"";
  }
  return out;
}

template <typename E, size_t N>
E parse_enum(const std::string& s, const E (&all)[N], const char* what) {
  for (E e : all) {
    if (to_string(e) == s) return e;
  }
  throw std::invalid_argument(std::string("unknown ") + what + " \"" + s + "\"; expected one of " +
                              join_names(std::vector<E>(std::begin(all), std::end(all))));
}

// Which losses and metrics make sense for each kind. Dense tasks may be binary
// per position (a mask), hence bce_with_logits and accuracy with it.
std::vector<LossKind> losses_for(TaskKind kind) {
  switch (kind) {
    case TaskKind::kClassification:
      return {LossKind::kCrossEntropy};
    case TaskKind::kMultilabel:
      return {LossKind::kBCEWithLogits};
    case TaskKind::kRegression:
      return {LossKind::kMSE, LossKind::kRelativeL2};
    case TaskKind::kDense:
      return {LossKind::kRelativeL2, LossKind::kMSE, LossKind::kBCEWithLogits};
  }
  return {};
}

std::vector<MetricKind> metrics_for(TaskKind kind, LossKind loss) {
  switch (kind) {
    case TaskKind::kClassification:
    case TaskKind::kMultilabel:
      return {MetricKind::kAccuracy, MetricKind::kMacroAUROC, MetricKind::kMacroF1,
              MetricKind::kMeanAveragePrecision};
    case TaskKind::kRegression:
      return {MetricKind::kMAE, MetricKind::kRelativeL2};
    case TaskKind::kDense:
      if (loss == LossKind::kBCEWithLogits) {
        // Per position, each position one more sample: for rare positives
        // accuracy says little (all-negative scores 99%), ranking metrics do.
        return {MetricKind::kMeanAveragePrecision, MetricKind::kMacroAUROC, MetricKind::kAccuracy,
                MetricKind::kRelativeL2, MetricKind::kMAE};
      }
      return {MetricKind::kRelativeL2, MetricKind::kMAE};
  }
  return {};
}

template <typename E>
bool contains(const std::vector<E>& v, E e) {
  for (E x : v) {
    if (x == e) return true;
  }
  return false;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

bool uses_num_classes(TaskKind kind) {
  return kind == TaskKind::kClassification || kind == TaskKind::kMultilabel;
}

[[noreturn]] void wrong_type(const std::string& key, const char* expected,
                             const nlohmann::json& v) {
  throw std::invalid_argument("task: \"" + key + "\" must be " + expected + ", got " +
                              v.type_name() + " " + v.dump());
}

std::string get_string(const nlohmann::json& j, const std::string& key) {
  const auto& v = j.at(key);
  if (!v.is_string()) wrong_type(key, "a string", v);
  return v.get<std::string>();
}

int64_t get_int(const nlohmann::json& v, const std::string& key) {
  if (!v.is_number_integer()) wrong_type(key, "an integer", v);
  if (v.is_number_unsigned() &&
      v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    throw std::invalid_argument("task: \"" + key + "\" is too large: " + v.dump());
  }
  return v.get<int64_t>();
}

}  // namespace

std::string to_string(TaskKind k) {
  switch (k) {
    case TaskKind::kClassification:
      return "classification";
    case TaskKind::kMultilabel:
      return "multilabel";
    case TaskKind::kRegression:
      return "regression";
    case TaskKind::kDense:
      return "dense";
  }
  return "unknown";
}

std::string to_string(LossKind k) {
  switch (k) {
    case LossKind::kCrossEntropy:
      return "cross_entropy";
    case LossKind::kBCEWithLogits:
      return "bce_with_logits";
    case LossKind::kMSE:
      return "mse";
    case LossKind::kRelativeL2:
      return "relative_l2";
  }
  return "unknown";
}

std::string to_string(MetricKind k) {
  switch (k) {
    case MetricKind::kAccuracy:
      return "accuracy";
    case MetricKind::kMacroAUROC:
      return "macro_auroc";
    case MetricKind::kMacroF1:
      return "macro_f1";
    case MetricKind::kRelativeL2:
      return "relative_l2";
    case MetricKind::kMAE:
      return "mae";
    case MetricKind::kMeanAveragePrecision:
      return "map";
  }
  return "unknown";
}

TaskKind parse_task_kind(const std::string& s) { return parse_enum(s, kAllKinds, "task kind"); }
LossKind parse_loss(const std::string& s) { return parse_enum(s, kAllLosses, "loss"); }
MetricKind parse_metric(const std::string& s) { return parse_enum(s, kAllMetrics, "metric"); }

bool higher_is_better(MetricKind m) {
  switch (m) {
    case MetricKind::kAccuracy:
    case MetricKind::kMacroAUROC:
    case MetricKind::kMacroF1:
    case MetricKind::kMeanAveragePrecision:
      return true;
    case MetricKind::kRelativeL2:
    case MetricKind::kMAE:
      return false;
  }
  return false;
}

LossKind default_loss(TaskKind k) {
  switch (k) {
    case TaskKind::kClassification:
      return LossKind::kCrossEntropy;
    case TaskKind::kMultilabel:
      return LossKind::kBCEWithLogits;
    case TaskKind::kRegression:
      return LossKind::kMSE;
    case TaskKind::kDense:
      return LossKind::kRelativeL2;
  }
  return LossKind::kCrossEntropy;
}

MetricKind default_metric(TaskKind k, LossKind loss) {
  if (k == TaskKind::kDense && loss == LossKind::kBCEWithLogits) {
    return MetricKind::kMeanAveragePrecision;
  }
  switch (k) {
    case TaskKind::kClassification:
      return MetricKind::kAccuracy;
    case TaskKind::kMultilabel:
      return MetricKind::kMacroAUROC;
    case TaskKind::kRegression:
      return MetricKind::kMAE;
    case TaskKind::kDense:
      return MetricKind::kRelativeL2;
  }
  return MetricKind::kAccuracy;
}

std::vector<int64_t> TaskSpec::target_shape() const {
  switch (kind) {
    case TaskKind::kClassification:
      return {};
    case TaskKind::kMultilabel:
    case TaskKind::kRegression:
      return {num_outputs};
    case TaskKind::kDense: {
      std::vector<int64_t> s{num_outputs};
      for (size_t i = 1; i < input_shape.size(); ++i) s.push_back(input_shape[i]);
      return s;
    }
  }
  return {};
}

void TaskSpec::validate() const {
  const std::string k = to_string(kind);
  if (input_shape.size() != 2 && input_shape.size() != 3) {
    throw std::invalid_argument(
        "task: \"input_shape\" must be [channels, length] or [channels, height, width], got " +
        shape_string(input_shape));
  }
  // The product bound keeps every later size computation (rows * sample size,
  // bytes) far from overflow.
  int64_t numel = 1;
  for (int64_t d : input_shape) {
    if (d < 1) {
      throw std::invalid_argument("task: \"input_shape\" entries must be positive, got " +
                                  shape_string(input_shape));
    }
    if (numel > (int64_t{1} << 40) / d) {
      throw std::invalid_argument("task: \"input_shape\" " + shape_string(input_shape) +
                                  " describes an impossibly large sample");
    }
    numel *= d;
  }
  const char* count_key = uses_num_classes(kind) ? "num_classes" : "num_outputs";
  const int64_t min_outputs = kind == TaskKind::kClassification ? 2 : 1;
  if (num_outputs < min_outputs) {
    throw std::invalid_argument("task: " + k + " needs \"" + count_key +
                                "\" >= " + std::to_string(min_outputs) + ", got " +
                                std::to_string(num_outputs));
  }
  if (num_outputs > (int64_t{1} << 40) / numel) {
    throw std::invalid_argument("task: \"" + std::string(count_key) + "\" " +
                                std::to_string(num_outputs) + " is impossibly large");
  }
  const auto losses = losses_for(kind);
  if (!contains(losses, loss)) {
    throw std::invalid_argument("task: loss \"" + to_string(loss) + "\" does not fit " + k +
                                " tasks; use " + join_names(losses));
  }
  const auto metrics = metrics_for(kind, loss);
  if (!contains(metrics, metric)) {
    throw std::invalid_argument("task: metric \"" + to_string(metric) + "\" does not fit " + k +
                                " tasks with loss \"" + to_string(loss) + "\"; use " +
                                join_names(metrics));
  }
  if (causal && input_shape.size() != 2) {
    throw std::invalid_argument("task: \"causal\" applies only to 1D inputs ([channels, length])");
  }
  if (pos_weight.has_value()) {
    if (loss != LossKind::kBCEWithLogits) {
      throw std::invalid_argument(
          "task: \"pos_weight\" applies only to loss \"bce_with_logits\", "
          "not \"" +
          to_string(loss) + "\"");
    }
    if (!std::isfinite(*pos_weight) || *pos_weight <= 0) {
      throw std::invalid_argument("task: \"pos_weight\" must be a positive number, got " +
                                  std::to_string(*pos_weight));
    }
  }
}

TaskSpec TaskSpec::from_json(const nlohmann::json& j) {
  if (!j.is_object()) {
    throw std::invalid_argument(std::string("task: expected a JSON object, got ") + j.type_name());
  }
  static const char* const kKeys[] = {"kind", "input_shape", "num_classes", "num_outputs",
                                      "loss", "metric",      "pos_weight", "causal"};
  for (const auto& item : j.items()) {
    bool known = false;
    for (const char* key : kKeys) known = known || item.key() == key;
    if (!known) {
      throw std::invalid_argument("task: unknown key \"" + item.key() +
                                  "\"; accepted keys are \"kind\", \"input_shape\", "
                                  "\"num_classes\", \"num_outputs\", \"loss\", \"metric\", "
                                  "\"pos_weight\"");
    }
  }
  if (!j.contains("kind")) throw std::invalid_argument("task: missing required key \"kind\"");
  if (!j.contains("input_shape")) {
    throw std::invalid_argument("task: missing required key \"input_shape\"");
  }

  TaskSpec spec;
  const std::string kind_name = get_string(j, "kind");
  try {
    spec.kind = parse_task_kind(kind_name);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("task: \"kind\": ") + e.what());
  }

  const auto& shape = j.at("input_shape");
  if (!shape.is_array()) wrong_type("input_shape", "an array of integers", shape);
  for (const auto& d : shape) {
    if (!d.is_number_integer()) wrong_type("input_shape", "an array of integers", shape);
    spec.input_shape.push_back(get_int(d, "input_shape"));
  }

  const std::string k = to_string(spec.kind);
  const std::string count_key = uses_num_classes(spec.kind) ? "num_classes" : "num_outputs";
  const std::string other_key = uses_num_classes(spec.kind) ? "num_outputs" : "num_classes";
  if (j.contains(other_key)) {
    throw std::invalid_argument("task: \"" + other_key + "\" does not apply to " + k +
                                " tasks; use \"" + count_key + "\"");
  }
  if (!j.contains(count_key)) {
    throw std::invalid_argument("task: " + k + " tasks need \"" + count_key + "\"");
  }
  spec.num_outputs = get_int(j.at(count_key), count_key);

  spec.loss = default_loss(spec.kind);
  if (j.contains("loss")) {
    const std::string name = get_string(j, "loss");
    try {
      spec.loss = parse_loss(name);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("task: \"loss\": ") + e.what());
    }
  }
  spec.metric = default_metric(spec.kind, spec.loss);
  if (j.contains("metric")) {
    const std::string name = get_string(j, "metric");
    try {
      spec.metric = parse_metric(name);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("task: \"metric\": ") + e.what());
    }
  }
  if (j.contains("pos_weight")) {
    const auto& v = j.at("pos_weight");
    if (!v.is_number()) wrong_type("pos_weight", "a number", v);
    spec.pos_weight = v.get<double>();
  }
  spec.causal = spec.kind == TaskKind::kDense && spec.input_shape.size() == 2;
  if (j.contains("causal")) {
    const auto& v = j.at("causal");
    if (!v.is_boolean()) wrong_type("causal", "true or false", v);
    spec.causal = v.get<bool>();
  }
  spec.validate();
  return spec;
}

nlohmann::json TaskSpec::to_json() const {
  nlohmann::json j;
  j["kind"] = to_string(kind);
  j["input_shape"] = input_shape;
  j[uses_num_classes(kind) ? "num_classes" : "num_outputs"] = num_outputs;
  j["loss"] = to_string(loss);
  j["metric"] = to_string(metric);
  if (pos_weight.has_value()) j["pos_weight"] = *pos_weight;
  // Written only where it differs from its default, so older specs read the same.
  if (causal != (kind == TaskKind::kDense && input_shape.size() == 2)) j["causal"] = causal;
  return j;
}

}  // namespace dash::task
