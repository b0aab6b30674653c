// The IDX reader on arbitrary bytes. The first input byte is a mode: odd reads
// the rest as a gzip-compressed file (.idx.gz, through Boost.Iostreams' zlib),
// even as a plain one.

#include <ATen/Parallel.h>

#include "fuzz_input.h"
#include "task/io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool single_thread = [] {
    at::set_num_threads(1);
    return true;
  }();
  (void)single_thread;
  if (size == 0) return 0;
  const bool gzip = (data[0] & 1) != 0;
  const std::string path = dash::fuzz::as_file(data + 1, size - 1, gzip ? ".idx.gz" : ".idx");
  try {
    const at::Tensor t = dash::task::load_idx(path);
    if (!t.defined() || !t.is_contiguous()) __builtin_trap();
  } catch (const std::exception&) {
    // A refused file: the expected outcome for most inputs.
  }
  return 0;
}
