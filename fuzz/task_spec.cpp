// dash_task_create on arbitrary text. A spec that is accepted must describe
// itself (dash_task_to_json) as a spec that is accepted again and describes
// itself the same way.

#include <string>

#include "dash/dash.h"
#include "fuzz_input.h"

namespace {

std::string describe(const dash_task* task) {
  char* text = nullptr;
  if (dash_task_to_json(task, &text) != DASH_OK) __builtin_trap();
  std::string s = text;
  dash_string_free(text);
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = dash::fuzz::as_string(data, size);
  dash_task* task = nullptr;
  const dash_status status = dash_task_create(text.c_str(), &task);
  // A refusal must say what is wrong: an internal error is a bug.
  if (status == DASH_INTERNAL) __builtin_trap();
  if (status != DASH_OK) {
    if (task != nullptr) __builtin_trap();  // out-parameters stay untouched on failure
    return 0;
  }
  const std::string first = describe(task);
  dash_task_free(task);
  dash_task* again = nullptr;
  if (dash_task_create(first.c_str(), &again) != DASH_OK) __builtin_trap();
  if (describe(again) != first) __builtin_trap();
  dash_task_free(again);
  return 0;
}
