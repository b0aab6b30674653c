// dash_arch_from_json on arbitrary text. An architecture that is accepted
// must print (dash_arch_to_json) as one that is accepted again and prints the
// same.

#include <string>

#include "dash/dash.h"
#include "fuzz_input.h"

namespace {

std::string print(const dash_arch* arch) {
  char* text = nullptr;
  if (dash_arch_to_json(arch, &text) != DASH_OK) __builtin_trap();
  std::string s = text;
  dash_string_free(text);
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = dash::fuzz::as_string(data, size);
  dash_arch* arch = nullptr;
  const dash_status status = dash_arch_from_json(text.c_str(), &arch);
  // A refusal must say what is wrong: an internal error is a bug.
  if (status == DASH_INTERNAL) __builtin_trap();
  if (status != DASH_OK) {
    if (arch != nullptr) __builtin_trap();  // out-parameters stay untouched on failure
    return 0;
  }
  const std::string first = print(arch);
  dash_arch_free(arch);
  dash_arch* again = nullptr;
  if (dash_arch_from_json(first.c_str(), &again) != DASH_OK) __builtin_trap();
  if (print(again) != first) __builtin_trap();
  dash_arch_free(again);
  return 0;
}
