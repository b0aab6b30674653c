#include "dist/communicator.h"

#include <torch/torch.h>


#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "util/errors.h"

#if DASH_WITH_C10D
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace dash::dist {
namespace {

using Clock = std::chrono::steady_clock;

std::string where(int rank, int world) {
  return "rank " + std::to_string(rank) + " of " + std::to_string(world);
}

// An exception's message; c10's errors carry a C++ backtrace after it, which
// is not for users.
std::string message_of(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  return c10_error != nullptr ? c10_error->what_without_backtrace() : e.what();
}

}  // namespace

void validate(const DistOptions& o) {
  if (o.world_size < 1) throw std::invalid_argument("option 'world_size' must be >= 1");
  if (o.rank < 0 || o.rank >= o.world_size) {
    throw std::invalid_argument("option 'rank' must be in [0, world_size - 1] = [0, " +
                                std::to_string(o.world_size - 1) + "], got " + std::to_string(o.rank));
  }
  if (!(o.timeout_s > 0)) throw std::invalid_argument("option 'dist_timeout_s' must be > 0");
  if (o.backend != "auto" && o.backend != "gloo" && o.backend != "nccl") {
    throw std::invalid_argument("option 'dist_backend' must be auto, gloo or nccl, got '" + o.backend + "'");
  }
  if (o.world_size > 1 && o.init.rfind("tcp://", 0) != 0 && o.init.rfind("file://", 0) != 0) {
    throw std::invalid_argument("option 'init' must be tcp://HOST:PORT or file://PATH when world_size > 1, got '" +
                                o.init + "'");
  }
  if (o.batch_size_global < 0) throw std::invalid_argument("option 'batch_size_global' must be >= 0");
  if (o.batch_size_global > 0 && o.batch_size_global % o.world_size != 0) {
    throw std::invalid_argument("option 'batch_size_global' (" + std::to_string(o.batch_size_global) +
                                ") must be a multiple of world_size (" + std::to_string(o.world_size) + ")");
  }
}

bool available() {
#if DASH_WITH_C10D
  return true;
#else
  return false;
#endif
}

template <class F>
void Communicator::guarded(const char* what, F&& f) {
  const auto t0 = Clock::now();
  try {
    f();
    collective_seconds_total_ += std::chrono::duration<double>(Clock::now() - t0).count();
    ++collectives_;
  } catch (const std::exception& e) {
    std::ostringstream msg;
    msg << "distributed run, " << where(rank_, world_size_) << ": " << what << " failed: " << message_of(e)
        << " (another rank stopped, failed or fell more than dist_timeout_s = " << timeout_s_
        << " s behind; its own output says why)";
    throw IoError(msg.str());
  }
}

void Communicator::average_gradients(const std::vector<at::Tensor>& params, std::vector<double>* values) {
  const auto t0 = Clock::now();
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : params) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  const double scale = 1.0 / static_cast<double>(world_size_);
  int64_t bytes = 0;
  size_t i = 0;
  bool first = true;
  while (i < grads.size() || first) {
    // One bucket: consecutive gradients of one dtype up to kBucketBytes (at
    // least one), flattened into one message; the first also carries `values`.
    std::vector<at::Tensor> parts;
    int64_t bucket = 0;
    const size_t start = i;
    while (i < grads.size() && (i == start || (bucket + grads[i].nbytes() <= static_cast<size_t>(kBucketBytes) &&
                                               grads[i].scalar_type() == grads[start].scalar_type()))) {
      bucket += static_cast<int64_t>(grads[i].nbytes());
      parts.push_back(grads[i].reshape({-1}));
      ++i;
    }
    const auto dtype = parts.empty() ? at::kFloat : parts[0].scalar_type();
    if (first && values != nullptr && !values->empty()) {
      parts.push_back(torch::tensor(*values, torch::TensorOptions().dtype(torch::kDouble)).to(dtype));
    }
    if (parts.empty()) break;
    at::Tensor flat = torch::cat(parts);
    guarded("averaging gradients", [&] { allreduce(flat, Op::kSum); });
    flat.mul_(scale);
    bytes += static_cast<int64_t>(flat.nbytes());
    int64_t offset = 0;
    for (size_t g = start; g < i; ++g) {
      const int64_t n = grads[g].numel();
      grads[g].copy_(flat.narrow(0, offset, n).view_as(grads[g]));
      offset += n;
    }
    if (first && values != nullptr) {
      for (size_t v = 0; v < values->size(); ++v) {
        (*values)[v] = flat[offset + static_cast<int64_t>(v)].item<double>();
      }
    }
    first = false;
  }
  last_gradient_bytes_ = bytes;
  last_gradient_seconds_ = std::chrono::duration<double>(Clock::now() - t0).count();
  gradient_seconds_total_ += last_gradient_seconds_;
  ++gradient_rounds_;
}

