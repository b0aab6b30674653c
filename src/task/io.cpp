#include "task/io.h"

#include "util/errors.h"

#include <sys/stat.h>

#include <algorithm>
#include <boost/iostreams/filter/gzip.hpp>
#include <boost/iostreams/filtering_streambuf.hpp>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dash::task {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw FormatError(path + ": " + what);
}

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// Reverses the bytes of each of `count` items of `itemsize` bytes.
void swap_items(void* data, int64_t count, int itemsize) {
  if (itemsize <= 1) return;
  auto* p = static_cast<unsigned char*>(data);
  for (int64_t i = 0; i < count; ++i, p += itemsize) std::reverse(p, p + itemsize);
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + ")";
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A regular file opened for reading, with its size known up front so that
// every length field can be checked before anything is allocated.
class InFile {
 public:
  explicit InFile(const std::string& path) : path_(path) {
    f_ = std::fopen(path.c_str(), "rb");
    if (f_ == nullptr) fail_open(std::strerror(errno));
    struct stat st;
    if (fstat(fileno(f_), &st) != 0) fail_open(std::strerror(errno));
    if (S_ISDIR(st.st_mode)) fail_open(std::strerror(EISDIR));
    if (!S_ISREG(st.st_mode)) fail_open("not a regular file");
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~InFile() {
    if (f_ != nullptr) std::fclose(f_);
  }
  InFile(const InFile&) = delete;
  InFile& operator=(const InFile&) = delete;

  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Up to n bytes; fewer only at the end of the file. Read errors throw.
  size_t read_some(void* dst, size_t n) {
    const size_t got = std::fread(dst, 1, n, f_);
    if (got < n && std::ferror(f_)) throw IoError(path_ + ": read error: " + std::strerror(errno));
    return got;
  }
  void read_exact(void* dst, size_t n, const char* what) {
    if (read_some(dst, n) != n) fail(path_, std::string("truncated while reading ") + what);
  }

  // A Boost.Iostreams source over this file, for the gzip decompressor.
  struct Source {
    using char_type = char;
    using category = boost::iostreams::source_tag;
    InFile* file;
    std::streamsize read(char* s, std::streamsize n) {
      const size_t got = file->read_some(s, static_cast<size_t>(n));
      return got == 0 ? -1 : static_cast<std::streamsize>(got);
    }
  };

 private:
  [[noreturn]] void fail_open(const std::string& why) {
    if (f_ != nullptr) std::fclose(f_);
    f_ = nullptr;
    throw IoError("cannot open " + path_ + ": " + why);
  }

  std::string path_;
  std::FILE* f_ = nullptr;
  uint64_t size_ = 0;
};

// Product of dimensions times itemsize, or false on int64 overflow.
bool checked_bytes(const std::vector<int64_t>& shape, int64_t itemsize, int64_t* numel,
                   int64_t* bytes) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return false;
    n *= d;
  }
  if (n > std::numeric_limits<int64_t>::max() / itemsize) return false;
  *numel = n;
  *bytes = n * itemsize;
  return true;
}

