#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "capi/internal.h"
#include "util/errors.h"

namespace dash::capi {
namespace {

thread_local std::string g_last_error;

bool mentions_allocation_failure(const std::string& m) {
  return m.find("can't allocate memory") != std::string::npos ||
         m.find("not enough memory") != std::string::npos ||
         m.find("Cannot allocate memory") != std::string::npos;
}

}  // namespace

dash_status fail(dash_status status, const std::string& message) {
  try {
    g_last_error = message;
  } catch (...) {
    g_last_error.clear();  // out of memory for the message itself
  }
  return status;
}

dash_status guarded(const char* function, const std::function<void()>& f) noexcept {
  const std::string where = std::string(function) + ": ";
  try {
    f();
    return DASH_OK;
  } catch (const train::Cancelled&) {
    return fail(DASH_CANCELLED, where + "cancelled by the progress callback");
  } catch (const Interrupted& e) {
    return fail(DASH_CANCELLED, where + e.what());
  } catch (const std::bad_alloc&) {
    return fail(DASH_OUT_OF_MEMORY,
                where + "out of memory; use a smaller batch_size, fewer samples or a smaller width");
  } catch (const Unsupported& e) {
    return fail(DASH_UNSUPPORTED, where + e.what());
  } catch (const IoError& e) {
    return fail(DASH_IO_ERROR, where + e.what());
  } catch (const FormatError& e) {
    return fail(DASH_BAD_FILE, where + e.what());
  } catch (const std::invalid_argument& e) {
    return fail(DASH_INVALID_ARGUMENT, where + e.what());
  } catch (const std::out_of_range& e) {
    return fail(DASH_INVALID_ARGUMENT, where + e.what());
  } catch (const c10::Error& e) {
    const std::string m = e.what_without_backtrace();
    if (mentions_allocation_failure(m)) {
      return fail(DASH_OUT_OF_MEMORY, where + "out of memory (" + m +
                                          "); use a smaller batch_size, fewer samples or a smaller width");
    }
    return fail(DASH_INTERNAL, where + "internal error in LibTorch: " + m);
  } catch (const std::exception& e) {
    return fail(DASH_INTERNAL, where + "internal error: " + e.what());
  } catch (...) {
    return fail(DASH_INTERNAL, where + "internal error: an unknown exception");
  }
}

void require(const void* p, const char* name) {
  if (p == nullptr) throw std::invalid_argument(std::string(name) + " is NULL");
}

char* copy_string(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out == nullptr) throw std::bad_alloc();
  std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

static_assert(int{DASH_SPLIT_TRAIN} == int{api::kTrain} && int{DASH_SPLIT_VALID} == int{api::kValid} &&
                  int{DASH_SPLIT_TEST} == int{api::kTest},
              "dash_split indexes api::TaskData::splits");

api::SplitIndex checked_split(const dash_split* raw) {
  static_assert(sizeof(dash_split) == sizeof(int), "dash_split is an int-sized C enum");
  int split = 0;
  std::memcpy(&split, raw, sizeof split);
  if (split < DASH_SPLIT_TRAIN || split > DASH_SPLIT_TEST) {
    throw std::invalid_argument("split " + std::to_string(split) +
                                " is not DASH_SPLIT_TRAIN, DASH_SPLIT_VALID or DASH_SPLIT_TEST");
  }
  return static_cast<api::SplitIndex>(split);
}

}  // namespace dash::capi

extern "C" {

const char* dash_last_error(void) { return dash::capi::g_last_error.c_str(); }

const char* dash_status_name(dash_status status) {
  switch (status) {
    case DASH_OK: return "DASH_OK";
    case DASH_INVALID_ARGUMENT: return "DASH_INVALID_ARGUMENT";
    case DASH_IO_ERROR: return "DASH_IO_ERROR";
    case DASH_BAD_FILE: return "DASH_BAD_FILE";
    case DASH_CANCELLED: return "DASH_CANCELLED";
    case DASH_UNSUPPORTED: return "DASH_UNSUPPORTED";
    case DASH_OUT_OF_MEMORY: return "DASH_OUT_OF_MEMORY";
    case DASH_INTERNAL: return "DASH_INTERNAL";
  }
  return "DASH_UNKNOWN_STATUS";
}

void dash_string_free(char* str) { std::free(str); }

}  // extern "C"
