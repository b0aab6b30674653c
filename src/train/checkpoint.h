#pragma once
// Crash-safe files: a file is written to a temporary name beside the target,
// flushed to disk, then renamed over it, so a reader sees the old file or the
// new one, never half of one.

#include <functional>
#include <string>

namespace dash::train {

// Calls write(tmp_path) to produce the file, fsyncs it, renames it to `path`
// and fsyncs the directory. On any failure the temporary file is removed, the
// previous file at `path` is untouched, and std::runtime_error says why.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

bool file_exists(const std::string& path);

}  // namespace dash::train
