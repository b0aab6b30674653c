#pragma once
// Exception types whose difference a caller acts on: the C ABI maps them to
// distinct statuses. All are std::runtime_error, so code that only reports
// the message needs nothing special.

#include <stdexcept>
#include <string>

namespace dash {

// A file could not be opened, read or written (missing, permissions, disk full).
struct IoError : std::runtime_error {
  explicit IoError(const std::string& what) : std::runtime_error(what) {}
};

// A file was read but its content is wrong: truncated, corrupted, not the
// expected format, or written by a newer version.
struct FormatError : std::runtime_error {
  explicit FormatError(const std::string& what) : std::runtime_error(what) {}
};

// Valid, but not available in this build or on this machine (e.g. device
// "cuda" without CUDA).
struct Unsupported : std::runtime_error {
  explicit Unsupported(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace dash
