#pragma once
// Data of a task: train/valid/test splits as tensors, checks, splitting and
// input normalisation.

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "dist/communicator.h"
#include "task/task_spec.h"

namespace dash::task {

// x: float32 [n, input_shape...]; y: int64 [n] (classification) or float32
// [n, target_shape...] (other kinds; multilabel targets are 0/1).
struct Split {
  at::Tensor x;
  at::Tensor y;
  int64_t size() const { return x.defined() ? x.size(0) : 0; }
  bool empty() const { return size() == 0; }
};

struct Dataset {
  Split train, valid, test;
};

// Converts x to float32 and y to the kind's dtype, then checks everything a
// user can get wrong, throwing std::invalid_argument with an actionable message:
// shapes against the spec, x/y row counts, NaN or Inf (with the first bad row),
// class labels out of range ("label 12 is out of range for 10 classes at row
// 3051"), empty split. `name` ("train", ...) appears in messages.
// A missing size-1 dimension is restored: x [n, spatial...] for one input
// channel, y [n] for one output (y [n, spatial...] for dense), and labels
// [n, 1] become [n]. Multilabel targets must be 0 or 1.
Split checked_split(const TaskSpec& spec, at::Tensor x, at::Tensor y, const std::string& name);

// Splits carved deterministically: valid_fraction of train (shuffled with
// seed) becomes the validation split when `valid` is empty.
// Carving takes round(valid_fraction * n) rows, at least 1 and at most n - 1,
// from a Fisher-Yates permutation driven by std::mt19937_64(seed), so it is
// the same on every platform; both parts keep the original row order.
// valid_fraction must then be in (0, 1). Every non-empty split goes through
// checked_split; an empty test split comes back as zero-row tensors.
Dataset make_dataset(const TaskSpec& spec, Split train, Split valid, Split test,
                     double valid_fraction, uint64_t seed);

// Per-input-channel mean and standard deviation, fitted on train only.
struct Normalizer {
  at::Tensor mean;  // [channels] float32
  at::Tensor std;   // [channels] float32, >= 1e-6

  // With `comm` (a data-parallel run): the statistics of every rank's x together.
  static Normalizer fit(const at::Tensor& x, dist::Communicator* comm = nullptr);
  at::Tensor apply(const at::Tensor& x) const;  // (x - mean) / std per channel
  nlohmann::json to_json() const;
  static Normalizer from_json(const nlohmann::json& j);
};

}  // namespace dash::task
