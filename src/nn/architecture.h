#pragma once
// The result of a search: one (kernel size, dilation) per searchable layer.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace dash::nn {

struct LayerChoice {
  int64_t kernel_size = 3;
  int64_t dilation = 1;
  int64_t receptive_field() const { return dilation * (kernel_size - 1) + 1; }
  bool operator==(const LayerChoice& o) const {
    return kernel_size == o.kernel_size && dilation == o.dilation;
  }
};

struct Architecture {
  std::string backbone;  // e.g. "wrn-16-1", "resnet1d"
  std::vector<LayerChoice> layers;

  // {"backbone": "...", "layers": [{"kernel_size": 5, "dilation": 3}, ...]}
  nlohmann::json to_json() const;
  // Throws std::invalid_argument naming the bad entry.
  static Architecture from_json(const nlohmann::json& j);
  // Every layer at k = 3, d = 1: the plain backbone.
  static Architecture plain(const std::string& backbone, size_t layers);
};

}  // namespace dash::nn
