#include "task/dataset.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace dash::task {

namespace {

std::string shape_string(at::IntArrayRef shape, bool leading_n = false) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) os << ", ";
    if (leading_n && i == 0) {
      os << "n";
    } else {
      os << shape[i];
    }
  }
  os << "]";
  return os.str();
}

std::string number_string(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

bool is_numeric(at::ScalarType t) {
  return at::isFloatingType(t) || at::isIntegralType(t, /*includeBool=*/true);
}

// The first row (along dim 0) whose entry in `bad` (any shape, leading dim n)
// is true, or -1.
int64_t first_bad_row(const at::Tensor& bad) {
  if (bad.numel() == 0) return -1;
  const at::Tensor rows = bad.reshape({bad.size(0), -1}).any(1);
  if (!rows.any().item<bool>()) return -1;
  return rows.to(at::kByte).argmax().item<int64_t>();
}

// Rows of a float tensor with NaN or Inf, checked in chunks so that the
// boolean mask of a large split is never materialised whole.
int64_t first_nonfinite_row(const at::Tensor& t) {
  const int64_t n = t.size(0);
  const int64_t per_row = n > 0 ? std::max<int64_t>(1, t.numel() / n) : 1;
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / per_row);
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t len = std::min(chunk, n - start);
    const int64_t r = first_bad_row(t.narrow(0, start, len).isfinite().logical_not());
    if (r >= 0) return start + r;
  }
  return -1;
}

// The expected shape [n, rest...], accepting one missing trailing dimension
// of size 1 (y of shape [n] for one output), which is reshaped.
at::Tensor fit_shape(at::Tensor t, const std::vector<int64_t>& rest, const std::string& name,
                     const char* what) {
  std::vector<int64_t> want{t.dim() > 0 ? t.size(0) : 0};
  want.insert(want.end(), rest.begin(), rest.end());
  if (t.dim() >= 1 && t.sizes().vec() == want) return t;
  // [n] for [n, 1] and [n, spatial...] for [n, 1, spatial...].
  if (!rest.empty() && rest[0] == 1 && t.dim() == static_cast<int64_t>(want.size()) - 1) {
    std::vector<int64_t> squeezed{want[0]};
    squeezed.insert(squeezed.end(), rest.begin() + 1, rest.end());
    if (t.sizes().vec() == squeezed) return t.reshape(want);
  }
  // [n, 1] for classification labels.
  if (rest.empty() && t.dim() == 2 && t.size(1) == 1) return t.reshape({t.size(0)});
  std::vector<int64_t> shown{0};
  shown.insert(shown.end(), rest.begin(), rest.end());
  throw std::invalid_argument(name + ": " + what + " has shape " + shape_string(t.sizes()) +
                              " but the task expects " + shape_string(shown, /*leading_n=*/true));
}

at::Tensor check_class_labels(const TaskSpec& spec, at::Tensor y, const std::string& name) {
  const int64_t classes = spec.num_outputs;
  if (at::isFloatingType(y.scalar_type())) {
    const at::Tensor yd = y.to(at::kDouble);
    int64_t r = first_bad_row(yd.isfinite().logical_not());
    if (r >= 0) {
      throw std::invalid_argument(name + ": label " + number_string(yd[r].item<double>()) +
                                  " at row " + std::to_string(r) + " is not a class index");
    }
    r = first_bad_row(yd.ne(yd.round()));
    if (r >= 0) {
      throw std::invalid_argument(name + ": label " + number_string(yd[r].item<double>()) +
                                  " at row " + std::to_string(r) + " is not a whole number");
    }
    r = first_bad_row(yd.lt(0).logical_or(yd.ge(static_cast<double>(classes))));
    if (r >= 0) {
      throw std::invalid_argument(name + ": label " + number_string(yd[r].item<double>()) +
                                  " is out of range for " + std::to_string(classes) +
                                  " classes at row " + std::to_string(r));
    }
    return yd.to(at::kLong).contiguous();
  }
  y = y.to(at::kLong).contiguous();
  const int64_t r = first_bad_row(y.lt(0).logical_or(y.ge(classes)));
  if (r >= 0) {
    throw std::invalid_argument(name + ": label " + std::to_string(y[r].item<int64_t>()) +
                                " is out of range for " + std::to_string(classes) +
                                " classes at row " + std::to_string(r));
  }
  return y;
}

Split empty_split(const TaskSpec& spec) {
  std::vector<int64_t> xs{0};
  xs.insert(xs.end(), spec.input_shape.begin(), spec.input_shape.end());
  std::vector<int64_t> ys{0};
  const auto ts = spec.target_shape();
  ys.insert(ys.end(), ts.begin(), ts.end());
  const auto ydtype = spec.kind == TaskKind::kClassification ? at::kLong : at::kFloat;
  return {at::empty(xs, at::TensorOptions().dtype(at::kFloat)),
          at::empty(ys, at::TensorOptions().dtype(ydtype))};
}

// A uniform integer in [0, bound) from a fully specified engine by rejection,
// so the permutation is the same on every platform and standard library
// (std::uniform_int_distribution and std::shuffle are not).
uint64_t uniform_below(std::mt19937_64& rng, uint64_t bound) {
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % bound;
  uint64_t v;
  do {
    v = rng();
  } while (v >= limit);
  return v % bound;
}

}  // namespace

