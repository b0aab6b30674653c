#pragma once
// The model file container: one self-describing file that nothing is trusted
// from before it is checked.
//
//   offset  size  field
//   0       8     magic "DASHNAS\x1a"
//   8       4     format version (uint32, little-endian; this code writes 1)
//   12      4     reserved, 0
//   16      8     metadata length M (uint64, little-endian)
//   24      8     weights length W (uint64, little-endian)
//   32      M     metadata: UTF-8 JSON
//   32+M    W     weights: a LibTorch archive
//   32+M+W  4     CRC-32 (Boost.CRC, the zlib polynomial) of every byte before it
//
// Reading checks, in order: the file opens and is a regular file; it is at
// least 36 bytes; the magic; the version (newer ones are refused with a message
// saying so); 36 + M + W equals the file size; the CRC. Only then are the
// metadata and weights handed out.

#include <cstdint>
#include <string>

namespace dash::model {

constexpr uint32_t kModelFormatVersion = 1;

struct ModelFileContent {
  std::string metadata;  // JSON text
  std::string weights;   // LibTorch archive bytes
};

// Writes atomically (temp file, fsync, rename). Throws dash::IoError.
void write_model_file(const std::string& path, const ModelFileContent& content);

// Throws dash::IoError (cannot open/read) or dash::FormatError (any check fails),
// each naming the path and the check.
ModelFileContent read_model_file(const std::string& path);

}  // namespace dash::model
