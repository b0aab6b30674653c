#include "model/model_file.h"

#include <sys/stat.h>

#include <boost/crc.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "util/atomic_file.h"
#include "util/errors.h"

namespace dash::model {
namespace {

constexpr char kMagic[8] = {'D', 'A', 'S', 'H', 'N', 'A', 'S', '\x1a'};
constexpr uint64_t kHeaderBytes = 32;
constexpr uint64_t kTrailerBytes = 4;

void put_le(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint32_t crc32_of(const char* data, size_t n) {
  boost::crc_32_type crc;
  crc.process_bytes(data, n);
  return crc.checksum();
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

void write_model_file(const std::string& path, const ModelFileContent& content) {
  std::string bytes(kMagic, sizeof kMagic);
  put_le(&bytes, kModelFormatVersion, 4);
  put_le(&bytes, 0, 4);
  put_le(&bytes, content.metadata.size(), 8);
  put_le(&bytes, content.weights.size(), 8);
  bytes += content.metadata;
  bytes += content.weights;
  put_le(&bytes, crc32_of(bytes.data(), bytes.size()), 4);

  util::write_bytes_atomically(path, bytes);
}

ModelFileContent read_model_file(const std::string& path) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) throw IoError("cannot open model file " + path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fileno(f.get()), &st) != 0) {
    throw IoError("cannot stat model file " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) throw IoError("model file " + path + " is not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const std::string where = "model file " + path + ": ";
  if (size < kHeaderBytes + kTrailerBytes) {
    throw FormatError(where + "only " + std::to_string(size) +
                      " bytes, shorter than any model file (truncated?)");
  }
  std::string bytes(size, '\0');
  if (std::fread(bytes.data(), 1, size, f.get()) != size) {
    if (std::ferror(f.get())) throw IoError(where + "read error: " + std::strerror(errno));
    throw FormatError(where + "shorter than its size on disk; was it being written?");
  }
  return parse_model_file(bytes, where);
}

ModelFileContent parse_model_file(const std::string& bytes, const std::string& where) {
  const uint64_t size = bytes.size();
  if (size < kHeaderBytes + kTrailerBytes) {
    throw FormatError(where + "only " + std::to_string(size) +
                      " bytes, shorter than any model file (truncated?)");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (std::memcmp(p, kMagic, sizeof kMagic) != 0) {
    throw FormatError(where + "not a dashnas model (bad magic bytes)");
  }
  const uint64_t version = get_le(p + 8, 4);
  if (version > kModelFormatVersion) {
    throw FormatError(where + "format version " + std::to_string(version) +
                      " was written by a newer dashnas; this one reads version " +
                      std::to_string(kModelFormatVersion) + ": upgrade dashnas");
  }
  if (version < kModelFormatVersion) {
    throw FormatError(where + "format version " + std::to_string(version) +
                      (version == 1 ? " (earlier dashnas builds, whose weights section was a LibTorch archive)" : "") +
                      " is no longer read; this dashnas reads version " +
                      std::to_string(kModelFormatVersion) + ": retrain, or use the dashnas that wrote it");
  }
  const uint64_t m = get_le(p + 16, 8);
  const uint64_t w = get_le(p + 24, 8);
  const uint64_t body = size - kHeaderBytes - kTrailerBytes;
  if (m > body || w > body - m || m + w != body) {
    throw FormatError(where + "its section lengths (" + std::to_string(m) + " + " +
                      std::to_string(w) + " bytes) do not match the file size (" +
                      std::to_string(size) + " bytes): truncated or corrupted");
  }
  const uint32_t stored = static_cast<uint32_t>(get_le(p + size - kTrailerBytes, 4));
  if (crc32_of(bytes.data(), size - kTrailerBytes) != stored) {
    throw FormatError(where + "checksum mismatch: the file is corrupted");
  }
  return {bytes.substr(kHeaderBytes, m), bytes.substr(kHeaderBytes + m, w)};
}

uint32_t model_file_checksum(const std::string& bytes_before_trailer) {
  return crc32_of(bytes_before_trailer.data(), bytes_before_trailer.size());
}

}  // namespace dash::model
