// The autograd wrapper of spectral_conv. It owns the mathematics that every
// backend shares:
//
//  * A kernel tap at offset m in [-P, P] (P = (taps-1)/2) is stored at index
//    m mod N of a length-N array h. For an input supported on [0, n), the
//    circular correlation  y[i] = sum_m h[m] x[i+m]  equals the zero-padded
//    linear one on every output i in [0, n) as soon as N >= n + P: an offset
//    that wraps around lands on a zero of either x or h. In the Fourier domain
//    that is  Y = X * conj(H).
//  * Its adjoints are again products of spectra: dX = dY * H (a convolution)
//    and dH = X * conj(dY) (a correlation), so backward reuses the forward's
//    transforms of x and h and needs only one new forward transform, of dy.
//  * Stride s keeps every s-th output. Where s divides N, y[s i] is the
//    inverse transform of size M = N/s of the folded spectrum
//    Yf[k] = sum_{a<s} Y[k + a M] (with the 1/N of the size-N inverse), so the
//    output and dy are transformed at M: s^rank times fewer values. The
//    adjoint: dy scattered back to every s-th position has the spectrum
//    DYs[k mod M] of dy's own size-M transform, tiled. Otherwise the full
//    output is transformed and subsampled, and dy scattered back.

#include "ops/spectral_conv.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "ops/fast_size.h"
#include "ops/spectral_backend.h"

namespace dash::ops {

SpectralAxis spectral_axis(int64_t n, int64_t kernel_taps) {
  TORCH_CHECK(n >= 1, "spectral_conv: spatial size must be >= 1, got ", n);
  TORCH_CHECK(kernel_taps >= 1 && kernel_taps % 2 == 1,
              "spectral_conv: kernel size must be odd for 'same' padding, got ", kernel_taps);
  SpectralAxis a;
  a.n = n;
  a.taps = std::min(kernel_taps, 2 * n - 1);
  a.fft = fast_fft_size(n + (a.taps - 1) / 2);
  return a;
}

namespace {

struct ConvPlan {
  int rank = 1;
  std::array<SpectralAxis, 2> axes{};
  std::array<int64_t, 2> frame{1, 1};  // kernel size per axis before cropping
  std::array<int64_t, 2> stride{1, 1};
  ChannelGeometry channels;
  int64_t in_per_group = 0;
  FftGeometry data, out, kernel;
  // Strided with s | N on every axis: the output's transforms at M = N/s.
  bool folded = false;
  FftGeometry out_folded;

