// CPU backend of spectral_conv: FFTW transforms, elementwise products for
// depthwise layers and oneDNN batched matrix products for full layers.

#include <ATen/Parallel.h>

#include "ops/cpu/dnnl_matmul.h"
#include "ops/cpu/fftw_plans.h"
#include "ops/spectral_backend.h"
#include "ops/spectral_tensors.h"

namespace dash::ops {
namespace {

using cpu::batched_matmul;

// Per-bin matrices of a channels-last spectrum [batch][bins][channels][2]:
// [bins][batch][2*channels], a strided view.
at::Tensor per_bin(const at::Tensor& spectrum, int64_t batch, int64_t bins, int64_t channels) {
  return spectrum.view({batch, bins, 2 * channels}).permute({1, 0, 2});
}

// The real signals of an in-place transform-major spectrum: [count, fft0,
// 2*(fft1/2+1)] in 2D, [count, 2*(fft0/2+1)] in 1D; the padding columns
// hold no signal.
at::Tensor in_place_real_view(const at::Tensor& spectrum, const FftGeometry& g) {
  if (g.rank == 1) return spectrum.view({g.count(), 2 * g.bins()}).narrow(1, 0, g.fft[0]);
  return spectrum.view({g.count(), g.fft[0], 2 * (g.fft[1] / 2 + 1)}).narrow(2, 0, g.fft[1]);
}

// real[:, :m0(, :m1)] = x and zero elsewhere that the transform reads,
// touching each value once. 2D: rows m0.. are left as they are, because the
// transform skips them (cpu::execute_r2c with rows = m0 transforms only the
// first m0 rows and zeroes the spectrum's others, which are the same memory).
void copy_padded(const at::Tensor& x, at::Tensor& real, const FftGeometry& g) {
  const int64_t m0 = x.size(1);
  real.narrow(1, 0, m0).narrow(-1, 0, x.size(-1)).copy_(x);
  if (g.rank == 2) {
    if (x.size(2) < g.fft[1]) real.narrow(1, 0, m0).narrow(2, x.size(2), g.fft[1] - x.size(2)).zero_();
  } else if (m0 < g.fft[0]) {
    real.narrow(1, m0, g.fft[0] - m0).zero_();
  }
}

// ---- depthwise: one complex multiply per bin -------------------------------

template <typename T>
void dw_forward(const T* X, const T* H, T* Y, int64_t count, int64_t channels, int64_t bins,
                T scale) {
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const T* x = X + 2 * t * bins;
      const T* h = H + 2 * (t % channels) * bins;
      T* y = Y + 2 * t * bins;
      for (int64_t f = 0; f < bins; ++f) {
        const T xr = x[2 * f], xi = x[2 * f + 1];
        const T hr = h[2 * f] * scale, hi = h[2 * f + 1] * scale;
        y[2 * f] = xr * hr + xi * hi;  // x * conj(h)
        y[2 * f + 1] = xi * hr - xr * hi;
      }
    }
  });
}

template <typename T>
void dw_input_grad(const T* dY, const T* H, T* dX, int64_t count, int64_t channels, int64_t bins,
                   T scale) {
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const T* y = dY + 2 * t * bins;
      const T* h = H + 2 * (t % channels) * bins;
      T* x = dX + 2 * t * bins;
      for (int64_t f = 0; f < bins; ++f) {
        const T yr = y[2 * f], yi = y[2 * f + 1];
        const T hr = h[2 * f] * scale, hi = h[2 * f + 1] * scale;
        x[2 * f] = yr * hr - yi * hi;  // dy * h
        x[2 * f + 1] = yr * hi + yi * hr;
      }
    }
  });
}

template <typename T>
void dw_kernel_grad(const T* X, const T* dY, T* dH, int64_t batch, int64_t channels, int64_t bins,
                    T scale) {
  // Parallel over (channel, block of bins) so that a handful of channels still
  // keeps every thread busy.
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (bins + kBlock - 1) / kBlock;
  at::parallel_for(0, channels * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) {
      const int64_t c = job / blocks;
      const int64_t f0 = (job % blocks) * kBlock;
      const int64_t f1 = std::min(bins, f0 + kBlock);
      T* h = dH + 2 * c * bins;
      for (int64_t f = f0; f < f1; ++f) h[2 * f] = h[2 * f + 1] = 0;
      for (int64_t b = 0; b < batch; ++b) {
        const T* x = X + 2 * (b * channels + c) * bins;
        const T* y = dY + 2 * (b * channels + c) * bins;
        for (int64_t f = f0; f < f1; ++f) {
          const T xr = x[2 * f], xi = x[2 * f + 1];
          const T yr = y[2 * f], yi = y[2 * f + 1];
          h[2 * f] += xr * yr + xi * yi;  // x * conj(dy)
          h[2 * f + 1] += xi * yr - xr * yi;
        }
      }
      for (int64_t f = f0; f < f1; ++f) {
        h[2 * f] *= scale;
        h[2 * f + 1] *= scale;
      }
    }
  });
}

