#include "task/loss_metric.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dash::task {

namespace {

// Below this a target's norm counts as zero; relative L2 divides by it
// instead of by zero, so an all-zero target gives a large finite loss.
constexpr double kTinyNorm = 1e-12;

std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i > 0 ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

[[noreturn]] void bad(const std::string& who, const std::string& what) {
  throw std::invalid_argument(who + ": " + what);
}

void check_defined(const at::Tensor& outputs, const at::Tensor& y, const std::string& who) {
  if (!outputs.defined() || !y.defined()) bad(who, "outputs and y must both be defined");
  if (outputs.dim() == 0 || outputs.size(0) == 0) bad(who, "outputs hold no rows");
  if (!at::isFloatingType(outputs.scalar_type())) {
    bad(who,
        std::string("outputs must be floating point, got ") + c10::toString(outputs.scalar_type()));
  }
}

void check_same_shape(const at::Tensor& outputs, const at::Tensor& y, const std::string& who) {
  if (outputs.sizes() != y.sizes()) {
    bad(who, "outputs have shape " + shape_string(outputs.sizes()) + " but y has shape " +
                 shape_string(y.sizes()));
  }
}

// Class labels [n] against outputs [n, classes]; returns them as int64.
at::Tensor checked_labels(const at::Tensor& outputs, const at::Tensor& y, const std::string& who) {
  if (outputs.dim() != 2) {
    bad(who, "class outputs must be [n, classes], got " + shape_string(outputs.sizes()));
  }
  if (y.dim() != 1 || y.size(0) != outputs.size(0)) {
    bad(who, "class labels must be [" + std::to_string(outputs.size(0)) + "] for outputs " +
                 shape_string(outputs.sizes()) + ", got " + shape_string(y.sizes()));
  }
  if (!at::isIntegralType(y.scalar_type(), /*includeBool=*/false)) {
    bad(who, std::string("class labels must be integers, got ") + c10::toString(y.scalar_type()));
  }
  const at::Tensor labels = y.to(at::kLong);
  const int64_t classes = outputs.size(1);
  const int64_t lo = labels.min().item<int64_t>();
  const int64_t hi = labels.max().item<int64_t>();
  if (lo < 0 || hi >= classes) {
    bad(who, "label " + std::to_string(lo < 0 ? lo : hi) + " is out of range for " +
                 std::to_string(classes) + " classes");
  }
  return labels;
}

at::Tensor relative_l2(const at::Tensor& outputs, const at::Tensor& y) {
  const int64_t n = outputs.size(0);
  // linalg_vector_norm's gradient is defined (zero) where a residual is zero.
  const at::Tensor diff = at::linalg_vector_norm((outputs - y).reshape({n, -1}), 2, {1});
  const at::Tensor denom = at::linalg_vector_norm(y.reshape({n, -1}), 2, {1}).clamp_min(kTinyNorm);
  return (diff / denom).mean();
}

// [n, k, spatial...] -> [n * spatial, k]: each position is one more sample of
// each of the k classes. [n] is one class.
at::Tensor as_columns(const at::Tensor& t) {
  if (t.dim() == 1) return t.reshape({-1, 1});
  if (t.dim() == 2) return t;
  return t.movedim(1, -1).reshape({-1, t.size(1)});
}

// AUROC of one class: the Mann-Whitney statistic with tied scores given their
// average rank. `order` sorts `scores` ascending. NaN when a class is missing.
double auroc_column(const double* scores, const int64_t* order, const bool* positive, int64_t n,
                    int64_t stride) {
  double pos_rank_sum = 0;
  int64_t pos = 0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i;
    const double v = scores[order[i * stride] * stride];
    int64_t group_pos = 0;
    while (j < n && scores[order[j * stride] * stride] == v) {
      group_pos += positive[order[j * stride] * stride] ? 1 : 0;
      ++j;
    }
    if (j == i) {  // NaN never equals itself: its own group
      group_pos = positive[order[i * stride] * stride] ? 1 : 0;
      j = i + 1;
    }
    const double avg_rank = 0.5 * static_cast<double>(i + 1 + j);  // ranks i+1 .. j
    pos_rank_sum += avg_rank * static_cast<double>(group_pos);
    pos += group_pos;
    i = j;
  }
  const int64_t neg = n - pos;
  if (pos == 0 || neg == 0) return std::numeric_limits<double>::quiet_NaN();
  const double p = static_cast<double>(pos);
  return (pos_rank_sum - p * (p + 1) / 2) / (p * static_cast<double>(neg));
}

