#pragma once
// Batched real matrix products on oneDNN, one primitive per shape, cached.

#include <ATen/ATen.h>

namespace dash::ops::cpu {

// C[i] = A[i] @ B[i] for every i < batch, written into C.
// A: [batch, M, K], B: [batch, K, N], C: [batch, M, N], each with any strides
// (permuted views of channels-last spectra are the normal case).
// float32 runs on oneDNN; float64 (used by the precision tests) on at::bmm.
void batched_matmul(const at::Tensor& A, const at::Tensor& B, at::Tensor& C);

}  // namespace dash::ops::cpu