  double scale() const {
    return 1.0 / static_cast<double>(rank == 1 ? axes[0].fft : axes[0].fft * axes[1].fft);
  }
};

ConvPlan make_plan(at::IntArrayRef x, at::IntArrayRef w, at::IntArrayRef stride, int64_t groups) {
  TORCH_CHECK(x.size() == 3 || x.size() == 4,
              "spectral_conv: input must be [batch, channels, length] or [batch, channels, h, w], "
              "got ", x.size(), " dimensions");
  TORCH_CHECK(w.size() == x.size(), "spectral_conv: weight has ", w.size(),
              " dimensions but the input has ", x.size());
  ConvPlan p;
  p.rank = static_cast<int>(x.size()) - 2;
  const int64_t batch = x[0], in = x[1], out = w[0];
  TORCH_CHECK(groups >= 1, "spectral_conv: groups must be >= 1, got ", groups);
  const bool depthwise = groups > 1;
  TORCH_CHECK(groups == 1 || (groups == in && out == in),
              "spectral_conv: groups must be 1 or equal to the channel count (depthwise, in == "
              "out), got groups=", groups, " with ", in, " input and ", out, " output channels");
  TORCH_CHECK(w[1] * groups == in, "spectral_conv: weight expects ", w[1] * groups,
              " input channels, the input has ", in);
  TORCH_CHECK(stride.size() == 1 || static_cast<int>(stride.size()) == p.rank,
              "spectral_conv: stride needs 1 or ", p.rank, " values, got ", stride.size());
  for (int axis = 0; axis < p.rank; ++axis) {
    p.frame[axis] = w[2 + axis];
    p.axes[axis] = spectral_axis(x[2 + axis], w[2 + axis]);
    p.stride[axis] = stride.size() == 1 ? stride[0] : stride[axis];
    TORCH_CHECK(p.stride[axis] >= 1, "spectral_conv: stride must be >= 1, got ", p.stride[axis]);
  }
  p.in_per_group = w[1];
  p.channels.batch = batch;
  p.channels.in_channels = in;
  p.channels.out_channels = out;
  p.channels.depthwise = depthwise;

  FftGeometry g;
  g.rank = p.rank;
  g.fft = {p.axes[0].fft, p.rank == 2 ? p.axes[1].fft : 1};
  g.layout = depthwise ? SpectrumLayout::kTransformMajor : SpectrumLayout::kChannelsLast;
  p.channels.bins = g.bins();
  p.data = p.out = p.kernel = g;
  p.data.batch = batch;
  p.data.channels = in;
  p.out.batch = batch;
  p.out.channels = out;
  p.kernel.batch = out;
  p.kernel.channels = p.in_per_group;
  bool strided = false, divides = true;
  p.out_folded = p.out;
  for (int axis = 0; axis < p.rank; ++axis) {
    strided = strided || p.stride[axis] > 1;
    divides = divides && p.axes[axis].fft % p.stride[axis] == 0;
    p.out_folded.fft[axis] = p.axes[axis].fft / p.stride[axis];
  }
  p.folded = strided && divides;
  return p;
}

// The half spectrum of a real array of size N (last axis halved) as bins:
// where full-spectrum index (j0, j1) is stored, and whether it is the
// conjugate of what is stored there (Hermitian symmetry).
struct HalfSpectrum {
  int rank;
  std::array<int64_t, 2> n;  // n[rank - 1] is the halved axis
  int64_t half() const { return n[rank - 1] / 2 + 1; }
  int64_t bins() const { return rank == 1 ? half() : n[0] * half(); }
  // j: full-spectrum index per axis, each in [0, n).
  std::pair<int64_t, bool> at(std::array<int64_t, 2> j) const {
    const int last = rank - 1;
    bool conj = false;
    if (j[last] > n[last] / 2) {
      for (int axis = 0; axis < rank; ++axis) j[axis] = (n[axis] - j[axis]) % n[axis];
      conj = true;
    }
    return {rank == 1 ? j[0] : j[0] * half() + j[1], conj};
  }
};

// Where each output bin's terms come from: per alias, a source bin and
// whether it enters conjugated, stored bin-major ([output bin][alias]) so
// that one output value reads its terms from consecutive entries.
struct BinSources {
  int64_t aliases = 1;
  std::vector<int64_t> index;  // [output bin][alias]
  std::vector<uint8_t> conj;
};

// out[o][t][i] = sum over aliases a of (conj ? conj(v) : v), v = in[o][index[t][a]][i],
// for a spectrum of geometry g seen as [outer][bins][inner] complex values
// (channels-last: outer = batch, inner = channels; transform-major: outer =
// batch x channels, inner = 1), to the same layout with `bins_out` bins.
// Transform-major, each image's bins are a few kB, so the gather stays in
// cache and what counts is the work per value: one tight loop over flat
// tables (the first version, a table per alias and a branch per value, took
// 34 ms of a 590 ms Fashion-MNIST supernet step with every layer mixing,
// perf; this one 14 ms of 495).
template <typename T>
void gather_cpu(const T* in, T* out, int64_t outer, int64_t bins_in, int64_t bins_out, int64_t inner,
                const BinSources& from) {
  const int64_t aliases = from.aliases;
  std::vector<T> sign(from.conj.size());
  for (size_t e = 0; e < sign.size(); ++e) sign[e] = from.conj[e] ? T(-1) : T(1);
  const int64_t* index = from.index.data();
  const T* sg = sign.data();
  at::parallel_for(0, outer, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const T* src = in + 2 * o * bins_in * inner;
      T* dst = out + 2 * o * bins_out * inner;
      if (inner == 1) {
        for (int64_t t = 0; t < bins_out; ++t) {
          T re = 0, im = 0;
          for (int64_t a = t * aliases; a < (t + 1) * aliases; ++a) {
            const T* v = src + 2 * index[a];
            re += v[0];
            im += sg[a] * v[1];
          }
          dst[2 * t] = re;
          dst[2 * t + 1] = im;
        }
        continue;
      }
      for (int64_t t = 0; t < bins_out; ++t) {
        T* d = dst + 2 * t * inner;
        const T* v = src + 2 * index[t * aliases] * inner;
        const T s0 = sg[t * aliases];
        for (int64_t i = 0; i < inner; ++i) {
          d[2 * i] = v[2 * i];
          d[2 * i + 1] = s0 * v[2 * i + 1];
        }
        for (int64_t a = t * aliases + 1; a < (t + 1) * aliases; ++a) {
          const T* w = src + 2 * index[a] * inner;
          for (int64_t i = 0; i < inner; ++i) {
            d[2 * i] += w[2 * i];
            d[2 * i + 1] += sg[a] * w[2 * i + 1];
          }
        }
      }
    }
  });
}