// Average precision of one class as scikit-learn defines it: the sum over
// distinct score thresholds, from the highest, of (recall gained) x precision.
double ap_column(const double* scores, const int64_t* order, const bool* positive, int64_t n,
                 int64_t stride) {
  int64_t total_pos = 0;
  for (int64_t i = 0; i < n; ++i) total_pos += positive[i * stride] ? 1 : 0;
  if (total_pos == 0 || total_pos == n) return std::numeric_limits<double>::quiet_NaN();
  double ap = 0;
  int64_t tp = 0, seen = 0;
  for (int64_t i = n - 1; i >= 0;) {
    const double v = scores[order[i * stride] * stride];
    int64_t j = i;
    int64_t group_pos = 0;
    while (j >= 0 && scores[order[j * stride] * stride] == v) {
      group_pos += positive[order[j * stride] * stride] ? 1 : 0;
      --j;
    }
    if (j == i) {
      group_pos = positive[order[i * stride] * stride] ? 1 : 0;
      j = i - 1;
    }
    tp += group_pos;
    seen += i - j;
    if (group_pos > 0) {
      ap += (static_cast<double>(group_pos) / static_cast<double>(total_pos)) *
            (static_cast<double>(tp) / static_cast<double>(seen));
    }
    i = j;
  }
  return ap;
}

double mean_of_defined(const std::vector<double>& values) {
  double sum = 0;
  int64_t count = 0;
  for (double v : values) {
    if (!std::isnan(v)) {
      sum += v;
      ++count;
    }
  }
  return count > 0 ? sum / static_cast<double>(count) : std::numeric_limits<double>::quiet_NaN();
}

// Scores [N, K] and 0/1 targets [N, K] for the ranking metrics.
double ranking_metric(MetricKind metric, const at::Tensor& scores_in,
                      const at::Tensor& targets_in) {
  const at::Tensor scores = scores_in.contiguous();
  const at::Tensor positive = targets_in.to(at::kBool).contiguous();
  const int64_t n = scores.size(0);
  const int64_t k = scores.size(1);
  const at::Tensor order = std::get<1>(scores.sort(/*dim=*/0)).contiguous();
  std::vector<double> per_class(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) {
    const double* s = scores.data_ptr<double>() + c;
    const int64_t* o = order.data_ptr<int64_t>() + c;
    const bool* p = positive.data_ptr<bool>() + c;
    // Indices in `order` are rows; scaled by the stride k they address column c.
    per_class[static_cast<size_t>(c)] =
        metric == MetricKind::kMacroAUROC ? auroc_column(s, o, p, n, k) : ap_column(s, o, p, n, k);
  }
  return mean_of_defined(per_class);
}

double f1_from_counts(const at::Tensor& tp, const at::Tensor& fp, const at::Tensor& fn) {
  std::vector<double> per_class;
  for (int64_t c = 0; c < tp.size(0); ++c) {
    const double t = tp[c].item<double>(), f = fp[c].item<double>(), m = fn[c].item<double>();
    // A class neither present nor predicted has no F1; it is left out.
    per_class.push_back(t + f + m > 0 ? 2 * t / (2 * t + f + m)
                                      : std::numeric_limits<double>::quiet_NaN());
  }
  return mean_of_defined(per_class);
}

bool is_class_labels(const at::Tensor& outputs, const at::Tensor& y) {
  return at::isIntegralType(y.scalar_type(), /*includeBool=*/false) && y.dim() == 1 &&
         outputs.dim() == 2;
}

}  // namespace

at::Tensor compute_loss(const TaskSpec& spec, const at::Tensor& outputs, const at::Tensor& y) {
  const std::string who = "compute_loss (" + to_string(spec.loss) + ")";
  check_defined(outputs, y, who);
  if (spec.loss == LossKind::kCrossEntropy) {
    if (outputs.dim() != 2 || outputs.size(1) != spec.num_outputs) {
      bad(who, "outputs must be [n, " + std::to_string(spec.num_outputs) + "], got " +
                   shape_string(outputs.sizes()));
    }
    return at::cross_entropy_loss(outputs, checked_labels(outputs, y, who));
  }

  std::vector<int64_t> want{outputs.size(0)};
  for (int64_t d : spec.target_shape()) want.push_back(d);
  if (outputs.sizes().vec() != want) {
    want[0] = 0;
    std::string expected = shape_string(want);
    expected.replace(1, 1, "n");
    bad(who, "outputs have shape " + shape_string(outputs.sizes()) + " but the task expects " +
                 expected);
  }
  check_same_shape(outputs, y, who);
  const at::Tensor target = y.to(outputs.scalar_type());
  switch (spec.loss) {
    case LossKind::kBCEWithLogits: {
      c10::optional<at::Tensor> pos_weight;
      if (spec.pos_weight.has_value()) {
        pos_weight = at::scalar_tensor(*spec.pos_weight, outputs.options());
      }
      return at::binary_cross_entropy_with_logits(outputs, target, {}, pos_weight,
                                                  at::Reduction::Mean);
    }
    case LossKind::kMSE:
      return at::mse_loss(outputs, target, at::Reduction::Mean);
    case LossKind::kRelativeL2:
      return relative_l2(outputs, target);
    case LossKind::kCrossEntropy:
      break;
  }
  bad(who, "unknown loss");
}

