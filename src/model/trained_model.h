#pragma once
// A trained network with everything needed to use it on raw data: the task
// spec, the architecture, the hyperparameters, the input normaliser and the
// weights; saved to and loaded from one model file (model_file.h).

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

#include "model/model_file.h"
#include "nn/architecture.h"
#include "nn/backbones.h"
#include "task/dataset.h"
#include "task/task_spec.h"
#include "train/trainer.h"

namespace dash::model {

class TrainedModel {
 public:
  // `net` must have been built from `backbone` with the FIXED `architecture`.
  TrainedModel(task::TaskSpec spec, nn::BackboneSpec backbone, nn::Architecture architecture,
               train::Hyperparams hp, task::Normalizer normalizer, nlohmann::json report,
               nn::Backbone net);

  const task::TaskSpec& spec() const { return spec_; }
  const nn::Architecture& architecture() const { return architecture_; }
  const nn::BackboneSpec& backbone() const { return backbone_; }
  const task::Normalizer& normalizer() const { return normalizer_; }
  // The network, in evaluation mode, for exporters: they only read it.
  const nn::Backbone& net() const { return net_; }

  // Values per sample of infer(): num_outputs, times the spatial size for dense tasks.
  int64_t output_size() const;

  // Moves the weights to where infer() and evaluate() compute (the CPU after
  // loading); must not run while another thread uses the model.
  void to(const at::Device& device);
  // Where the weights are.
  const at::Device& device() const { return device_; }

  // x: raw float32 [n, input_shape...] (not normalised). Returns float32
  // [n, num_outputs] or, dense, [n, num_outputs, spatial...], on the CPU
  // wherever x and the model are. Runs in
  // evaluation mode without gradients, in chunks of `batch` samples. Safe to
  // call from several threads at once: it changes nothing in the model.
  at::Tensor infer(const at::Tensor& x, int64_t batch = 256) const;

  // Loss and metric on a raw (not normalised) checked split. With `comm`
  // (a data-parallel run) the split is this rank's rows, and every rank gets
  // the result over all ranks' rows (train::evaluate).
  train::Evaluation evaluate(const task::Split& split, dist::Communicator* comm = nullptr) const;

  // Task, backbone, architecture, hyperparameters, normaliser, training
  // report and the library version that wrote it.
  nlohmann::json metadata() const;

  // Atomic; throws dash::IoError.
  void save(const std::string& path) const;
  // Throws dash::IoError, or dash::FormatError saying which check failed.
  static std::unique_ptr<TrainedModel> load(const std::string& path);
  // The same from a container already read and checked; messages start with `where`.
  static std::unique_ptr<TrainedModel> from_content(const ModelFileContent& content,
                                                    const std::string& where);

 private:
  task::TaskSpec spec_;
  nn::BackboneSpec backbone_;
  nn::Architecture architecture_;
  train::Hyperparams hp_;
  task::Normalizer normalizer_;
  nlohmann::json report_;
  nn::Backbone net_;
  at::Device device_ = at::kCPU;
};

}  // namespace dash::model
