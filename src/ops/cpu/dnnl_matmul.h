#pragma once
// Batched real matrix products on oneDNN, one primitive per shape, cached.

#include <ATen/ATen.h>

namespace dash::ops::cpu {

// C[i] = A[i] @ B[i] for every i < batch.
// A: [batch, M, K] with any strides (a transposed view is fine);
// B: [batch, K, N] contiguous. Returns C: [batch, M, N] contiguous.
// float32 runs on oneDNN; float64 (used by the precision tests) on at::bmm.
at::Tensor batched_matmul(const at::Tensor& A, const at::Tensor& B);

}  // namespace dash::ops::cpu
