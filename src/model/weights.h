#pragma once
// The weights section of a model file (format version 2): a flat list of named
// tensors that dashnas encodes and decodes itself, so that loading a model
// never hands untrusted bytes to a general-purpose deserialiser.
//
//   u32 count
//   count times:
//     u16 name length L, L bytes of name (UTF-8, unique)
//     u8  dtype: 0 = float32, 1 = int64
//     u8  number of dimensions R (0..8)
//     R x i64 sizes (each >= 0)
//     the elements, C order, little-endian
//
// Every integer is little-endian. Decoding checks every length against the
// bytes that remain before it allocates or copies anything.

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

namespace torch::nn {
class Module;
}

namespace dash::model {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Every parameter and buffer of `module`, by its dotted name.
NamedTensors module_state(const torch::nn::Module& module);

std::string encode_weights(const NamedTensors& tensors);

// Throws std::runtime_error saying which entry is malformed.
NamedTensors decode_weights(const std::string& bytes);

// Copies `tensors` into the module's parameters and buffers. Every one the
// module has must be present with its exact dtype and shape, and nothing
// else may be: throws std::runtime_error naming the first mismatch.
void load_state(torch::nn::Module& module, const NamedTensors& tensors);

}  // namespace dash::model
