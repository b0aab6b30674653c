#include "nn/architecture.h"

#include <stdexcept>

namespace dash::nn {

nlohmann::json Architecture::to_json() const {
  nlohmann::json layers_json = nlohmann::json::array();
  for (const auto& l : layers) {
    layers_json.push_back({{"kernel_size", l.kernel_size}, {"dilation", l.dilation}});
  }
  return {{"backbone", backbone}, {"layers", layers_json}};
}

Architecture Architecture::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("architecture must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    if (key != "backbone" && key != "layers") {
      throw std::invalid_argument("architecture: unknown key '" + key +
                                  "' (expected 'backbone' and 'layers')");
    }
  }
  if (!j.contains("backbone") || !j["backbone"].is_string()) {
    throw std::invalid_argument("architecture: 'backbone' must be a string");
  }
  if (!j.contains("layers") || !j["layers"].is_array()) {
    throw std::invalid_argument("architecture: 'layers' must be an array");
  }
  Architecture a;
  a.backbone = j["backbone"].get<std::string>();
  size_t i = 0;
  for (const auto& l : j["layers"]) {
    const std::string where = "architecture: layer " + std::to_string(i++);
    if (!l.is_object() || !l.contains("kernel_size") || !l.contains("dilation") ||
        !l["kernel_size"].is_number_integer() || !l["dilation"].is_number_integer() ||
        l.size() != 2) {
      throw std::invalid_argument(where +
                                  " must be {\"kernel_size\": odd int, \"dilation\": int >= 1}");
    }
    LayerChoice c{l["kernel_size"].get<int64_t>(), l["dilation"].get<int64_t>()};
    if (c.kernel_size < 1 || c.kernel_size % 2 == 0 || c.kernel_size > 1025) {
      throw std::invalid_argument(where + ": kernel_size " + std::to_string(c.kernel_size) +
                                  " must be odd and in [1, 1025]");
    }
    if (c.dilation < 1 || c.dilation > 4096) {
      throw std::invalid_argument(where + ": dilation " + std::to_string(c.dilation) +
                                  " must be in [1, 4096]");
    }
    a.layers.push_back(c);
  }
  return a;
}

Architecture Architecture::plain(const std::string& backbone, size_t layers) {
  Architecture a;
  a.backbone = backbone;
  a.layers.assign(layers, LayerChoice{3, 1});
  return a;
}

}  // namespace dash::nn
