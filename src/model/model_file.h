#pragma once
// The model file container: one self-describing file that nothing is trusted
// from before it is checked.
//
//   offset  size  field
//   0       8     magic "DASHNAS\x1a"
//   8       4     format version (uint32, little-endian; this code writes 2)
//   12      4     reserved, 0
//   16      8     metadata length M (uint64, little-endian)
//   24      8     weights length W (uint64, little-endian)
//   32      M     metadata: UTF-8 JSON
//   32+M    W     weights: named tensors, see weights.h
//   32+M+W  4     CRC-32 (Boost.CRC, the zlib polynomial) of every byte before it
//
// Reading checks, in order: the file opens and is a regular file; it is at
// least 36 bytes; the magic; the version (newer ones are refused with a message
// saying so, and so are older ones: version 1 held a LibTorch archive); 36 + M
// + W equals the file size; the CRC. Only then are the metadata and weights
// handed out.

#include <cstdint>
#include <string>

namespace dash::model {

constexpr uint32_t kModelFormatVersion = 2;

struct ModelFileContent {
  std::string metadata;  // JSON text
  std::string weights;   // encode_weights() bytes
};

// Writes atomically (temp file, fsync, rename). Throws dash::IoError.
void write_model_file(const std::string& path, const ModelFileContent& content);

// Throws dash::IoError (cannot open/read) or dash::FormatError (any check fails),
// each naming the path and the check.
ModelFileContent read_model_file(const std::string& path);

// The same checks on a whole file already in memory; messages start with `where`.
ModelFileContent parse_model_file(const std::string& bytes, const std::string& where);

// The CRC-32 the trailer holds for a file whose bytes before the trailer are
// given (for tools and tests that build files by hand).
uint32_t model_file_checksum(const std::string& bytes_before_trailer);

}  // namespace dash::model
