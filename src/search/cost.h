#pragma once
// What each candidate (k, d) of each searchable layer costs the network it
// would end up in: measured once per task on this machine, as latency-aware
// NAS does, so that the search can weigh accuracy against time.

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "nn/architecture.h"
#include "nn/backbones.h"
#include "ops/fourier_mixture.h"

namespace dash::search {

enum class CostModelKind {
  kMeasured,  // ms of a training step (forward + backward) of the layer, timed here
  kMacs,      // multiply-accumulates per sample: deterministic, machine-blind
};

struct LayerCost {
  std::vector<double> ms;    // per candidate; for kMacs, MACs scaled to the backbone's ms
  std::vector<double> macs;  // multiply-accumulates per sample, per candidate
  std::vector<int64_t> spatial;  // the layer's input sizes (the axes after batch and channels)
};

struct CostModel {
  CostModelKind kind = CostModelKind::kMeasured;
  ops::CandidateSpace space;
  std::vector<LayerCost> layers;
  double backbone_step_ms = 0;   // one training step of the plain backbone, timed
  // The first backbone step, timed alone (warm-up included: an upper
  // estimate); 0 when none ran. Known for both kinds.
  double probe_step_ms = 0;
  double backbone_macs = 0;      // per sample, the whole plain backbone
  double seconds = 0;            // spent measuring
  std::string fallback;          // why MACs replaced the timings ("" if they did not)
  // Samples each candidate was timed at (its time then scaled to the step's
  // batch); 0 for the MACs model.
  int64_t timing_batch = 0;
  // Factor (<= 1) every timing was scaled by so that the plain layers' sum
  // fits in backbone_step_ms; 1 where it did already.
  double timing_scale = 1;

  // Estimated step time of the network with `choice` (one candidate index per
  // layer): the backbone's step plus each layer's difference to k=3, d=1.
  double step_ms(const std::vector<int64_t>& choice) const;
  double macs(const std::vector<int64_t>& choice) const;
  // The candidate index of the plain layer (k=3, d=1), or of the cheapest
  // when the space lacks it.
  int64_t plain_index(size_t layer) const;
  nlohmann::json to_json() const;
};

// Builds the plain network of `backbone` (FIXED layers, full convolutions,
// as the retrain will) and times, for every layer and candidate, one forward
// and backward of that layer alone at the size it runs at with `batch`
// samples. Candidates that cropping makes identical at a layer's size are
// timed once. `sample` is one batch of inputs of the task ([n, c, ...]).
// Where timing at the step's batch would take longer than max_seconds (0: no
// limit), the candidates are timed at fewer samples (timing_batch) and
// scaled; when even that does not fit, it stops and returns the MACs model
// instead, with `fallback` saying why.
CostModel measure_costs(const nn::BackboneSpec& backbone, const ops::CandidateSpace& space,
                        const at::Tensor& sample, CostModelKind kind, double max_seconds = 0);

// Parameters and per-sample multiply-accumulates of the network `arch` of
// `backbone` (convolutions, shortcuts and head; MACs count the taps that can
// touch the input).
struct NetworkSize {
  int64_t params = 0;
  double macs = 0;
};
NetworkSize network_size(const nn::BackboneSpec& backbone, const nn::Architecture& arch);

// Milliseconds per sample of inference (eval mode, no gradients) of the
// network on `batch` (its first dimension samples), on this machine: the
// median of 3 passes after a warm-up one.
double infer_ms_per_sample(const nn::BackboneSpec& backbone, const nn::Architecture& arch,
                           const at::Tensor& batch);

// Milliseconds of one training step (forward and backward, train mode) of
// each network of `archs` (networks of `backbone`) on `batch`, timed in
// turns: a warm-up step each, then rounds in which each takes one step, and
// the fastest of its rounds (cost.cpp says why). Taking turns puts a change
// of the machine's load on all of them alike, so their ratios hold on a
// shared machine. Rounds: 15, fewer where they would take over max_seconds
// (as the warm-up steps predict), but at least one. Plans trials in steps
// (search/dash.cpp).
// first_ms, if set, receives the first network's warm-up step: a cold first
// step, what a stage's first step costs.
std::vector<double> train_step_ms(const nn::BackboneSpec& backbone, const std::vector<nn::Architecture>& archs,
                                  const at::Tensor& batch, double max_seconds, double* first_ms = nullptr);

// Candidate indices of an architecture in `space` (throws if a choice is not
// in it).
std::vector<int64_t> choice_indices(const ops::CandidateSpace& space, const nn::Architecture& arch);

}  // namespace dash::search