at::Tensor gather_bins(const at::Tensor& spectrum, const FftGeometry& g, int64_t bins_out,
                       const BinSources& from) {
  const bool channels_last = g.layout == SpectrumLayout::kChannelsLast;
  const int64_t outer = channels_last ? g.batch : g.count(), inner = channels_last ? g.channels : 1;
  at::Tensor out = channels_last ? at::empty({g.batch, bins_out, g.channels, 2}, spectrum.options())
                                 : at::empty({g.batch, g.channels, bins_out, 2}, spectrum.options());
  const at::Tensor in = spectrum.contiguous();
  if (in.device().is_cpu()) {
    AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "gather_bins", [&] {
      gather_cpu<scalar_t>(in.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), outer, g.bins(), bins_out, inner,
                           from);
    });
    return out;
  }
  // Elsewhere (CUDA): the same with LibTorch's gathers.
  const at::Tensor view = in.view({outer, g.bins(), inner, 2});
  at::Tensor sum;
  for (int64_t a = 0; a < from.aliases; ++a) {
    std::vector<int64_t> index;
    std::vector<float> sign;
    for (int64_t t = 0; t < bins_out; ++t) {
      index.push_back(from.index[static_cast<size_t>(t * from.aliases + a)]);
      sign.push_back(1.0f);
      sign.push_back(from.conj[static_cast<size_t>(t * from.aliases + a)] ? -1.0f : 1.0f);
    }
    const at::Tensor idx = at::tensor(index, at::TensorOptions().dtype(at::kLong)).to(in.device());
    const at::Tensor sg = at::tensor(sign, at::TensorOptions().dtype(at::kFloat)).to(in.options()).view({1, bins_out, 1, 2});
    at::Tensor term = view.index_select(1, idx).mul_(sg);
    sum = sum.defined() ? sum.add_(term) : term;
  }
  out.view({outer, bins_out, inner, 2}).copy_(sum);
  return out;
}

// Y (size N) -> Yf (size M = N/s): Yf[k] = sum over aliases a of Y[k + a M].
at::Tensor fold_spectrum(const at::Tensor& Y, const ConvPlan& p) {
  const HalfSpectrum full{p.rank, p.out.fft}, part{p.rank, p.out_folded.fft};
  const std::array<int64_t, 2> s{p.stride[0], p.rank == 2 ? p.stride[1] : 1};
  BinSources from;
  from.aliases = s[0] * s[1];
  for (int64_t b = 0; b < part.bins(); ++b) {
    const int64_t k0 = p.rank == 2 ? b / part.half() : b, k1 = p.rank == 2 ? b % part.half() : 0;
    for (int64_t a0 = 0; a0 < s[0]; ++a0) {
      for (int64_t a1 = 0; a1 < s[1]; ++a1) {
        const std::array<int64_t, 2> j = p.rank == 2 ? std::array<int64_t, 2>{k0 + a0 * part.n[0], k1 + a1 * part.n[1]}
                                                     : std::array<int64_t, 2>{k0 + a0 * part.n[0], 0};
        const auto [at_bin, c] = full.at(j);
        from.index.push_back(at_bin);
        from.conj.push_back(c);
      }
    }
  }
  return gather_bins(Y, p.out, part.bins(), from);
}

// DYs (size M) -> DY (size N): DY[k] = DYs[k mod M].
at::Tensor tile_spectrum(const at::Tensor& DYs, const ConvPlan& p) {
  const HalfSpectrum full{p.rank, p.out.fft}, part{p.rank, p.out_folded.fft};
  BinSources from;
  for (int64_t b = 0; b < full.bins(); ++b) {
    const int64_t k0 = p.rank == 2 ? b / full.half() : b, k1 = p.rank == 2 ? b % full.half() : 0;
    const std::array<int64_t, 2> j = p.rank == 2 ? std::array<int64_t, 2>{k0 % part.n[0], k1 % part.n[1]}
                                                 : std::array<int64_t, 2>{k0 % part.n[0], 0};
    const auto [at_bin, c] = part.at(j);
    from.index.push_back(at_bin);
    from.conj.push_back(c);
  }
  return gather_bins(DYs, p.out_folded, full.bins(), from);
}

