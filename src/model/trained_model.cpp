#include "model/trained_model.h"

#include <torch/torch.h>

#include <sstream>

#include "dash/dash.h"
#include "model/model_file.h"
#include "search/dash.h"
#include "util/errors.h"

namespace dash::model {

using nlohmann::json;

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
    out.narrow(0, start, len).copy_(net->forward(normalizer_.apply(x.narrow(0, start, len))));
  }
  return out;
}

train::Evaluation TrainedModel::evaluate(const task::Split& split) const {
  task::Split normalised{normalizer_.apply(split.x), split.y};
  nn::Backbone net = net_;  // in eval mode: evaluate() only reads it
  return train::evaluate(net, spec_, normalised, 256);
}

json TrainedModel::metadata() const {
  return {{"format", "dashnas-model"},
          {"library_version", DASH_VERSION_STRING},
          {"task", spec_.to_json()},
          {"backbone",
           {{"name", backbone_.name()},
            {"depth", backbone_.depth},
            {"width", backbone_.width},
            {"dropout", backbone_.dropout}}},
          {"architecture", architecture_.to_json()},
          {"hyperparameters", hp_.to_json()},
          {"normalizer", normalizer_.to_json()},
          {"report", report_}};
}

void TrainedModel::save(const std::string& path) const {
  torch::serialize::OutputArchive archive;
  net_->save(archive);
  std::ostringstream weights;
  archive.save_to(weights);
  write_model_file(path, {metadata().dump(), weights.str()});
}

std::unique_ptr<TrainedModel> TrainedModel::load(const std::string& path) {
  const ModelFileContent content = read_model_file(path);
  const std::string where = "model file " + path + ": ";
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
    bspec = search::backbone_for(spec, b.at("depth").get<int>(), b.at("width").get<int>(),
                                 b.at("dropout").get<double>());
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
    net = nn::Backbone(bspec, fixed);
    torch::serialize::InputArchive archive;
    std::istringstream weights(content.weights);
    archive.load_from(weights);
    net->load(archive);
  } catch (const std::exception& e) {
    throw FormatError(where + "the weights do not fit the architecture: " + e.what());
  }
  return std::make_unique<TrainedModel>(spec, bspec, arch, hp, norm,
                                        meta.value("report", json::object()), net);
}

}  // namespace dash::model