// ---- full channels: a real matrix product per bin --------------------------
//
// A complex row vector x (K values, interleaved re/im = 2K reals) times a
// complex K x N matrix A equals the real row vector times the 2K x 2N matrix
//   E[2k+a][2n+a'] = [[ Re A, Im A], [-Im A, Re A]][a][a'] at (k, n).
// The input spectrum stays as it is; only the small kernel spectrum is expanded.

// H: [out][bins][in][2]. Writes E: [bins][2*rows][2*cols] for
// A[r][c] = scale * (forward ? conj(H[c][r]) : H[r][c]): rows = in, cols = out
// for the forward product and rows = out, cols = in for the input gradient.
template <typename T>
void expand_kernel(const T* H, T* E, int64_t bins, int64_t out, int64_t in, bool forward,
                   T scale) {
  const int64_t rows = forward ? in : out;
  const int64_t cols = forward ? out : in;
  at::parallel_for(0, bins, 16, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      T* e = E + 4 * f * rows * cols;
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          // forward: A[i][o] = conj(H[o][i]); input grad: A[o][i] = H[o][i]
          const int64_t o = forward ? c : r, i = forward ? r : c;
          const T* h = H + 2 * ((o * bins + f) * in + i);
          const T ar = h[0] * scale;
          const T ai = (forward ? -h[1] : h[1]) * scale;
          T* top = e + (2 * r) * (2 * cols) + 2 * c;
          T* bottom = top + 2 * cols;
          top[0] = ar;
          top[1] = ai;
          bottom[0] = -ai;
          bottom[1] = ar;
        }
      }
    }
  });
}

// P: [bins][2*out][2*in] with P[(o,a)][(c,a')] = sum_b dY_a[b,o] X_a'[b,c].
// dH[o,c] = scale * sum_b X[b,c] conj(dY[b,o]), written as [out][bins][in][2].
template <typename T>
void combine_kernel_grad(const T* P, T* dH, int64_t bins, int64_t out, int64_t in, T scale) {
  at::parallel_for(0, bins, 16, [&](int64_t begin, int64_t end) {
    for (int64_t f = begin; f < end; ++f) {
      const T* p = P + 4 * f * out * in;
      for (int64_t o = 0; o < out; ++o) {
        const T* re_row = p + (2 * o) * (2 * in);  // a = re
        const T* im_row = re_row + 2 * in;         // a = im
        T* h = dH + 2 * (o * bins + f) * in;
        for (int64_t c = 0; c < in; ++c) {
          h[2 * c] = scale * (re_row[2 * c] + im_row[2 * c + 1]);
          h[2 * c + 1] = scale * (re_row[2 * c + 1] - im_row[2 * c]);
        }
      }
    }
  });
}

class CpuSpectralBackend final : public SpectralBackend {
 public:
  // 2D: the row transforms of the padding rows (zero in, unwanted out) are
  // skipped (cpu::execute_r2c's rows).
  at::Tensor rfft(const at::Tensor& x, const FftGeometry& g) override {
    at::Tensor out = spectrum_empty(g, x.options());
    const int64_t rows = g.rank == 2 ? x.size(1) : 0;
    if (g.layout == SpectrumLayout::kTransformMajor) {
      // In place: no padded copy of the batch is ever allocated.
      at::Tensor real = in_place_real_view(out, g);
      copy_padded(x, real, g);
      cpu::execute_r2c(g, x.scalar_type(), out.data_ptr(), out.data_ptr(), rows);
      return out;
    }
    // Out of place the real arrays are [rows][fft1]: padded along axis 1 only.
    at::Tensor padded = rows > 0 ? at::constant_pad_nd(x, {0, g.fft[1] - x.size(2)}, 0).contiguous()
                                 : zero_pad(x, g);
    cpu::execute_r2c(g, x.scalar_type(), padded.data_ptr(), out.data_ptr(), rows);
    return out;
  }

  at::Tensor irfft_consume(at::Tensor& spectrum, const FftGeometry& g,
                           std::array<int64_t, 2> keep) override {
    at::Tensor full;
    const int64_t rows = g.rank == 2 ? keep[0] : 0;  // only the kept rows are transformed
    if (g.layout == SpectrumLayout::kTransformMajor) {
      cpu::execute_c2r(g, spectrum.scalar_type(), spectrum.data_ptr(), spectrum.data_ptr(), rows);
      full = in_place_real_view(spectrum, g);
    } else {
      std::vector<int64_t> shape{g.count(), rows > 0 ? rows : g.fft[0]};
      if (g.rank == 2) shape.push_back(g.fft[1]);
      full = at::empty(shape, spectrum.options());
      cpu::execute_c2r(g, spectrum.scalar_type(), spectrum.data_ptr(), full.data_ptr(), rows);
    }
    spectrum.reset();
    at::Tensor kept = full.narrow(1, 0, keep[0]);
    if (g.rank == 2) kept = kept.narrow(2, 0, keep[1]);
    return kept.is_contiguous() ? kept : kept.contiguous();
  }