std::vector<int64_t> spatial_dims(int rank) {
  return rank == 1 ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 2};
}

// Weight [out, in/g, R...] -> [out*in/g, N...] circular kernels (tap offset m
// at index m mod N), after cropping to the taps that can reach the input.
at::Tensor circular_kernel(const at::Tensor& w, const ConvPlan& p) {
  at::Tensor k = w;
  for (int axis = 0; axis < p.rank; ++axis) {
    const int64_t taps = p.axes[axis].taps;
    k = k.narrow(2 + axis, (p.frame[axis] - taps) / 2, taps);
  }
  std::vector<int64_t> shape{p.kernel.count()};
  std::vector<int64_t> pad, shifts;
  for (int axis = 0; axis < p.rank; ++axis) shape.push_back(p.axes[axis].taps);
  for (int axis = p.rank - 1; axis >= 0; --axis) {
    pad.push_back(0);
    pad.push_back(p.axes[axis].fft - p.axes[axis].taps);
  }
  for (int axis = 0; axis < p.rank; ++axis) shifts.push_back(-(p.axes[axis].taps - 1) / 2);
  k = at::constant_pad_nd(k.reshape(shape), pad, 0);
  return at::roll(k, shifts, spatial_dims(p.rank)).contiguous();
}

// The adjoint of circular_kernel: [out*in/g, N...] -> [out, in/g, R...].
at::Tensor uncircular_kernel(const at::Tensor& h, const ConvPlan& p) {
  std::vector<int64_t> shifts;
  for (int axis = 0; axis < p.rank; ++axis) shifts.push_back((p.axes[axis].taps - 1) / 2);
  at::Tensor k = at::roll(h, shifts, spatial_dims(p.rank));
  std::vector<int64_t> shape{p.channels.out_channels, p.in_per_group};
  std::vector<int64_t> pad;
  for (int axis = 0; axis < p.rank; ++axis) {
    k = k.narrow(1 + axis, 0, p.axes[axis].taps);
    shape.push_back(p.axes[axis].taps);
  }
  for (int axis = p.rank - 1; axis >= 0; --axis) {
    const int64_t side = (p.frame[axis] - p.axes[axis].taps) / 2;
    pad.push_back(side);
    pad.push_back(side);
  }
  return at::constant_pad_nd(k.reshape(shape), pad, 0);
}

at::Tensor subsample(const at::Tensor& y, const ConvPlan& p) {
  at::Tensor s = y;
  for (int axis = 0; axis < p.rank; ++axis) {
    if (p.stride[axis] > 1) s = s.slice(2 + axis, 0, c10::nullopt, p.stride[axis]);
  }
  return s.is_contiguous() ? s : s.contiguous();
}

at::Tensor upsample_adjoint(const at::Tensor& dy, const ConvPlan& p) {
  bool strided = false;
  for (int axis = 0; axis < p.rank; ++axis) strided = strided || p.stride[axis] > 1;
  if (!strided) return dy.contiguous();
  std::vector<int64_t> shape{p.channels.batch, p.channels.out_channels};
  for (int axis = 0; axis < p.rank; ++axis) shape.push_back(p.axes[axis].n);
  at::Tensor full = at::zeros(shape, dy.options());
  at::Tensor view = full;
  for (int axis = 0; axis < p.rank; ++axis) {
    view = view.slice(2 + axis, 0, c10::nullopt, p.stride[axis]);
  }
  view.copy_(dy);
  return full;
}

std::array<int64_t, 2> input_sizes(const ConvPlan& p) {
  return {p.axes[0].n, p.rank == 2 ? p.axes[1].n : 1};
}

// The strided output's size per axis: ceil(n / s).
std::array<int64_t, 2> output_sizes(const ConvPlan& p) {
  std::array<int64_t, 2> m{1, 1};
  for (int axis = 0; axis < p.rank; ++axis) m[axis] = (p.axes[axis].n + p.stride[axis] - 1) / p.stride[axis];
  return m;
}

std::vector<int64_t> flat_shape(int64_t count, const ConvPlan& p) {
  std::vector<int64_t> shape{count};
  for (int axis = 0; axis < p.rank; ++axis) shape.push_back(p.axes[axis].n);
  return shape;
}

