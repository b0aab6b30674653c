#pragma once
// What the fuzz targets share. Each target defines LLVMFuzzerTestOneInput;
// it is linked with libFuzzer (-DDASH_FUZZ=ON, clang) to fuzz, or with
// replay_main.cpp to run a corpus as a regression test (any compiler).

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace dash::fuzz {

// The input as a file, for readers that take a path: one file per process
// and suffix, rewritten for every input (in /dev/shm when it exists, so it
// stays in memory).
inline std::string as_file(const uint8_t* data, size_t size, const std::string& suffix) {
  static const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  const std::string path = dir + "/dash_fuzz_" + std::to_string(getpid()) + suffix;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    throw std::runtime_error("fuzz: cannot write " + path);  // the harness, not the target
  }
  return path;
}

inline std::string as_string(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace dash::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
