#pragma once
// A trained model as an ONNX file, so that it runs without LibTorch (ONNX
// Runtime, TensorRT, OpenVINO, a browser). The graph is what
// TrainedModel::infer computes: input normalisation (optionally), every
// convolution with its kernel size, dilation, stride and padding,
// BatchNormalization with the running statistics, ReLU, residual additions,
// global average pooling, the head and the output affine map. It is checked
// with ONNX's checker and strict shape inference before it is written.

#include <nlohmann/json.hpp>

#include <string>

#include "model/trained_model.h"

namespace dash::deploy {

struct OnnxOptions {
  int opset = 13;              // 11 ... 17 (ONNX 1.12's newest)
  bool dynamic_batch = true;   // the batch dimension is the symbol "batch"
  int64_t batch_size = 1;      // the fixed batch when dynamic_batch is false
  bool normalize_input = true; // (x - mean) / std inside the graph; false: the caller's job
  // Keys "opset", "dynamic_batch", "batch_size", "normalize_input"; anything
  // else, or a wrong type or range, throws std::invalid_argument saying so.
  static OnnxOptions from_json(const nlohmann::json& j);
};

// The serialised ModelProto. Throws dash::Unsupported naming a layer that
// has no ONNX form, std::runtime_error if the checker refuses the graph.
std::string onnx_bytes(const model::TrainedModel& model, const OnnxOptions& options);

// onnx_bytes written atomically to path (dash::IoError if it cannot be).
void export_onnx(const model::TrainedModel& model, const std::string& path, const OnnxOptions& options);

}  // namespace dash::deploy