class SpectralConvFunction : public torch::autograd::Function<SpectralConvFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, std::vector<int64_t> stride, int64_t groups) {
    const ConvPlan p = make_plan(x.sizes(), w.sizes(), stride, groups);
    SpectralBackend& backend = spectral_backend_for(x.device());

    at::Tensor X = backend.rfft(x.reshape(flat_shape(p.data.count(), p)), p.data);
    at::Tensor H = backend.rfft(circular_kernel(w, p), p.kernel);
    at::Tensor Y = backend.product_forward(X, H, p.channels, p.scale());
    at::Tensor y;
    std::vector<int64_t> shape{p.channels.batch, p.channels.out_channels};
    if (p.folded) {
      at::Tensor Yf = fold_spectrum(Y, p);
      Y.reset();
      y = backend.irfft_consume(Yf, p.out_folded, output_sizes(p));
      for (int axis = 0; axis < p.rank; ++axis) shape.push_back(output_sizes(p)[axis]);
    } else {
      y = backend.irfft_consume(Y, p.out, input_sizes(p));
      for (int axis = 0; axis < p.rank; ++axis) shape.push_back(p.axes[axis].n);
    }
    ctx->saved_data["X"] = X;
    ctx->saved_data["H"] = H;
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    ctx->saved_data["w_sizes"] = w.sizes().vec();
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["groups"] = groups;
    return p.folded ? y.view(shape) : subsample(y.view(shape), p);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto x_sizes = ctx->saved_data["x_sizes"].toIntVector();
    const auto w_sizes = ctx->saved_data["w_sizes"].toIntVector();
    const auto stride = ctx->saved_data["stride"].toIntVector();
    const ConvPlan p = make_plan(x_sizes, w_sizes, stride, ctx->saved_data["groups"].toInt());
    const at::Tensor X = ctx->saved_data["X"].toTensor();
    const at::Tensor H = ctx->saved_data["H"].toTensor();
    SpectralBackend& backend = spectral_backend_for(X.device());

    at::Tensor dY;
    if (p.folded) {
      const auto m = output_sizes(p);
      std::vector<int64_t> flat{p.out.count(), m[0]};
      if (p.rank == 2) flat.push_back(m[1]);
      dY = tile_spectrum(backend.rfft(grads[0].contiguous().reshape(flat), p.out_folded), p);
    } else {
      at::Tensor dy = upsample_adjoint(grads[0], p);
      dY = backend.rfft(dy.reshape(flat_shape(p.out.count(), p)), p.out);
    }

    at::Tensor dx, dw;
    if (ctx->needs_input_grad(1)) {
      at::Tensor dH = backend.product_kernel_grad(X, dY, p.channels, p.scale());
      at::Tensor dh = backend.irfft_consume(dH, p.kernel, {p.kernel.fft[0], p.kernel.fft[1]});
      dw = uncircular_kernel(dh, p);
    }
    if (ctx->needs_input_grad(0)) {
      at::Tensor dX = backend.product_input_grad_consume(dY, H, p.channels, p.scale());
      dx = backend.irfft_consume(dX, p.data, input_sizes(p)).view(x_sizes);
    }
    return {dx, dw, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor spectral_conv(const at::Tensor& x, const at::Tensor& w,
                         const c10::optional<at::Tensor>& bias, at::IntArrayRef stride,
                         int64_t groups) {
  TORCH_CHECK(x.defined() && w.defined(), "spectral_conv: input and weight must be defined");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "spectral_conv: input must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(w.scalar_type() == x.scalar_type(), "spectral_conv: weight dtype ",
              w.scalar_type(), " differs from input dtype ", x.scalar_type());
  TORCH_CHECK(w.device() == x.device(), "spectral_conv: weight is on ", w.device().str(),
              " but the input is on ", x.device().str());
  // Validate shapes before autograd records anything.
  make_plan(x.sizes(), w.sizes(), stride, groups);

  at::Tensor y = SpectralConvFunction::apply(x, w, stride.vec(), groups);
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == w.size(0), "spectral_conv: bias must be [",
                w.size(0), "], got ", bias->sizes());
    std::vector<int64_t> shape(x.dim(), 1);
    shape[1] = w.size(0);
    y = y + bias->view(shape);
  }
  return y;
}

}  // namespace dash::ops
