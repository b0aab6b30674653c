// The .npy reader on arbitrary bytes: every outcome but a tensor or an
// exception with a message is a bug.

#include <ATen/Parallel.h>

#include "fuzz_input.h"
#include "task/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool single_thread = [] {
    at::set_num_threads(1);
    return true;
  }();
  (void)single_thread;
  const std::string path = dash::fuzz::as_file(data, size, ".npy");
  try {
    const at::Tensor t = dash::task::load_npy(path);
    if (!t.defined() || !t.is_contiguous()) __builtin_trap();
  } catch (const std::exception&) {
    // A refused file: the expected outcome for most inputs.
  }
  return 0;
}