// ---- .npy -------------------------------------------------------------------

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// The header is a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// This parser accepts exactly the three keys the format defines.
class NpyHeaderParser {
 public:
  NpyHeaderParser(const std::string& text, const std::string& path) : s_(text), path_(path) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    while (true) {
      skip_ws();
      if (peek() == '}') break;
      const std::string key = parse_string();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (peek() == '[') fail(path_, "structured dtypes (a list in 'descr') are not supported");
        h.descr = parse_string();
        have_descr = true;
      } else if (key == "fortran_order") {
        const std::string word = parse_word();
        if (word != "True" && word != "False") bad("'fortran_order' must be True or False");
        h.fortran_order = word == "True";
        have_order = true;
      } else if (key == "shape") {
        h.shape = parse_shape();
        have_shape = true;
      } else {
        bad("unexpected key '" + key + "'");
      }
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != '}') bad("expected ',' or '}'");
    }
    ++i_;
    for (; i_ < s_.size(); ++i_) {
      if (!std::isspace(static_cast<unsigned char>(s_[i_])) && s_[i_] != '\0') {
        bad("unexpected text after the dict");
      }
    }
    if (!have_descr) bad("'descr' is missing");
    if (!have_order) bad("'fortran_order' is missing");
    if (!have_shape) bad("'shape' is missing");
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& what) {
    std::string shown = s_.substr(0, 200);
    while (!shown.empty() && std::isspace(static_cast<unsigned char>(shown.back())))
      shown.pop_back();
    fail(path_, "malformed .npy header (" + what + "): " + shown);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) bad(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string parse_string() {
    skip_ws();
    const char quote = peek();
    if (quote != '\'' && quote != '"') bad("expected a quoted string");
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != quote) {
      if (s_[i_] == '\\') bad("escapes in strings are not supported");
      out += s_[i_++];
    }
    if (i_ >= s_.size()) bad("unterminated string");
    ++i_;
    return out;
  }
  std::string parse_word() {
    std::string out;
    while (i_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[i_]))) out += s_[i_++];
    return out;
  }
  std::vector<int64_t> parse_shape() {
    std::vector<int64_t> shape;
    expect('(');
    while (true) {
      skip_ws();
      if (peek() == ')') break;
      if (!std::isdigit(static_cast<unsigned char>(peek())))
        bad("'shape' must be a tuple of non-negative integers");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        const int digit = peek() - '0';
        if (v > (std::numeric_limits<int64_t>::max() - digit) / 10)
          bad("a dimension in 'shape' is too large");
        v = v * 10 + digit;
        ++i_;
      }
      if (peek() == 'L') ++i_;  // Python 2 longs
      shape.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != ')') bad("expected ',' or ')' in 'shape'");
    }
    ++i_;
    return shape;
  }

  const std::string& s_;
  const std::string& path_;
  size_t i_ = 0;
};

struct NpyType {
  at::ScalarType file_type;  // how the bytes are laid out
  int itemsize;
};

NpyType npy_type(const std::string& descr, const std::string& path) {
  static const char* const kSupported = "'<f4', '<f8', '|u1', '<i8', '<i4', '|i1', '|b1'";
  if (descr.find('O') != std::string::npos) {
    fail(path, "object arrays ('" + descr + "') cannot be loaded; save a numeric array");
  }
  if (descr.size() == 3 &&
      (descr[0] == '<' || descr[0] == '>' || descr[0] == '|' || descr[0] == '=')) {
    const std::string code = descr.substr(1);
    const char order = descr[0];
    NpyType t{at::kFloat, 0};
    if (code == "f4")
      t = {at::kFloat, 4};
    else if (code == "f8")
      t = {at::kDouble, 8};
    else if (code == "u1")
      t = {at::kByte, 1};
    else if (code == "i1")
      t = {at::kChar, 1};
    else if (code == "b1")
      t = {at::kBool, 1};
    else if (code == "i4")
      t = {at::kInt, 4};
    else if (code == "i8")
      t = {at::kLong, 8};
    if (t.itemsize == 1) return t;
    if (t.itemsize > 1) {
      if (order == '<') return t;
      if (order == '>') {
        fail(path, "big-endian data ('" + descr +
                       "') is not supported; save it little-endian, "
                       "e.g. arr.astype('<" +
                       code + "')");
      }
    }
  }
  fail(path, "unsupported dtype '" + descr + "'; supported: " + kSupported);
}

// ---- IDX --------------------------------------------------------------------

struct IdxType {
  at::ScalarType file_type;
  int itemsize;
};

