#pragma once
// Crash-safe files: a file is written to a temporary name beside the target,
// flushed to disk, then renamed over it, so a reader sees the old file or the
// new one, never half of one.

#include <functional>
#include <string>

namespace dash::util {

// Calls write(tmp_path) to produce the file, fsyncs it, renames it to `path`
// and fsyncs the directory. On any failure the temporary file is removed, the
// previous file at `path` is untouched, and std::runtime_error says why.
// Temporaries of `path` left by processes that no longer run (killed
// mid-write) are removed first.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

// write_atomically with `bytes` as the file's content; every write error (a
// full disk, a read-only directory) is reported, never lost in a buffer.
void write_bytes_atomically(const std::string& path, const std::string& bytes);

bool file_exists(const std::string& path);

// The whole content of the file at `path`; dash::IoError when it cannot be read.
std::string read_file_bytes(const std::string& path);

}  // namespace dash::util
