// The options parser of dash_search and dash_retrain on arbitrary text. The
// first input byte picks the call. Options that are accepted come back with
// every default filled in, and that result is accepted again unchanged.

#include "capi/internal.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using dash::capi::Call;
  const Call call = (data[0] & 1) != 0 ? Call::kSearch : Call::kRetrain;
  const std::string text = dash::fuzz::as_string(data + 1, size - 1);
  nlohmann::json parsed;
  try {
    parsed = dash::capi::parse_options(text.c_str(), call);
  } catch (const std::invalid_argument&) {
    return 0;  // refused with a message: expected for most inputs
  }
  // Any other exception escapes and fails the run: the C ABI would report it
  // as an internal error, which is a bug for an options string.
  const std::string canonical = parsed.dump();
  if (dash::capi::parse_options(canonical.c_str(), call) != parsed) __builtin_trap();
  return 0;
}
