#include "ops/spectral_tensors.h"

#include <vector>

namespace dash::ops {
namespace {

// Complex views of spectra whose last dimension holds (re, im).
at::Tensor complex(const at::Tensor& spectrum) { return at::view_as_complex(spectrum.contiguous()); }

at::Tensor real_pairs(const at::Tensor& z, double scale) {
  at::Tensor r = at::view_as_real(z.resolve_conj().contiguous());
  return scale == 1.0 ? r : r.mul(scale);
}

}  // namespace

at::Tensor spectrum_empty(const FftGeometry& g, const at::TensorOptions& opts) {
  if (g.layout == SpectrumLayout::kChannelsLast) {
    return at::empty({g.batch, g.bins(), g.channels, 2}, opts);
  }
  return at::empty({g.batch, g.channels, g.bins(), 2}, opts);
}

at::Tensor zero_pad(const at::Tensor& x, const FftGeometry& g) {
  std::vector<int64_t> pad;
  for (int axis = g.rank - 1; axis >= 0; --axis) {
    pad.push_back(0);
    pad.push_back(g.fft[axis] - x.size(axis + 1));
  }
  bool any = false;
  for (int64_t p : pad) any = any || p != 0;
  return any ? at::constant_pad_nd(x, pad, 0) : x.contiguous();
}

// Depthwise spectra are [batch][C][bins] (H: [C][bins]); full ones are
// channels-last [batch][bins][C] (H: [out][bins][in]), so one bin's channels
// form the rows of a matrix and every bin is one product of a batch.

at::Tensor generic_product_forward(const at::Tensor& X, const at::Tensor& H,
                                   const ChannelGeometry& c, double scale) {
  const at::Tensor x = complex(X), h = complex(H);
  if (c.depthwise) return real_pairs(x * h.conj(), scale);
  // [bins][batch][in] @ [bins][in][out]
  const at::Tensor y = at::matmul(x.permute({1, 0, 2}), h.permute({1, 2, 0}).conj());
  return real_pairs(y.permute({1, 0, 2}), scale);
}

at::Tensor generic_product_input_grad(const at::Tensor& dY, const at::Tensor& H,
                                      const ChannelGeometry& c, double scale) {
  const at::Tensor dy = complex(dY), h = complex(H);
  if (c.depthwise) return real_pairs(dy * h, scale);
  // [bins][batch][out] @ [bins][out][in]
  const at::Tensor dx = at::matmul(dy.permute({1, 0, 2}), h.permute({1, 0, 2}));
  return real_pairs(dx.permute({1, 0, 2}), scale);
}

at::Tensor generic_product_kernel_grad(const at::Tensor& X, const at::Tensor& dY,
                                       const ChannelGeometry& c, double scale) {
  const at::Tensor x = complex(X), dy = complex(dY);
  if (c.depthwise) return real_pairs((x * dy.conj()).sum(0), scale);
  // [bins][out][batch] @ [bins][batch][in]
  const at::Tensor dh = at::matmul(dy.permute({1, 2, 0}).conj(), x.permute({1, 0, 2}));
  return real_pairs(dh.permute({1, 0, 2}), scale);
}

}  // namespace dash::ops