Split checked_split(const TaskSpec& spec, at::Tensor x, at::Tensor y, const std::string& name) {
  spec.validate();
  if (!x.defined() || (x.dim() >= 1 && x.size(0) == 0)) {
    throw std::invalid_argument(name + " split is empty");
  }
  if (!y.defined()) throw std::invalid_argument(name + ": y is missing");
  if (!is_numeric(x.scalar_type())) {
    throw std::invalid_argument(name + ": x has dtype " +
                                std::string(c10::toString(x.scalar_type())) +
                                "; expected a real numeric type");
  }
  if (!is_numeric(y.scalar_type())) {
    throw std::invalid_argument(name + ": y has dtype " +
                                std::string(c10::toString(y.scalar_type())) +
                                "; expected a real numeric type");
  }
  x = x.cpu();
  y = y.cpu();
  x = fit_shape(x, spec.input_shape, name, "x");
  if (x.size(0) == 0) throw std::invalid_argument(name + " split is empty");
  if (y.dim() == 0 || y.size(0) != x.size(0)) {
    throw std::invalid_argument(
        name + ": x has " + std::to_string(x.size(0)) + " rows but y has " +
        (y.dim() == 0 ? std::string("no rows (a scalar)") : std::to_string(y.size(0))));
  }
  y = fit_shape(y, spec.target_shape(), name, "y");

  x = x.to(at::kFloat).contiguous();
  int64_t r = first_nonfinite_row(x);
  if (r >= 0) {
    throw std::invalid_argument(name + ": x has NaN or Inf at row " + std::to_string(r));
  }

  if (spec.kind == TaskKind::kClassification) {
    y = check_class_labels(spec, y, name);
  } else {
    y = y.to(at::kFloat).contiguous();
    r = first_nonfinite_row(y);
    if (r >= 0) {
      throw std::invalid_argument(name + ": y has NaN or Inf at row " + std::to_string(r));
    }
    if (spec.kind == TaskKind::kMultilabel) {
      const at::Tensor not_binary = y.ne(0).logical_and(y.ne(1));
      r = first_bad_row(not_binary);
      if (r >= 0) {
        const int64_t at_col = not_binary[r].flatten().to(at::kByte).argmax().item<int64_t>();
        const double v = y[r].flatten()[at_col].item<double>();
        throw std::invalid_argument(name + ": multilabel target " + number_string(v) + " at row " +
                                    std::to_string(r) + " must be 0 or 1");
      }
    }
  }
  return {x, y};
}

Dataset make_dataset(const TaskSpec& spec, Split train, Split valid, Split test,
                     double valid_fraction, uint64_t seed) {
  Dataset d;
  d.train = checked_split(spec, train.x, train.y, "train");
  if (!valid.empty()) {
    d.valid = checked_split(spec, valid.x, valid.y, "valid");
  } else {
    if (!std::isfinite(valid_fraction) || valid_fraction <= 0 || valid_fraction >= 1) {
      throw std::invalid_argument(
          "valid split is empty, so valid_fraction must be in (0, 1) to carve one from train, "
          "got " +
          number_string(valid_fraction));
    }
    const int64_t n = d.train.size();
    if (n < 2) {
      throw std::invalid_argument("train split has " + std::to_string(n) +
                                  " row; carving a validation split needs at least 2 "
                                  "(or pass a validation split)");
    }
    const int64_t n_valid =
        std::clamp<int64_t>(std::llround(valid_fraction * static_cast<double>(n)), 1, n - 1);
    std::vector<int64_t> perm(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) perm[static_cast<size_t>(i)] = i;
    std::mt19937_64 rng(seed);
    for (int64_t i = n - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(i + 1)));
      std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
    }
    // Both parts keep the original row order, which makes them easy to inspect.
    std::sort(perm.begin(), perm.begin() + n_valid);
    std::sort(perm.begin() + n_valid, perm.end());
    const at::Tensor all = at::tensor(perm, at::TensorOptions().dtype(at::kLong));
    const at::Tensor vi = all.narrow(0, 0, n_valid);
    const at::Tensor ti = all.narrow(0, n_valid, n - n_valid);
    d.valid = {d.train.x.index_select(0, vi), d.train.y.index_select(0, vi)};
    d.train = {d.train.x.index_select(0, ti), d.train.y.index_select(0, ti)};
  }
  d.test = test.empty() ? empty_split(spec) : checked_split(spec, test.x, test.y, "test");
  return d;
}

