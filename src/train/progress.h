#pragma once
// One progress event of a long job, and the callback that receives it.

#include <functional>
#include <stdexcept>
#include <string>

namespace dash::train {

struct Progress {
  std::string stage;     // "search", "hpo", "retrain", "evaluate"
  long long epoch = 0;   // 1-based epoch within the stage
  long long epochs = 0;  // epochs planned for the stage
  long long step = 0;    // step within the epoch
  long long steps = 0;   // steps per epoch
  double loss = 0;       // running mean training loss of the epoch
  double metric = 0;     // latest validation metric (NaN before the first)
  double elapsed_s = 0;  // seconds since the stage started
  double eta_s = 0;      // estimated seconds left in the stage
  // The stage's warning (e.g. its budget affords too few steps to learn), on
  // the first event after it arose; "" otherwise. An event with step 0 comes
  // before the stage's first step and only carries a warning. After a step
  // back from a non-finite loss (the stage's diverge_retries) epoch and step
  // count again from where the weights went back to, and the first event
  // after it says so here ("...: the training loss became non-finite in
  // epoch E: stepped back to ...").
  std::string warning;
};

// Returns false to cancel: the job stops at the next step boundary and
// throws Cancelled.
using ProgressFn = std::function<bool(const Progress&)>;

struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled by the progress callback") {}
};

}  // namespace dash::train
