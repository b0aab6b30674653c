#pragma once
// Losses (differentiable, mean over the batch) and metrics (over a whole split).

#include <ATen/ATen.h>

#include "dist/communicator.h"
#include "task/task_spec.h"

namespace dash::task {

// outputs: the network's raw outputs (logits for classification and multilabel).
// cross_entropy: outputs [n, classes], y int64 [n]
// bce_with_logits: outputs and y [n, k] (or [n, k, spatial...]), pos_weight from spec
// mse: mean squared error over all values
// relative_l2: mean over samples of ||out_i - y_i||_2 / ||y_i||_2
//   (a target norm below 1e-12 counts as 1e-12, so an all-zero target stays finite)
// Throws std::invalid_argument on shapes that do not fit the spec or labels out of range.
at::Tensor compute_loss(const TaskSpec& spec, const at::Tensor& outputs, const at::Tensor& y);

// Computed over all rows at once (not averaged per batch):
// accuracy: argmax over classes (or, for multilabel, mean of (logit > 0) == y);
// macro_auroc / macro_f1 / map: mean over classes that have both positives and
// negatives (f1 thresholds sigmoid(logit) at 0.5 for multilabel, argmax one-vs-rest
// for classification); relative_l2 as the loss; mae: mean absolute error.
// Clarifications: classification is recognised by integer y [n] with outputs
// [n, classes]; its auroc/map rank softmax probabilities one-vs-rest. macro_f1
// averages over the classes present in y or in the predictions (scikit-learn's
// macro average), not only those with both positives and negatives. Dense
// outputs [n, k, spatial...] count each position as one more sample of each of
// the k classes. A metric no class qualifies for is NaN. Throws
// std::invalid_argument on mismatched shapes, labels out of range or no rows.
double compute_metric(MetricKind metric, const at::Tensor& outputs, const at::Tensor& y);

// bce_with_logits' positive weight that balances 0/1 targets y (any shape):
// negatives / positives, within [1e-3, 1e3]; 1 when y has no positives or no
// negatives.
double balancing_pos_weight(const at::Tensor& y, dist::Communicator* comm = nullptr);

}  // namespace dash::task