Normalizer Normalizer::fit(const at::Tensor& x_in, dist::Communicator* comm) {
  if (!x_in.defined() || x_in.dim() < 2 || x_in.size(0) == 0 || x_in.numel() == 0) {
    throw std::invalid_argument(
        "Normalizer::fit: x must be a non-empty [n, channels, spatial...] tensor");
  }
  const at::Tensor x = x_in.cpu();
  const int64_t n = x.size(0);
  const int64_t c = x.size(1);
  std::vector<int64_t> reduce_dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) reduce_dims.push_back(d);
  double count = static_cast<double>(x.numel() / c);
  // Two passes in float64 over chunks of rows: the mean first, then squared
  // deviations from it, which stays accurate when |mean| >> std and never
  // holds a float64 copy of the whole split.
  const int64_t per_row = x.numel() / n;
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / per_row);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::Tensor sum = at::zeros({c}, f64);
  for (int64_t s = 0; s < n; s += chunk) {
    sum += x.narrow(0, s, std::min(chunk, n - s)).to(at::kDouble).sum(reduce_dims);
  }
  if (comm != nullptr) {
    at::Tensor packed = at::cat({sum, at::full({1}, count, f64)});
    comm->sum(packed);
    sum = packed.narrow(0, 0, c).clone();
    count = packed[c].item<double>();
  }
  const at::Tensor mean = sum / count;
  std::vector<int64_t> bshape(static_cast<size_t>(x.dim()), 1);
  bshape[1] = c;
  const at::Tensor mean_b = mean.reshape(bshape);
  at::Tensor sq = at::zeros({c}, f64);
  for (int64_t s = 0; s < n; s += chunk) {
    sq +=
        (x.narrow(0, s, std::min(chunk, n - s)).to(at::kDouble) - mean_b).square().sum(reduce_dims);
  }
  if (comm != nullptr) comm->sum(sq);
  const at::Tensor sd = (sq / count).sqrt().clamp_min(1e-6);
  if (!mean.isfinite().all().item<bool>() || !sd.isfinite().all().item<bool>()) {
    throw std::invalid_argument("Normalizer::fit: x has NaN or Inf");
  }
  return {mean.to(at::kFloat), sd.to(at::kFloat)};
}

at::Tensor Normalizer::apply(const at::Tensor& x) const {
  if (!mean.defined() || !std.defined()) {
    throw std::logic_error("Normalizer::apply: the normalizer has not been fitted");
  }
  const int64_t c = mean.numel();
  if (!x.defined() || x.dim() < 2 || x.size(1) != c) {
    throw std::invalid_argument(
        "Normalizer::apply: x has shape " +
        (x.defined() ? shape_string(x.sizes()) : std::string("(undefined)")) + " but the " +
        "normalizer was fitted on " + std::to_string(c) + " channels");
  }
  std::vector<int64_t> bshape(static_cast<size_t>(x.dim()), 1);
  bshape[1] = c;
  return (x.to(at::kFloat) - mean.to(x.device()).reshape(bshape)) /
         std.to(x.device()).reshape(bshape);
}

nlohmann::json Normalizer::to_json() const {
  if (!mean.defined() || !std.defined()) {
    throw std::logic_error("Normalizer::to_json: the normalizer has not been fitted");
  }
  nlohmann::json j;
  const at::Tensor m = mean.to(at::kDouble).contiguous().cpu();
  const at::Tensor s = std.to(at::kDouble).contiguous().cpu();
  j["mean"] = std::vector<double>(m.data_ptr<double>(), m.data_ptr<double>() + m.numel());
  j["std"] = std::vector<double>(s.data_ptr<double>(), s.data_ptr<double>() + s.numel());
  return j;
}

Normalizer Normalizer::from_json(const nlohmann::json& j) {
  if (!j.is_object()) {
    throw std::invalid_argument(std::string("normalizer: expected a JSON object, got ") +
                                j.type_name());
  }
  for (const auto& item : j.items()) {
    if (item.key() != "mean" && item.key() != "std") {
      throw std::invalid_argument("normalizer: unknown key \"" + item.key() +
                                  "\"; accepted keys are \"mean\" and \"std\"");
    }
  }
  auto read = [&](const char* key) {
    if (!j.contains(key)) {
      throw std::invalid_argument(std::string("normalizer: missing key \"") + key + "\"");
    }
    const auto& a = j.at(key);
    if (!a.is_array() || a.empty()) {
      throw std::invalid_argument(std::string("normalizer: \"") + key +
                                  "\" must be a non-empty array of numbers, got " + a.dump());
    }
    std::vector<float> v;
    for (const auto& e : a) {
      if (!e.is_number() || !std::isfinite(e.get<double>()) ||
          !std::isfinite(static_cast<float>(e.get<double>()))) {
        throw std::invalid_argument(std::string("normalizer: \"") + key +
                                    "\" must hold finite numbers, got " + e.dump());
      }
      v.push_back(static_cast<float>(e.get<double>()));
    }
    return v;
  };
  const std::vector<float> m = read("mean");
  const std::vector<float> s = read("std");
  if (m.size() != s.size()) {
    throw std::invalid_argument("normalizer: \"mean\" has " + std::to_string(m.size()) +
                                " channels but \"std\" has " + std::to_string(s.size()));
  }
  for (float v : s) {
    // Compared in float32, the type fit() clamps in, so fitted files round-trip.
    if (!(v >= 1e-6f)) {
      throw std::invalid_argument("normalizer: \"std\" entries must be >= 1e-6, got " +
                                  number_string(v));
    }
  }
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  return {at::tensor(m, f32), at::tensor(s, f32)};
}

}  // namespace dash::task
