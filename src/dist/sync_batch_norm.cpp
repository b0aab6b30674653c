#include "dist/sync_batch_norm.h"

#include <torch/torch.h>

namespace dash::dist {
namespace {

// y = the sum of x over the ranks; its gradient is the sum of the ranks'
// gradients of y (the adjoint of a sum over ranks is the same sum).
struct SumOverRanks : torch::autograd::Function<SumOverRanks> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, Communicator* comm) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    at::Tensor y = x.detach().clone();
    comm->sum(y);
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    at::Tensor g = grads[0].contiguous().clone();
    comm->sum(g);
    return {g, at::Tensor()};
  }
};

}  // namespace

at::Tensor synced_batch_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             at::Tensor& running_mean, at::Tensor& running_var, at::Tensor& num_batches_tracked,
                             double momentum, double eps, Communicator& comm) {
  std::vector<int64_t> reduce_dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) reduce_dims.push_back(d);
  const int64_t c = x.size(1);
  const double local_count = static_cast<double>(x.numel() / c);
  // One pass for the local statistics, one message for the global ones:
  // [count x mean, count x E[x^2], count] per channel, summed over ranks.
  const auto [local_var, local_mean] = at::var_mean(x, reduce_dims, /*unbiased=*/false);
  at::Tensor count = torch::full({c}, local_count, x.options());
  at::Tensor packed =
      torch::cat({local_mean * local_count, (local_var + local_mean * local_mean) * local_count, count});
  at::Tensor total = SumOverRanks::apply(packed, &comm);
  at::Tensor n = total.narrow(0, 2 * c, c).detach();
  at::Tensor mean = total.narrow(0, 0, c) / n;
  at::Tensor var = (total.narrow(0, c, c) / n - mean * mean).clamp_min(0);
  // y = x * scale + shift, one pass: scale = weight / sqrt(var + eps),
  // shift = bias - mean * scale.
  at::Tensor scale = torch::rsqrt(var + eps);
  if (weight.defined()) scale = scale * weight;
  at::Tensor shift = -mean * scale;
  if (bias.defined()) shift = shift + bias;
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = c;
  at::Tensor y = torch::addcmul(shift.view(shape), x, scale.view(shape));
  {
    torch::NoGradGuard no_grad;
    const double global = n[0].item<double>();
    if (running_mean.defined()) running_mean.mul_(1 - momentum).add_(mean.detach(), momentum);
    if (running_var.defined()) {
      running_var.mul_(1 - momentum).add_(var.detach() * (global / std::max(1.0, global - 1)), momentum);
    }
    if (num_batches_tracked.defined()) num_batches_tracked.add_(1);
  }
  return y;
}

}  // namespace dash::dist
