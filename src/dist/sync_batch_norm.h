#pragma once
// Batch normalisation whose batch statistics are those of the whole global
// batch, summed over the ranks (PyTorch's SyncBatchNorm does the same), so
// that a step on R ranks of b samples each computes what one process does on
// R x b samples, and the ranks' running statistics stay identical.

#include <ATen/ATen.h>

#include "dist/communicator.h"

namespace dash::dist {

// Training-mode batch norm of x [n, channels, spatial...] over the global
// batch: normalises with the global mean and biased variance, applies weight
// and bias, and updates running_mean / running_var (unbiased) and
// num_batches_tracked as torch::nn::BatchNorm does (momentum, eps).
// Differentiable: the statistics' sums are all-reduced in the forward pass
// and their gradients in the backward pass.
at::Tensor synced_batch_norm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                             at::Tensor& running_mean, at::Tensor& running_var, at::Tensor& num_batches_tracked,
                             double momentum, double eps, Communicator& comm);

}  // namespace dash::dist
