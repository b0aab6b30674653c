#pragma once
// The network in evaluation mode as a sequence of plain operations, for
// exporters (src/export): BackboneImpl::trace calls a GraphSink once per
// operation, in the order forward() computes them. A sink builds whatever
// graph it writes (ONNX) and returns a handle to each result.

#include <torch/torch.h>

#include <string>
#include <vector>

#include "nn/searchable_conv.h"

namespace dash::nn {

// A tensor of the traced graph: its name in the sink's graph, channels and
// spatial sizes (empty after global pooling).
struct GraphValue {
  std::string name;
  int64_t channels = 0;
  std::vector<int64_t> spatial;
};

class GraphSink {
 public:
  virtual ~GraphSink() = default;
  // `name` says which module the operation comes from ("conv3", "block2_bn1").
  virtual GraphValue conv(const GraphValue& x, const PlainConv& c, const std::string& name) = 0;
  // Evaluation-mode batch normalisation with the running statistics.
  virtual GraphValue batch_norm(const GraphValue& x, const at::Tensor& weight, const at::Tensor& bias,
                                const at::Tensor& running_mean, const at::Tensor& running_var,
                                double eps, const std::string& name) = 0;
  virtual GraphValue relu(const GraphValue& x) = 0;
  virtual GraphValue add(const GraphValue& a, const GraphValue& b) = 0;
  // Mean over every spatial position: [n, c, ...] -> [n, c].
  virtual GraphValue global_mean(const GraphValue& x) = 0;
  // x [n, in] -> x weight^T + bias [n, out].
  virtual GraphValue linear(const GraphValue& x, const at::Tensor& weight, const at::Tensor& bias,
                            const std::string& name) = 0;
  // x * scale + shift per channel, both [channels].
  virtual GraphValue channel_affine(const GraphValue& x, const at::Tensor& scale, const at::Tensor& shift,
                                    const std::string& name) = 0;
};

}  // namespace dash::nn
