// The options parser of dash_search, dash_retrain and dash_evaluate_with on
// arbitrary text. The first input byte picks the call. Options that are accepted come back, with
// every default filled in, as JSON that parses to the same options again.

#include "api/options.h"
#include "fuzz_input.h"

namespace {

template <class Parse>
int round_trip(const std::string& text, Parse parse) {
  nlohmann::json parsed;
  try {
    parsed = dash::api::to_json(parse(text));
  } catch (const std::invalid_argument&) {
    return 0;  // refused with a message: expected for most inputs
  }
  // Any other exception escapes and fails the run: the C ABI would report it
  // as an internal error, which is a bug for an options string.
  if (dash::api::to_json(parse(parsed.dump())) != parsed) __builtin_trap();
  return 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text = dash::fuzz::as_string(data + 1, size - 1);
  if ((data[0] & 1) != 0) return round_trip(text, dash::api::parse_search_options);
  if ((data[0] & 2) != 0) return round_trip(text, dash::api::parse_evaluate_options);
  return round_trip(text, dash::api::parse_retrain_options);
}
