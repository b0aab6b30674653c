#include "model/weights.h"

#include <torch/torch.h>

#include <cstring>
#include <limits>
#include <map>
#include <stdexcept>

namespace dash::model {
namespace {

constexpr int kMaxDims = 8;
constexpr uint8_t kFloat32 = 0;
constexpr uint8_t kInt64 = 1;

bool host_is_little_endian() {
  const uint16_t probe = 1;
  unsigned char first;
  std::memcpy(&first, &probe, 1);
  return first == 1;
}

void put_le(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads the section front to back; every read checks what remains first.
class Reader {
 public:
  explicit Reader(const std::string& bytes) : bytes_(bytes) {}

  uint64_t le(int n, const std::string& what) {
    need(static_cast<uint64_t>(n), what);
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(bytes_[pos_ + i]);
    pos_ += static_cast<size_t>(n);
    return v;
  }
  std::string take(uint64_t n, const std::string& what) {
    need(n, what);
    std::string s = bytes_.substr(pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  void copy_to(void* dst, uint64_t n, const std::string& what) {
    need(n, what);
    if (n > 0) std::memcpy(dst, bytes_.data() + pos_, static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
  }
  uint64_t remaining() const { return bytes_.size() - pos_; }

 private:
  void need(uint64_t n, const std::string& what) const {
    if (n > remaining()) {
      throw std::runtime_error(what + " needs " + std::to_string(n) + " bytes but only " +
                               std::to_string(remaining()) + " remain");
    }
  }
  const std::string& bytes_;
  size_t pos_ = 0;
};

std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

NamedTensors module_state(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

std::string encode_weights(const NamedTensors& tensors) {
  if (!host_is_little_endian()) throw std::runtime_error("model files are written on little-endian hosts only");
  std::string out;
  put_le(&out, tensors.size(), 4);
  for (const auto& [name, tensor] : tensors) {
    if (name.size() > std::numeric_limits<uint16_t>::max()) {
      throw std::runtime_error("tensor name too long: " + name.substr(0, 64) + "...");
    }
    const at::Tensor t = tensor.detach().cpu().contiguous();
    uint8_t dtype;
    if (t.scalar_type() == at::kFloat) {
      dtype = kFloat32;
    } else if (t.scalar_type() == at::kLong) {
      dtype = kInt64;
    } else {
      throw std::runtime_error("tensor " + name + " has dtype " +
                               std::string(c10::toString(t.scalar_type())) +
                               "; model files hold float32 and int64 only");
    }
    put_le(&out, name.size(), 2);
    out += name;
    out.push_back(static_cast<char>(dtype));
    out.push_back(static_cast<char>(t.dim()));
    for (int64_t s : t.sizes()) put_le(&out, static_cast<uint64_t>(s), 8);
    out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.nbytes()));
  }
  return out;
}

NamedTensors decode_weights(const std::string& bytes) {
  if (!host_is_little_endian()) throw std::runtime_error("model files are read on little-endian hosts only");
  Reader in(bytes);
  const uint64_t count = in.le(4, "the tensor count");
  NamedTensors out;
  std::map<std::string, bool> seen;
  for (uint64_t i = 0; i < count; ++i) {
    const std::string entry = "tensor " + std::to_string(i) + " of " + std::to_string(count);
    const uint64_t name_len = in.le(2, entry + ": its name length");
    const std::string name = in.take(name_len, entry + ": its name");
    const std::string what = entry + " (" + name + ")";
    if (!seen.emplace(name, true).second) throw std::runtime_error(what + ": a second tensor of that name");
    const uint64_t dtype = in.le(1, what + ": its dtype");
    if (dtype != kFloat32 && dtype != kInt64) {
      throw std::runtime_error(what + ": unknown dtype code " + std::to_string(dtype));
    }
    const int64_t itemsize = dtype == kFloat32 ? 4 : 8;
    const uint64_t rank = in.le(1, what + ": its rank");
    if (rank > kMaxDims) {
      throw std::runtime_error(what + ": " + std::to_string(rank) + " dimensions, more than " +
                               std::to_string(kMaxDims));
    }
    std::vector<int64_t> shape;
    bool empty = false;
    for (uint64_t d = 0; d < rank; ++d) {
      const uint64_t s = in.le(8, what + ": its sizes");
      if (s > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        throw std::runtime_error(what + ": size " + std::to_string(s) + " is negative");
      }
      empty = empty || s == 0;
      shape.push_back(static_cast<int64_t>(s));
    }
    // The element count, formed only while it stays within the bytes left:
    // no overflow, and no allocation larger than the file.
    const uint64_t fits = in.remaining() / static_cast<uint64_t>(itemsize);
    uint64_t numel = empty ? 0 : 1;
    for (int64_t s : shape) {
      if (empty) break;
      if (numel > fits / static_cast<uint64_t>(s)) {
        throw std::runtime_error(what + ": shape " + shape_string(shape) + " needs more than the " +
                                 std::to_string(in.remaining()) + " bytes that remain");
      }
      numel *= static_cast<uint64_t>(s);
    }
    at::Tensor t = at::empty(shape, dtype == kFloat32 ? at::kFloat : at::kLong);
    in.copy_to(t.data_ptr(), numel * static_cast<uint64_t>(itemsize), what + ": its data");
    out.emplace_back(name, t);
  }
  if (in.remaining() != 0) {
    throw std::runtime_error(std::to_string(in.remaining()) + " bytes follow the last tensor");
  }
  return out;
}

void load_state(torch::nn::Module& module, const NamedTensors& tensors) {
  std::map<std::string, const at::Tensor*> given;
  for (const auto& [name, t] : tensors) given.emplace(name, &t);
  torch::NoGradGuard no_grad;
  const NamedTensors wanted = module_state(module);
  for (const auto& [name, dst] : wanted) {
    const auto it = given.find(name);
    if (it == given.end()) throw std::runtime_error("the network's tensor " + name + " is missing");
    const at::Tensor& src = *it->second;
    if (src.scalar_type() != dst.scalar_type() || !src.sizes().equals(dst.sizes())) {
      throw std::runtime_error("tensor " + name + " is " + std::string(c10::toString(src.scalar_type())) +
                               " " + shape_string(src.sizes()) + " but the network has " +
                               std::string(c10::toString(dst.scalar_type())) + " " +
                               shape_string(dst.sizes()));
    }
  }
  if (given.size() != wanted.size()) {
    std::map<std::string, bool> known;
    for (const auto& w : wanted) known.emplace(w.first, true);
    for (const auto& [name, t] : tensors) {
      if (!known.count(name)) throw std::runtime_error("tensor " + name + " is not part of the network");
    }
  }
  // Checked all before changing anything: a bad file leaves the module as it was.
  for (auto& [name, dst] : wanted) at::Tensor(dst).copy_(*given.at(name));
}

}  // namespace dash::model
