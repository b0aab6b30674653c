#pragma once
// What the C ABI's translation units share: the handle structs, error
// reporting, the exception barrier and option parsing. Nothing here is
// exported (the library is built with hidden visibility).

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "dash/dash.h"
#include "model/trained_model.h"
#include "nn/architecture.h"
#include "task/dataset.h"
#include "task/task_spec.h"
#include "train/progress.h"
#include "train/trainer.h"

struct dash_task {
  dash::task::TaskSpec spec;
  dash::task::Split splits[3];  // indexed by dash_split
  // Bumped by dash_task_interrupt; a call that sees it change since it began
  // stops. Mutable: interrupting changes no data, so it takes a const task.
  mutable std::atomic<uint64_t> interrupts{0};
};

struct dash_arch {
  dash::nn::Architecture architecture;
  dash::train::Hyperparams hp;
  nlohmann::json report;  // the search's report; {} when made from JSON
};

struct dash_model {
  std::unique_ptr<dash::model::TrainedModel> model;
  // Calls that use the weights share `weights`; dash_model_set_device, which
  // moves them, holds it alone. glibc's rwlock lets a steady stream of
  // readers starve a writer, so a writer first closes `gate`, which every
  // reader passes before it shares the lock (see reading() and moving()).
  mutable std::shared_mutex weights;
  mutable std::mutex gate;
};

namespace dash::capi {

// Shared use of a model's weights (infer, evaluate, save).
inline std::shared_lock<std::shared_mutex> reading(const dash_model& m) {
  std::lock_guard<std::mutex> gate(m.gate);
  return std::shared_lock<std::shared_mutex>(m.weights);
}

// Exclusive use (moving the weights): waits for running readers, admits no new ones.
inline std::unique_lock<std::shared_mutex> moving(const dash_model& m) {
  std::lock_guard<std::mutex> gate(m.gate);
  return std::unique_lock<std::shared_mutex>(m.weights);
}

// Valid but not available in this build (e.g. device "cuda" without CUDA).
struct Unsupported : std::runtime_error {
  explicit Unsupported(const std::string& what) : std::runtime_error(what) {}
};

// A call stopped by dash_task_interrupt (guarded() makes it DASH_CANCELLED).
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted by dash_task_interrupt") {}
};

// One call's view of its task's interrupts: the count when the call began.
class Interruption {
 public:
  explicit Interruption(const dash_task& task)
      : count_(task.interrupts), start_(count_.load()) {}
  bool requested() const { return count_.load() != start_; }
  void check() const {
    if (requested()) throw Interrupted();
  }
  // Runs f; the core's Cancelled becomes Interrupted when this call was
  // interrupted, so the message says which of the two stopped it.
  template <class F>
  auto run(F&& f) const -> decltype(f()) {
    try {
      return f();
    } catch (const train::Cancelled&) {
      check();
      throw;
    }
  }

 private:
  const std::atomic<uint64_t>& count_;
  const uint64_t start_;
};

// Records the message for dash_last_error() and returns the status.
dash_status fail(dash_status status, const std::string& message);

// Runs f, turning every exception into a status and a message: the one
// barrier every exported function goes through.
dash_status guarded(const char* function, const std::function<void()>& f) noexcept;

// Throws std::invalid_argument("<name> is NULL") when p is null (guarded()
// prefixes the function name).
void require(const void* p, const char* name);

// A copy of s that the caller frees with dash_string_free.
char* copy_string(const std::string& s);

enum class Call { kSearch, kRetrain };

// Parses an options JSON string (NULL or "" for defaults) for one call:
// unknown keys, keys of the other call and wrong types are errors naming the
// key. Returns every option of the call, defaults filled in.
nlohmann::json parse_options(const char* options_json, Call call);

// Every option with type, default, the calls that use it and help.
nlohmann::json describe_options();

// Applies the options every call shares: threads, FFT planner, device.
void apply_runtime_options(const nlohmann::json& options);

// Where search and retrain compute: "cpu", "cuda" (throws Unsupported in a
// build without CUDA or on a machine without a GPU), or "auto" (CUDA when
// both are there).
at::Device compute_device(const nlohmann::json& options);
// The same for a device name; other names are std::invalid_argument.
at::Device device_named(const std::string& device);

// The progress function the core gets: stops when `stop` is requested, and
// otherwise passes the event to the C callback `fn` (which may be NULL).
train::ProgressFn progress_adapter(dash_progress_fn fn, void* user_data, const Interruption& stop);

// The task's data as the pipeline wants it: train (first max_train rows),
// valid (carved from train when unset), test; checked, not yet normalised.
task::Dataset task_dataset(const dash_task& task, const nlohmann::json& options);

// prod(shape): values one sample of that shape holds; std::invalid_argument
// if that overflows int64_t.
int64_t values_per_sample(const std::vector<int64_t>& shape);

const char* split_name(dash_split split);
// The split a caller passed, checked. Takes its address: an out-of-range value
// in a C enum may not even be loaded as the enum type in C++, so the bytes are
// read as an int.
dash_split checked_split(const dash_split* split);

}  // namespace dash::capi