IdxType idx_type(unsigned char code, const std::string& path) {
  switch (code) {
    case 0x08:
      return {at::kByte, 1};
    case 0x09:
      return {at::kChar, 1};
    case 0x0B:
      return {at::kShort, 2};
    case 0x0C:
      return {at::kInt, 4};
    case 0x0D:
      return {at::kFloat, 4};
    case 0x0E:
      return {at::kDouble, 8};
    default:
      break;
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", code);
  fail(path, std::string("unknown IDX element type ") + buf +
                 " (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
}

std::string gzip_reason(const boost::iostreams::gzip_error& e) {
  namespace gz = boost::iostreams::gzip;
  switch (e.error()) {
    case gz::bad_header:
      return "bad gzip header (is it really gzip-compressed?)";
    case gz::bad_footer:
      return "the file ends early or its gzip trailer is damaged";
    case gz::bad_crc:
      return "checksum mismatch";
    case gz::bad_length:
      return "the recorded length does not match the data";
    case gz::bad_method:
      return "unsupported compression method";
    case gz::zlib_error:
      if (e.zlib_error_code() == boost::iostreams::zlib::buf_error) {
        return "the compressed stream ends early (the file is truncated)";
      }
      return "damaged deflate stream (zlib error " + std::to_string(e.zlib_error_code()) + ")";
    default:
      return e.what();
  }
}

uint32_t read_be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Reads exactly n bytes from a reader, returning how many it got.
template <typename Reader>
size_t read_up_to(Reader& read, void* dst, size_t n) {
  auto* p = static_cast<char*>(dst);
  size_t done = 0;
  while (done < n) {
    const size_t got = read(p + done, n - done);
    if (got == 0) break;
    done += got;
  }
  return done;
}

// The IDX body after the file is opened: `read` yields the (decompressed)
// bytes; `max_data` bounds the declared data size before allocation.
template <typename Reader>
at::Tensor read_idx(Reader& read, const std::string& path, bool exact_size_known,
                    uint64_t file_size, uint64_t max_data) {
  unsigned char magic[4];
  if (read_up_to(read, magic, 4) != 4) fail(path, "truncated: too short for an IDX header");
  if (magic[0] != 0 || magic[1] != 0) {
    std::string hint;
    if (magic[0] == 0x1f && magic[1] == 0x8b) {
      hint = "; it looks gzip-compressed, so give it a name ending in .gz";
    } else if (magic[0] == 0x93 && magic[1] == 'N') {
      hint = "; it looks like a .npy file";
    }
    fail(path, "not an IDX file (it does not start with two zero bytes)" + hint);
  }
  const IdxType type = idx_type(magic[2], path);
  const int ndims = magic[3];
  if (ndims == 0) fail(path, "the IDX header declares no dimensions");
  std::vector<unsigned char> dims_raw(static_cast<size_t>(ndims) * 4);
  if (read_up_to(read, dims_raw.data(), dims_raw.size()) != dims_raw.size()) {
    fail(path, "truncated: the IDX header declares " + std::to_string(ndims) +
                   " dimensions but the file ends inside them");
  }
  std::vector<int64_t> shape;
  for (int d = 0; d < ndims; ++d) shape.push_back(read_be32(&dims_raw[static_cast<size_t>(d) * 4]));
  int64_t numel = 0, bytes = 0;
  if (!checked_bytes(shape, type.itemsize, &numel, &bytes)) {
    fail(path, "the IDX shape " + shape_string(shape) + " is too large");
  }
  const uint64_t header = 4 + static_cast<uint64_t>(ndims) * 4;
  if (exact_size_known) {
    const uint64_t have = file_size - header;
    if (static_cast<uint64_t>(bytes) > have) {
      fail(path, "truncated: the IDX shape " + shape_string(shape) + " needs " +
                     std::to_string(bytes) + " bytes of data but only " + std::to_string(have) +
                     " follow the header");
    }
    if (static_cast<uint64_t>(bytes) < have) {
      fail(path, std::to_string(have - static_cast<uint64_t>(bytes)) +
                     " bytes follow the data that the IDX shape " + shape_string(shape) +
                     " declares; the header or the file is wrong");
    }
  } else if (static_cast<uint64_t>(bytes) > max_data) {
    fail(path, "the IDX shape " + shape_string(shape) + " declares " + std::to_string(bytes) +
                   " bytes, more than a gzip file of " + std::to_string(file_size) +
                   " bytes can hold; the file is corrupt");
  }

  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(type.file_type));
  const size_t got = read_up_to(read, t.data_ptr(), static_cast<size_t>(bytes));
  if (got != static_cast<size_t>(bytes)) {
    fail(path, "truncated: the IDX shape " + shape_string(shape) + " needs " +
                   std::to_string(bytes) + " bytes of data but the file holds only " +
                   std::to_string(got));
  }
  if (!exact_size_known) {
    // Decompress at most one byte past the declared end: enough to notice
    // extra data, never enough to let a hostile file fill memory.
    char extra;
    if (read_up_to(read, &extra, 1) != 0) {
      fail(path, "the decompressed data is longer than the " + std::to_string(bytes) +
                     " bytes the IDX shape " + shape_string(shape) + " declares");
    }
  }
  if (host_is_little_endian()) swap_items(t.data_ptr(), numel, type.itemsize);  // IDX is big-endian
  if (type.file_type == at::kChar || type.file_type == at::kShort || type.file_type == at::kInt) {
    return t.to(at::kLong);
  }
  return t;
}

}  // namespace