  at::Tensor product_forward(const at::Tensor& X, const at::Tensor& H, const ChannelGeometry& c,
                             double scale) override {
    if (c.depthwise) {
      at::Tensor Y = at::empty_like(X);
      AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "dw_forward", [&] {
        dw_forward<scalar_t>(X.data_ptr<scalar_t>(), H.data_ptr<scalar_t>(),
                             Y.data_ptr<scalar_t>(), c.batch * c.in_channels, c.in_channels,
                             c.bins, static_cast<scalar_t>(scale));
      });
      return Y;
    }
    at::Tensor E = at::empty({c.bins, 2 * c.in_channels, 2 * c.out_channels}, X.options());
    AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "expand_kernel", [&] {
      expand_kernel<scalar_t>(H.data_ptr<scalar_t>(), E.data_ptr<scalar_t>(), c.bins,
                              c.out_channels, c.in_channels, true, static_cast<scalar_t>(scale));
    });
    // [bins][batch][2 in] @ [bins][2 in][2 out] -> [bins][batch][2 out]
    at::Tensor Y = at::empty({c.batch, c.bins, c.out_channels, 2}, X.options());
    at::Tensor Yb = per_bin(Y, c.batch, c.bins, c.out_channels);
    batched_matmul(per_bin(X, c.batch, c.bins, c.in_channels), E, Yb);
    return Y;
  }

  at::Tensor product_input_grad_consume(at::Tensor& dY, const at::Tensor& H,
                                        const ChannelGeometry& c, double scale) override {
    if (c.depthwise) {
      // Elementwise, so in place: dX takes over dY's memory.
      at::Tensor dX = std::move(dY);
      AT_DISPATCH_FLOATING_TYPES(dX.scalar_type(), "dw_input_grad", [&] {
        dw_input_grad<scalar_t>(dX.data_ptr<scalar_t>(), H.data_ptr<scalar_t>(),
                                dX.data_ptr<scalar_t>(), c.batch * c.in_channels, c.in_channels,
                                c.bins, static_cast<scalar_t>(scale));
      });
      dY.reset();
      return dX;
    }
    at::Tensor E = at::empty({c.bins, 2 * c.out_channels, 2 * c.in_channels}, dY.options());
    AT_DISPATCH_FLOATING_TYPES(dY.scalar_type(), "expand_kernel", [&] {
      expand_kernel<scalar_t>(H.data_ptr<scalar_t>(), E.data_ptr<scalar_t>(), c.bins,
                              c.out_channels, c.in_channels, false, static_cast<scalar_t>(scale));
    });
    at::Tensor dX = at::empty({c.batch, c.bins, c.in_channels, 2}, dY.options());
    at::Tensor dXb = per_bin(dX, c.batch, c.bins, c.in_channels);
    batched_matmul(per_bin(dY, c.batch, c.bins, c.out_channels), E, dXb);
    dY.reset();
    return dX;
  }

  at::Tensor product_kernel_grad(const at::Tensor& X, const at::Tensor& dY,
                                 const ChannelGeometry& c, double scale) override {
    if (c.depthwise) {
      at::Tensor dH = at::empty({c.in_channels, c.bins, 2}, X.options());
      AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "dw_kernel_grad", [&] {
        dw_kernel_grad<scalar_t>(X.data_ptr<scalar_t>(), dY.data_ptr<scalar_t>(),
                                 dH.data_ptr<scalar_t>(), c.batch, c.in_channels, c.bins,
                                 static_cast<scalar_t>(scale));
      });
      return dH;
    }
    // [bins][2 out][batch] @ [bins][batch][2 in]
    at::Tensor dYt = per_bin(dY, c.batch, c.bins, c.out_channels).transpose(1, 2);
    at::Tensor P = at::empty({c.bins, 2 * c.out_channels, 2 * c.in_channels}, X.options());
    batched_matmul(dYt, per_bin(X, c.batch, c.bins, c.in_channels), P);
    at::Tensor dH = at::empty({c.out_channels, c.bins, c.in_channels, 2}, X.options());
    AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "combine_kernel_grad", [&] {
      combine_kernel_grad<scalar_t>(P.data_ptr<scalar_t>(), dH.data_ptr<scalar_t>(), c.bins,
                                    c.out_channels, c.in_channels, static_cast<scalar_t>(scale));
    });
    return dH;
  }
};

}  // namespace

SpectralBackend& cpu_spectral_backend() {
  static CpuSpectralBackend backend;
  return backend;
}

SpectralBackend& spectral_backend_for(const at::Device& device) {
  if (device.is_cpu()) return cpu_spectral_backend();
#if defined(DASH_WITH_CUDA)
  if (device.is_cuda()) return cuda_spectral_backend();
#endif
  TORCH_CHECK(false, "spectral_conv: no backend for device ", device.str(),
              " in this build (CUDA support is built with -DDASH_WITH_CUDA=ON)");
}

}  // namespace dash::ops
