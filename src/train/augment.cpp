#include "train/augment.h"

#include <ATen/ops/constant_pad_nd.h>

#include <stdexcept>
#include <vector>

namespace dash::train {

Augment Augment::named(const std::string& name) {
  constexpr double kShift = 1.0 / 12.0;
  if (name == "none") return {};
  if (name == "shift") return {kShift, false};
  if (name == "flip") return {0, true};
  if (name == "shift_flip") return {kShift, true};
  throw std::invalid_argument("augment must be \"none\", \"shift\", \"flip\" or \"shift_flip\", got \"" +
                              name + "\"");
}

std::string Augment::name() const {
  if (shift > 0) return flip ? "shift_flip" : "shift";
  return flip ? "flip" : "none";
}

void check_augment_applies(const Augment& augment, task::TaskKind kind, const std::string& where) {
  if (!augment.any() || kind == task::TaskKind::kClassification || kind == task::TaskKind::kMultilabel) {
    return;
  }
  throw std::invalid_argument(where + ": augment \"" + augment.name() +
                              "\" moves or mirrors the input but not its target, so it applies to "
                              "classification and multilabel tasks only; use augment \"none\"");
}

at::Tensor augment_batch(const at::Tensor& x, const Augment& augment, at::Generator& gen) {
  if (!augment.any() || x.size(0) == 0) return x;
  const int64_t batch = x.size(0);
  const int64_t dims = x.dim() - 2;
  at::Tensor out = x;
  std::vector<int64_t> max_shift;
  bool shifts = false;
  for (int64_t a = 0; a < dims; ++a) {
    max_shift.push_back(static_cast<int64_t>(augment.shift * static_cast<double>(x.size(2 + a))));
    shifts = shifts || max_shift.back() > 0;
  }
  if (shifts) {
    // Pad every spatial axis by its largest shift, then cut each sample's
    // window at its own offset: a move by (offset - m) positions.
    std::vector<int64_t> pad;  // constant_pad_nd wants the last axis first
    for (int64_t a = dims - 1; a >= 0; --a) {
      pad.push_back(max_shift[a]);
      pad.push_back(max_shift[a]);
    }
    const at::Tensor padded = at::constant_pad_nd(x, pad, 0);
    at::Tensor offsets = at::empty({batch, dims}, at::kLong);
    for (int64_t a = 0; a < dims; ++a) {
      offsets.select(1, a).copy_(at::randint(2 * max_shift[a] + 1, {batch}, gen, at::kLong));
    }
    const auto off = offsets.accessor<int64_t, 2>();
    std::vector<at::Tensor> samples;
    samples.reserve(static_cast<size_t>(batch));
    for (int64_t b = 0; b < batch; ++b) {
      at::Tensor s = padded[b];
      for (int64_t a = 0; a < dims; ++a) s = s.narrow(1 + a, off[b][a], x.size(2 + a));
      samples.push_back(s);
    }
    out = at::stack(samples);
  }
  if (augment.flip) {
    std::vector<int64_t> view(static_cast<size_t>(x.dim()), 1);
    view[0] = batch;
    const at::Tensor mirror = (at::rand({batch}, gen) < 0.5).view(view).to(x.device());
    out = at::where(mirror, out.flip({-1}), out);
  }
  return out;
}

}  // namespace dash::train