at::Tensor load_npy(const std::string& path) {
  InFile in(path);
  static const unsigned char kMagic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  unsigned char prefix[12];
  const size_t got = in.read_some(prefix, 10);
  if (std::memcmp(prefix, kMagic, std::min<size_t>(got, 6)) != 0 || got == 0) {
    fail(path, "not a .npy file (it does not start with \\x93NUMPY)");
  }
  if (got < 10) fail(path, "truncated: too short for a .npy header");
  const int major = prefix[6], minor = prefix[7];
  uint64_t header_len = 0, prefix_len = 0;
  if (major == 1) {
    header_len = uint64_t{prefix[8]} | (uint64_t{prefix[9]} << 8);
    prefix_len = 10;
  } else if (major == 2 || major == 3) {
    in.read_exact(prefix + 10, 2, "the .npy header length");
    header_len = uint64_t{prefix[8]} | (uint64_t{prefix[9]} << 8) | (uint64_t{prefix[10]} << 16) |
                 (uint64_t{prefix[11]} << 24);
    prefix_len = 12;
  } else {
    fail(path, "unsupported .npy format version " + std::to_string(major) + "." +
                   std::to_string(minor) + " (supported: 1.0, 2.0, 3.0)");
  }
  if (header_len > in.size() - prefix_len) {
    fail(path, "truncated: the header length says " + std::to_string(header_len) +
                   " bytes but only " + std::to_string(in.size() - prefix_len) + " follow");
  }
  if (header_len > (uint64_t{1} << 20)) {
    fail(path, "the .npy header length " + std::to_string(header_len) + " is implausibly large");
  }
  std::string text(static_cast<size_t>(header_len), '\0');
  in.read_exact(text.data(), text.size(), "the .npy header");
  const NpyHeader h = NpyHeaderParser(text, path).parse();
  const NpyType type = npy_type(h.descr, path);
  if (h.fortran_order) {
    fail(path, "Fortran-order arrays are not supported; save with np.ascontiguousarray(arr)");
  }
  int64_t numel = 0, bytes = 0;
  if (!checked_bytes(h.shape, type.itemsize, &numel, &bytes)) {
    fail(path, "the shape " + shape_string(h.shape) + " is too large");
  }
  const uint64_t have = in.size() - prefix_len - header_len;
  if (static_cast<uint64_t>(bytes) > have) {
    fail(path, "truncated: the shape " + shape_string(h.shape) + " of '" + h.descr + "' needs " +
                   std::to_string(bytes) + " bytes of data but only " + std::to_string(have) +
                   " follow the header");
  }
  if (static_cast<uint64_t>(bytes) < have) {
    fail(path, std::to_string(have - static_cast<uint64_t>(bytes)) +
                   " bytes follow the data that the shape " + shape_string(h.shape) +
                   " declares; the header or the file is wrong");
  }

  const at::ScalarType read_type = type.file_type == at::kBool ? at::kByte : type.file_type;
  at::Tensor t = at::empty(h.shape, at::TensorOptions().dtype(read_type));
  in.read_exact(t.data_ptr(), static_cast<size_t>(bytes), "the array data");
  if (!host_is_little_endian()) swap_items(t.data_ptr(), numel, type.itemsize);
  switch (type.file_type) {
    case at::kBool:
      if (numel > 0 && t.gt(1).any().item<bool>()) {
        fail(path, "a bool array holds a byte other than 0 or 1");
      }
      return t.to(at::kBool);
    case at::kChar:
    case at::kInt:
      return t.to(at::kLong);
    default:
      return t;
  }
}