double balancing_pos_weight(const at::Tensor& y, dist::Communicator* comm) {
  const at::Tensor positive = y.detach().cpu().to(at::kDouble).gt(0.5);
  at::Tensor counts = at::stack({positive.sum().to(at::kDouble), at::scalar_tensor(static_cast<double>(positive.numel()), at::kDouble)});
  if (comm != nullptr) comm->sum(counts);
  const double pos = counts[0].item<double>();
  const double neg = counts[1].item<double>() - pos;
  if (pos == 0 || neg == 0) return 1.0;
  return std::clamp(neg / pos, 1e-3, 1e3);
}

double compute_metric(MetricKind metric, const at::Tensor& outputs_in, const at::Tensor& y_in) {
  const std::string who = "compute_metric (" + to_string(metric) + ")";
  check_defined(outputs_in, y_in, who);
  at::NoGradGuard no_grad;
  const at::Tensor outputs = outputs_in.detach().cpu().to(at::kDouble);
  const at::Tensor y = y_in.detach().cpu();
  const bool classes = is_class_labels(outputs, y);

  switch (metric) {
    case MetricKind::kAccuracy: {
      if (classes) {
        const at::Tensor labels = checked_labels(outputs, y, who);
        return outputs.argmax(1).eq(labels).to(at::kDouble).mean().item<double>();
      }
      check_same_shape(outputs, y, who);
      return outputs.gt(0).eq(y.to(at::kDouble).gt(0.5)).to(at::kDouble).mean().item<double>();
    }
    case MetricKind::kMacroAUROC:
    case MetricKind::kMeanAveragePrecision: {
      if (classes) {
        const at::Tensor labels = checked_labels(outputs, y, who);
        const at::Tensor one_hot =
            labels.unsqueeze(1).eq(at::arange(outputs.size(1), labels.options()).unsqueeze(0));
        return ranking_metric(metric, outputs.softmax(1), one_hot);
      }
      check_same_shape(outputs, y, who);
      return ranking_metric(metric, as_columns(outputs), as_columns(y.to(at::kDouble).gt(0.5)));
    }
    case MetricKind::kMacroF1: {
      if (classes) {
        const at::Tensor labels = checked_labels(outputs, y, who);
        const int64_t k = outputs.size(1);
        const at::Tensor pred = outputs.argmax(1);
        const at::Tensor hit = pred.eq(labels);
        const at::Tensor tp = at::bincount(labels.masked_select(hit), {}, k);
        const at::Tensor fp = at::bincount(pred.masked_select(hit.logical_not()), {}, k);
        const at::Tensor fn = at::bincount(labels.masked_select(hit.logical_not()), {}, k);
        return f1_from_counts(tp, fp, fn);
      }
      check_same_shape(outputs, y, who);
      const at::Tensor pred = as_columns(outputs.gt(0));
      const at::Tensor truth = as_columns(y.to(at::kDouble).gt(0.5));
      const at::Tensor tp = pred.logical_and(truth).sum(0);
      const at::Tensor fp = pred.logical_and(truth.logical_not()).sum(0);
      const at::Tensor fn = pred.logical_not().logical_and(truth).sum(0);
      return f1_from_counts(tp, fp, fn);
    }
    case MetricKind::kRelativeL2:
      check_same_shape(outputs, y, who);
      return relative_l2(outputs, y.to(at::kDouble)).item<double>();
    case MetricKind::kMAE:
      check_same_shape(outputs, y, who);
      return (outputs - y.to(at::kDouble)).abs().mean().item<double>();
  }
  bad(who, "unknown metric");
}

}  // namespace dash::task
