#include "model/trained_model.h"

#include <torch/torch.h>

#include "util/version.h"
#include "model/model_file.h"
#include "model/weights.h"
#include "search/dash.h"
#include "util/errors.h"

namespace dash::model {

using nlohmann::json;

namespace {

// Building the network allocates what the metadata describes. A genuine file
// stores every one of those weights, so the stem (in_channels x 16 x k...),
// the head (num_outputs x ...) and each kernel are no larger than the weights
// section: a file whose metadata claims more is refused before anything is
// built, so a forged file cannot make the loader allocate gigabytes.
void check_plausible_size(const task::TaskSpec& spec, const nn::Architecture& arch,
                          const NamedTensors& weights) {
  int64_t stored = 0;
  for (const auto& named : weights) stored += named.second.numel();  // bounded by the file size
  auto refuse = [&](const std::string& what) {
    throw std::runtime_error(what + ", but the weights section holds only " +
                             std::to_string(stored) + " values in all");
  };
  if (spec.in_channels() > stored / 16) {
    refuse("the task has " + std::to_string(spec.in_channels()) + " input channels");
  }
  if (spec.num_outputs > stored) refuse("the task has " + std::to_string(spec.num_outputs) + " outputs");
  const int dims = static_cast<int>(spec.spatial().size());
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    int64_t taps = 1;
    for (int d = 0; d < dims; ++d) {
      if (arch.layers[i].kernel_size > stored / taps) {
        refuse("layer " + std::to_string(i) + " has kernel size " +
               std::to_string(arch.layers[i].kernel_size));
      }
      taps *= arch.layers[i].kernel_size;
    }
  }
}

}  // namespace

TrainedModel::TrainedModel(task::TaskSpec spec, nn::BackboneSpec backbone,
                           nn::Architecture architecture, train::Hyperparams hp,
                           task::Normalizer normalizer, json report, nn::Backbone net)
    : spec_(std::move(spec)),
      backbone_(std::move(backbone)),
      architecture_(std::move(architecture)),
      hp_(hp),
      normalizer_(std::move(normalizer)),
      report_(std::move(report)),
      net_(std::move(net)) {
  net_->eval();
}

int64_t TrainedModel::output_size() const {
  int64_t n = spec_.num_outputs;
  if (spec_.kind == task::TaskKind::kDense) {
    for (int64_t s : spec_.spatial()) n *= s;
  }
  return n;
}

void TrainedModel::to(const at::Device& device) {
  net_->to(device);
  device_ = device;
}

at::Tensor TrainedModel::infer(const at::Tensor& x, int64_t batch) const {
  torch::NoGradGuard no_grad;
  const int64_t n = x.size(0);
  std::vector<int64_t> out_shape = {n, spec_.num_outputs};
  if (spec_.kind == task::TaskKind::kDense) {
    for (int64_t s : spec_.spatial()) out_shape.push_back(s);
  }
  at::Tensor out = at::empty(out_shape, at::kFloat);
  nn::Backbone net = net_;  // forward() is not const, but reads only in eval mode
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t len = std::min(batch, n - start);
    // forward() only reads the module in eval mode: no state changes, so
    // concurrent calls are safe.
    const at::Tensor chunk = x.narrow(0, start, len).to(device_);
    out.narrow(0, start, len).copy_(net->forward(normalizer_.apply(chunk)));
  }
  return out;
}

train::Evaluation TrainedModel::evaluate(const task::Split& split, dist::Communicator* comm) const {
  task::Split normalised{normalizer_.apply(split.x.to(device_)), split.y.to(device_)};
  nn::Backbone net = net_;  // in eval mode: evaluate() only reads it
  return train::evaluate(net, spec_, normalised, 256, 0, comm);
}

json TrainedModel::metadata() const {
  return {{"format", "dashnas-model"},
          {"library_version", util::kVersion},
          {"task", spec_.to_json()},
          {"backbone",
           {{"name", backbone_.name()},
            {"depth", backbone_.depth},
            {"width", backbone_.width},
            {"stem_stride", backbone_.stem_stride},
            {"dropout", backbone_.dropout}}},
          {"architecture", architecture_.to_json()},
          {"hyperparameters", hp_.to_json()},
          {"normalizer", normalizer_.to_json()},
          {"report", report_}};
}

void TrainedModel::save(const std::string& path) const {
  write_model_file(path, {metadata().dump(), encode_weights(module_state(*net_))});
}

std::unique_ptr<TrainedModel> TrainedModel::load(const std::string& path) {
  return from_content(read_model_file(path), "model file " + path + ": ");
}

std::unique_ptr<TrainedModel> TrainedModel::from_content(const ModelFileContent& content,
                                                         const std::string& where) {
  json meta;
  task::TaskSpec spec;
  nn::BackboneSpec bspec;
  nn::Architecture arch;
  train::Hyperparams hp;
  task::Normalizer norm;
  try {
    meta = json::parse(content.metadata);
    if (meta.value("format", "") != "dashnas-model") throw std::invalid_argument("not a dashnas model");
    spec = task::TaskSpec::from_json(meta.at("task"));
    const json& b = meta.at("backbone");
    hp = train::Hyperparams::from_json(meta.at("hyperparameters"));
    // Files from before the stem have no stem_stride: they had none.
    bspec = nn::backbone_for(spec, b.at("depth").get<int>(), b.at("width").get<int>(),
                             b.at("dropout").get<double>(), b.value("stem_stride", int64_t{1}));
    bspec.validate();
    arch = nn::Architecture::from_json(meta.at("architecture"));
    norm = task::Normalizer::from_json(meta.at("normalizer"));
    if (norm.mean.numel() != spec.in_channels() || norm.std.numel() != spec.in_channels()) {
      throw std::invalid_argument("the normaliser has " + std::to_string(norm.mean.numel()) +
                                  " channels for an input of " +
                                  std::to_string(spec.in_channels()));
    }
  } catch (const std::exception& e) {
    throw FormatError(where + "bad metadata: " + e.what());
  }
  nn::LayerSetup fixed;
  fixed.architecture = arch;
  nn::Backbone net{nullptr};
  try {
    const NamedTensors weights = decode_weights(content.weights);
    check_plausible_size(spec, arch, weights);
    net = nn::Backbone(bspec, fixed);
    load_state(*net, weights);
  } catch (const std::exception& e) {
    throw FormatError(where + "bad weights section: " + e.what());
  }
  return std::make_unique<TrainedModel>(spec, bspec, arch, hp, norm,
                                        meta.value("report", json::object()), net);
}

}  // namespace dash::model