void save_npy(const at::Tensor& t_in, const std::string& path) {
  if (!t_in.defined()) throw std::invalid_argument("save_npy: the tensor is undefined");
  std::string descr;
  switch (t_in.scalar_type()) {
    case at::kFloat:
      descr = "<f4";
      break;
    case at::kDouble:
      descr = "<f8";
      break;
    case at::kByte:
      descr = "|u1";
      break;
    case at::kLong:
      descr = "<i8";
      break;
    default:
      throw std::invalid_argument(std::string("save_npy: dtype ") +
                                  c10::toString(t_in.scalar_type()) +
                                  " is not supported; use float32, float64, uint8 or int64");
  }
  at::Tensor t = t_in.detach().cpu().contiguous();
  if (!host_is_little_endian() && t.element_size() > 1) {
    t = t.clone();
    swap_items(t.data_ptr(), t.numel(), static_cast<int>(t.element_size()));
  }

  std::string shape = "(";
  for (int64_t i = 0; i < t.dim(); ++i) {
    shape += std::to_string(t.size(i));
    shape += (t.dim() == 1 || i + 1 < t.dim()) ? "," : "";
    if (i + 1 < t.dim()) shape += " ";
  }
  shape += ")";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  // Pad with spaces so that the data starts at a multiple of 64 bytes, as
  // NumPy does, and end the header with a newline.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  if (header.size() > 65535) throw std::invalid_argument("save_npy: too many dimensions");

  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr)
    throw IoError("cannot open " + path + " for writing: " + std::strerror(errno));
  unsigned char prefix[10] = {0x93,
                              'N',
                              'U',
                              'M',
                              'P',
                              'Y',
                              1,
                              0,
                              static_cast<unsigned char>(header.size() & 0xff),
                              static_cast<unsigned char>(header.size() >> 8)};
  const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  bool ok = std::fwrite(prefix, 1, sizeof prefix, f) == sizeof prefix &&
            std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
            (bytes == 0 || std::fwrite(t.data_ptr(), 1, bytes, f) == bytes);
  int err = ok ? 0 : errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    std::remove(path.c_str());
    throw IoError("cannot write " + path + ": " + std::strerror(err));
  }
}

at::Tensor load_idx(const std::string& path) {
  InFile in(path);
  if (!ends_with(lower(path), ".gz")) {
    auto read = [&](char* dst, size_t n) { return in.read_some(dst, n); };
    return read_idx(read, path, /*exact_size_known=*/true, in.size(), 0);
  }
  namespace io = boost::iostreams;
  io::filtering_istreambuf gz;
  gz.push(io::gzip_decompressor());
  gz.push(InFile::Source{&in});
  auto read = [&](char* dst, size_t n) -> size_t {
    const std::streamsize got = gz.sgetn(dst, static_cast<std::streamsize>(n));
    return got > 0 ? static_cast<size_t>(got) : 0;
  };
  // Deflate cannot expand data more than about 1032 times, so a larger
  // declared size is corrupt and is refused before allocation.
  const uint64_t max_data = in.size() * 1032 + 4096;
  try {
    return read_idx(read, path, /*exact_size_known=*/false, in.size(), max_data);
  } catch (const io::gzip_error& e) {
    fail(path, "corrupt gzip data: " + gzip_reason(e));
  } catch (const io::zlib_error& e) {
    fail(path, "corrupt gzip data: zlib error " + std::to_string(e.error()));
  }
}

at::Tensor load_array(const std::string& path) {
  const std::string p = lower(path);
  if (ends_with(p, ".npy")) return load_npy(path);
  const size_t slash = p.find_last_of('/');
  const std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  if (ends_with(p, ".gz") || ends_with(p, "-ubyte") || base.find(".idx") != std::string::npos) {
    return load_idx(path);
  }
  throw std::invalid_argument("cannot tell the format of " + path +
                           " from its name; expected .npy, .idx, .gz or an MNIST name ending in "
                           "-ubyte");
}

}  // namespace dash::task