namespace {

// The tensors picked by `take`, flattened into one float64 message (exact for
// float32, bool and the integers of counters), and back into them.
template <class Take>
at::Tensor pack(const std::vector<at::Tensor>& tensors, Take take) {
  std::vector<at::Tensor> parts;
  for (const auto& t : tensors) {
    if (take(t)) parts.push_back(t.reshape({-1}).to(at::kDouble));
  }
  return parts.empty() ? at::Tensor() : torch::cat(parts);
}

template <class Take>
void unpack(const at::Tensor& flat, const std::vector<at::Tensor>& tensors, Take take) {
  int64_t offset = 0;
  for (const auto& t : tensors) {
    if (!take(t)) continue;
    t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

}  // namespace

void Communicator::average(const std::vector<at::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  auto floating = [](const at::Tensor& t) { return t.is_floating_point(); };
  at::Tensor flat = pack(tensors, floating);
  if (!flat.defined()) return;
  guarded("averaging buffers", [&] { allreduce(flat, Op::kSum); });
  flat.div_(static_cast<double>(world_size_));
  unpack(flat, tensors, floating);
}

void Communicator::sum(at::Tensor& tensor) {
  guarded("summing", [&] { allreduce(tensor, Op::kSum); });
}

void Communicator::broadcast(const std::vector<at::Tensor>& tensors, int root) {
  torch::NoGradGuard no_grad;
  auto every = [](const at::Tensor&) { return true; };
  at::Tensor flat = pack(tensors, every);
  if (!flat.defined()) return;
  const std::string what = "broadcasting from rank " + std::to_string(root);
  guarded(what.c_str(), [&] { broadcast_one(flat, root); });
  unpack(flat, tensors, every);
}

double Communicator::from_root(double value) {
  at::Tensor t = torch::tensor({value}, torch::kDouble);
  guarded("taking rank 0's value", [&] { broadcast_one(t); });
  return t.item<double>();
}

int64_t Communicator::from_root(int64_t value) {
  at::Tensor t = torch::tensor({value}, torch::kLong);
  guarded("taking rank 0's value", [&] { broadcast_one(t); });
  return t.item<int64_t>();
}

std::string Communicator::from_root(const std::string& bytes) {
  const int64_t n = from_root(static_cast<int64_t>(bytes.size()));
  at::Tensor t = torch::zeros({std::max<int64_t>(1, n)}, torch::kByte);
  if (rank_ == 0) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  guarded("taking rank 0's bytes", [&] { broadcast_one(t); });
  return std::string(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(n));
}

bool Communicator::any(bool flag) {
  at::Tensor t = torch::tensor({flag ? 1 : 0}, torch::kInt);
  guarded("agreeing on a decision", [&] { allreduce(t, Op::kMax); });
  return t.item<int>() != 0;
}

std::vector<bool> Communicator::any(const std::vector<bool>& flags) {
  at::Tensor t = torch::zeros({static_cast<int64_t>(flags.size())}, torch::kInt);
  for (size_t i = 0; i < flags.size(); ++i) t[static_cast<int64_t>(i)] = flags[i] ? 1 : 0;
  guarded("agreeing on decisions", [&] { allreduce(t, Op::kMax); });
  std::vector<bool> out;
  for (size_t i = 0; i < flags.size(); ++i) out.push_back(t[static_cast<int64_t>(i)].item<int>() != 0);
  return out;
}

int64_t Communicator::min_all(int64_t value) {
  at::Tensor t = torch::tensor({-value}, torch::kLong);
  guarded("agreeing on a size", [&] { allreduce(t, Op::kMax); });
  return -t.item<int64_t>();
}

at::Tensor Communicator::gather_rows(const at::Tensor& local) {
  at::Tensor size = torch::tensor({local.size(0)}, torch::kLong);
  std::vector<at::Tensor> sizes;
  guarded("gathering row counts", [&] { allgather(size, sizes); });
  int64_t longest = 0;
  for (const auto& s : sizes) longest = std::max(longest, s.item<int64_t>());
  std::vector<int64_t> shape = local.sizes().vec();
  shape[0] = std::max<int64_t>(1, longest);
  at::Tensor padded = torch::zeros(shape, local.options());
  if (local.size(0) > 0) padded.narrow(0, 0, local.size(0)).copy_(local);
  std::vector<at::Tensor> all;
  guarded("gathering rows", [&] { allgather(padded, all); });
  std::vector<at::Tensor> rows;
  for (size_t r = 0; r < all.size(); ++r) rows.push_back(all[r].narrow(0, 0, sizes[r].item<int64_t>()));
  return torch::cat(rows);
}

std::vector<std::string> Communicator::gather_all(const std::string& bytes) {
  at::Tensor size = torch::tensor({static_cast<int64_t>(bytes.size())}, torch::kLong);
  std::vector<at::Tensor> sizes;
  guarded("gathering sizes", [&] { allgather(size, sizes); });
  int64_t longest = 1;
  for (const auto& s : sizes) longest = std::max(longest, s.item<int64_t>());
  at::Tensor mine = torch::zeros({longest}, torch::kByte);
  std::memcpy(mine.data_ptr(), bytes.data(), bytes.size());
  std::vector<at::Tensor> all;
  guarded("gathering results", [&] { allgather(mine, all); });
  std::vector<std::string> out;
  for (size_t r = 0; r < all.size(); ++r) {
    out.emplace_back(static_cast<const char*>(all[r].data_ptr()), static_cast<size_t>(sizes[r].item<int64_t>()));
  }
  return out;
}

void Communicator::barrier() {
  guarded("waiting for every rank", [&] { barrier_impl(); });
}

#if DASH_WITH_C10D
namespace {

// Gloo's process group (CPU tensors).
class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int world, double timeout_s,
                   const std::string& host)
      : Communicator(rank, world, timeout_s), store_(std::move(store)) {
    auto opts = c10d::ProcessGroupGloo::Options::create(
        std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
    // The address the others reach this rank at: GLOO_SOCKET_IFNAME's
    // interface when set (as PyTorch does), the loopback for a run on
    // loopback, else the one this machine's hostname resolves to.
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (host == "127.0.0.1" || host == "localhost" || host.empty()) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    opts->threads = 1;
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, rank, world, opts);
  }

 protected:
  void allreduce(at::Tensor& t, Op op) override {
    std::vector<at::Tensor> ts{t};
    c10d::AllreduceOptions o;
    o.reduceOp = op == Op::kSum ? c10d::ReduceOp::SUM : c10d::ReduceOp::MAX;
    group_->allreduce(ts, o)->wait();
  }
  void broadcast_one(at::Tensor& t, int root) override {
    std::vector<at::Tensor> ts{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    group_->broadcast(ts, o)->wait();
  }
  void allgather(const at::Tensor& in, std::vector<at::Tensor>& out) override {
    std::vector<at::Tensor> input{in};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int r = 0; r < world_size(); ++r) output[0].push_back(torch::empty_like(in));
    group_->allgather(output, input)->wait();
    out = output[0];
  }
  void barrier_impl() override { group_->barrier()->wait(); }

 private:
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

struct Endpoint {
  std::string host;
  int port = 0;
  std::string path;
};

Endpoint parse_init(const std::string& init) {
  Endpoint e;
  if (init.rfind("file://", 0) == 0) {
    e.path = init.substr(7);
    if (e.path.empty()) throw std::invalid_argument("option 'init': file:// needs a path, e.g. file:///shared/run1");
    return e;
  }
  const std::string rest = init.substr(6);
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) {
    throw std::invalid_argument("option 'init' must be tcp://HOST:PORT, got '" + init + "'");
  }
  e.host = rest.substr(0, colon);
  try {
    size_t used = 0;
    e.port = std::stoi(rest.substr(colon + 1), &used);
    if (used != rest.size() - colon - 1) throw std::invalid_argument("trailing characters");
  } catch (const std::exception&) {
    throw std::invalid_argument("option 'init': '" + rest.substr(colon + 1) + "' is not a port number");
  }
  if (e.port < 1 || e.port > 65535) {
    throw std::invalid_argument("option 'init': port " + std::to_string(e.port) + " is not in 1..65535");
  }
  return e;
}

// Every rank says who it is and how many it expects; each reads the others'
// word before going on, so a rank given another world_size is named, and a
// rank that never comes is named after timeout_s.
void handshake(c10d::Store& store, const DistOptions& o) {
  const std::string key = "dashnas/join/";
  const std::string mine = std::to_string(o.world_size);
  store.set(key + std::to_string(o.rank), std::vector<uint8_t>(mine.begin(), mine.end()));
  for (int64_t r = 0; r < o.world_size; ++r) {
    if (r == o.rank) continue;
    std::vector<uint8_t> word;
    try {
      store.wait({key + std::to_string(r)}, std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
      word = store.get(key + std::to_string(r));
    } catch (const std::exception& e) {
      throw IoError("distributed run, " + where(static_cast<int>(o.rank), static_cast<int>(o.world_size)) +
                    ": rank " + std::to_string(r) + " did not join within dist_timeout_s = " +
                    std::to_string(o.timeout_s) + " s (" + message_of(e) +
                    "); start every rank with the same init and world_size, or raise dist_timeout_s");
    }
    const std::string theirs(word.begin(), word.end());
    if (theirs != mine) {
      throw std::invalid_argument("distributed run, " +
                                  where(static_cast<int>(o.rank), static_cast<int>(o.world_size)) + ": rank " +
                                  std::to_string(r) + " was started with world_size " + theirs +
                                  ", this rank with " + mine + "; every rank must be given the same world_size");
    }
  }
}

std::shared_ptr<Communicator> join(const DistOptions& o) {
  const Endpoint ep = parse_init(o.init);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  c10::intrusive_ptr<c10d::Store> store;
  try {
    if (!ep.path.empty()) {
      store = c10::make_intrusive<c10d::FileStore>(ep.path, static_cast<int>(o.world_size));
      store->setTimeout(timeout);
    } else {
      c10d::TCPStoreOptions so;
      so.port = static_cast<uint16_t>(ep.port);
      so.isServer = o.rank == 0;
      so.numWorkers = static_cast<size_t>(o.world_size);
      so.waitWorkers = false;  // the handshake names a missing rank instead
      so.timeout = timeout;
      store = c10::make_intrusive<c10d::TCPStore>(ep.host, so);
    }
  } catch (const std::exception& e) {
    const bool host = o.rank == 0 && ep.path.empty();
    throw IoError("distributed run, " + where(static_cast<int>(o.rank), static_cast<int>(o.world_size)) + ": " +
                  (ep.path.empty() ? (host ? "cannot host the c10d store on port " + std::to_string(ep.port) +
                                                 " (in use? pick another port in init)"
                                           : "cannot reach rank 0's c10d store at " + ep.host + ":" +
                                                 std::to_string(ep.port) + " within dist_timeout_s")
                                   : "cannot open the c10d file store " + ep.path) +
                  ": " + message_of(e));
  }
  handshake(*store, o);
  try {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("dashnas/group", store);
    return std::make_shared<GlooCommunicator>(prefixed, static_cast<int>(o.rank), static_cast<int>(o.world_size),
                                              o.timeout_s, ep.host);
  } catch (const std::exception& e) {
    throw IoError("distributed run, " + where(static_cast<int>(o.rank), static_cast<int>(o.world_size)) +
                  ": cannot form the Gloo process group: " + message_of(e));
  }
}

}  // namespace
#endif

namespace {

// One process group per (init, rank, world_size) while it works: the calls
// of one run (search, then retrain) reuse it instead of meeting again on a
// port the last call's store may still hold. A call that failed drops it.
std::mutex& groups_mutex() {
  static std::mutex mu;
  return mu;
}
std::map<std::string, std::shared_ptr<Communicator>>& group_cache() {
  static auto* groups = new std::map<std::string, std::shared_ptr<Communicator>>();  // never destroyed: see disconnect()
  return *groups;
}
std::string group_key(const DistOptions& o) {
  return o.init + "#" + std::to_string(o.rank) + "/" + std::to_string(o.world_size);
}

}  // namespace

void disconnect(const DistOptions& o) {
  std::lock_guard<std::mutex> lock(groups_mutex());
  group_cache().erase(group_key(o));
}

std::shared_ptr<Communicator> connect(const DistOptions& o, const std::string& fingerprint, bool cuda) {
  validate(o);
  if (o.world_size == 1) return nullptr;
  const std::string backend = o.backend == "auto" ? (cuda ? "nccl" : "gloo") : o.backend;
  if (backend == "nccl") {
    throw Unsupported("dist_backend nccl is not in this build (it needs PyTorch's CUDA LibTorch); use gloo");
  }
  if (cuda) {
    throw Unsupported("dist_backend gloo averages CPU tensors here; run a multi-process run with device cpu");
  }
#if DASH_WITH_C10D
  std::mutex& mu = groups_mutex();
  auto& groups = group_cache();
  const std::string key = group_key(o);
  std::shared_ptr<Communicator> comm;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = groups.find(key);
    if (it != groups.end()) comm = it->second;
  }
  if (!comm) {
    comm = join(o);
    std::lock_guard<std::mutex> lock(mu);
    groups[key] = comm;
  }
  comm->set_sync_batch_norm(o.sync_batch_norm);
  // Each call checks that every rank was given the same work.
  std::vector<std::string> prints;
  try {
    prints = comm->gather_all(fingerprint);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu);
    groups.erase(key);
    throw;
  }
  for (size_t r = 0; r < prints.size(); ++r) {
    if (prints[r] != fingerprint) {
      throw std::invalid_argument("distributed run, " + where(static_cast<int>(o.rank), static_cast<int>(o.world_size)) +
                                  ": rank " + std::to_string(r) +
                                  " was given another task or other options than this rank (every rank must be "
                                  "given the same task spec and options, apart from rank)");
    }
  }
  return comm;
#else
  (void)fingerprint;
  throw Unsupported("this build has no c10d Gloo (install libgloo-dev and rebuild), so world_size must be 1");
#endif
}

}  // namespace dash::dist
