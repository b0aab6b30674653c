#pragma once
// What the C ABI's translation units share: the handle structs, error
// reporting, the exception barrier, interrupts and progress. Nothing here is
// exported (the library is built with hidden visibility). The work itself is
// the core's (api/pipeline.h); each C function checks its pointers, calls it
// once and converts the result or the exception.

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>

#include "api/pipeline.h"
#include "dash/dash.h"
#include "model/trained_model.h"
#include "train/progress.h"
#include "train/trainer.h"

struct dash_task {
  dash::api::TaskData data;  // splits indexed by dash_split
  // Bumped by dash_task_interrupt; a call that sees it change since it began
  // stops. Mutable: interrupting changes no data, so it takes a const task.
  mutable std::atomic<uint64_t> interrupts{0};
};

struct dash_arch {
  dash::api::ArchChoice choice;  // report {} when made from JSON
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

// The progress function the core gets: stops when `stop` is requested, and
// otherwise passes the event to the C callback `fn` (which may be NULL).
train::ProgressFn progress_adapter(dash_progress_fn fn, void* user_data, const Interruption& stop);

// The split a caller passed, checked. Takes its address: an out-of-range value
// in a C enum may not even be loaded as the enum type in C++, so the bytes are
// read as an int.
api::SplitIndex checked_split(const dash_split* split);

// The C string of an options or JSON argument; NULL reads as "".
inline std::string text_or_empty(const char* s) { return s == nullptr ? std::string() : std::string(s); }

}  // namespace dash::capi
