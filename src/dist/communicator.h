#pragma once
// Several processes training one network, on one machine or many: they meet
// through a c10d store (a TCPStore hosted by rank 0, or a FileStore on a
// shared file system) and talk through a c10d process group (Gloo on the CPU,
// NCCL on CUDA). No transport of our own.
//
// A run of one process has no Communicator at all (connect() returns null and
// every caller treats null as "alone"), so it computes exactly what it did
// before scale-out existed.
//
// Every collective is called by every rank in the same order with tensors of
// the same shapes; a rank that dies, never joins or waits longer than
// timeout_s makes the others' next collective throw dash::IoError instead of
// hanging. Decisions that depend on a clock (a budget's stop, a trial's
// length, a measured cost) are taken on rank 0 and handed to the others
// (from_root, any), so that every rank runs the same steps.

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dash::dist {

struct DistOptions {
  int64_t world_size = 1;
  int64_t rank = 0;
  // tcp://HOST:PORT: rank 0 hosts a c10d TCPStore on PORT, the others connect
  // to HOST:PORT; file://PATH: a c10d FileStore (a file every rank can reach).
  std::string init;
  std::string backend = "auto";  // "auto" (gloo on CPU, nccl on CUDA), "gloo" or "nccl"
  double timeout_s = 300;        // the longest any rank waits for the others
  // false: every rank was given the whole train split and keeps a disjoint
  // shard of it (a seeded permutation); true: each rank was given its own.
  bool data_sharded = false;
  // > 0: the batch of one step over all ranks (each rank takes its share);
  // 0: batch_size per rank, batch_size x world_size in all.
  int64_t batch_size_global = 0;
  // Batch norm in training: true normalises with the statistics of the whole
  // global batch (dist::synced_batch_norm; two messages per layer and step,
  // and a run then computes what one process does on the global batch);
  // false with each rank's own batch, as PyTorch's DistributedDataParallel
  // does by default, the running statistics averaged over the ranks at each
  // epoch's end. Measured (bench_dist, 2 ranks of 1 thread, WRN-16-1): 1.9x
  // one rank's throughput with false, 0.8x with true.
  bool sync_batch_norm = false;
};

// Checks the options alone (std::invalid_argument naming the option).
void validate(const DistOptions& options);

// Whether this build has c10d's Gloo process group (else world_size must be 1).
bool available();

class Communicator {
 public:
  virtual ~Communicator() = default;
  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  double timeout_s() const { return timeout_s_; }
  // The call's DistOptions::sync_batch_norm (connect() sets it each call).
  bool sync_batch_norm() const { return sync_batch_norm_; }
  void set_sync_batch_norm(bool on) { sync_batch_norm_ = on; }

  // Averages the gradients of `params` over the ranks, in place, in buckets
  // of at most kBucketBytes (a parameter without a gradient counts as
  // zeros, and gets one). `values` (may be null) are averaged in the same
  // messages, e.g. the step's loss.
  static constexpr int64_t kBucketBytes = 16 << 20;
  void average_gradients(const std::vector<at::Tensor>& params, std::vector<double>* values);
  // Averages floating-point tensors in place (others are left as they are).
  void average(const std::vector<at::Tensor>& tensors);
  // Sums a tensor over the ranks, in place.
  void sum(at::Tensor& tensor);
  // Copies rank `root`'s tensors into every rank's, in place (one message).
  void broadcast(const std::vector<at::Tensor>& tensors, int root = 0);
  // Rank 0's value, on every rank.
  double from_root(double value);
  int64_t from_root(int64_t value);
  // Rank 0's bytes, on every rank (the others' argument is ignored).
  std::string from_root(const std::string& bytes);
  // True on every rank when it is true on any.
  bool any(bool flag);
  // Each flag true on every rank when it is true on any (one message).
  std::vector<bool> any(const std::vector<bool>& flags);
  // The smallest value over the ranks.
  int64_t min_all(int64_t value);
  // Every rank's rows of `local` ([n_rank, ...], the same trailing shape and
  // dtype everywhere), concatenated in rank order, on every rank.
  at::Tensor gather_rows(const at::Tensor& local);
  // Every rank's bytes, in rank order.
  std::vector<std::string> gather_all(const std::string& bytes);
  void barrier();

  // The bytes that cross the wire per rank in the last average_gradients
  // (the gradients' size), and the seconds it took.
  int64_t last_gradient_bytes() const { return last_gradient_bytes_; }
  double last_gradient_seconds() const { return last_gradient_seconds_; }
  // Seconds in average_gradients over this communicator's life, and calls.
  double gradient_seconds_total() const { return gradient_seconds_total_; }
  int64_t gradient_rounds() const { return gradient_rounds_; }
  // Seconds waited in every collective (gradients, batch norm's statistics,
  // agreements), and how many there were.
  double collective_seconds_total() const { return collective_seconds_total_; }
  int64_t collectives() const { return collectives_; }

 protected:
  Communicator(int rank, int world_size, double timeout_s)
      : rank_(rank), world_size_(world_size), timeout_s_(timeout_s) {}
  // The process group's operations, each waited for. Implementations throw
  // whatever c10d throws; the public functions turn it into dash::IoError.
  enum class Op { kSum, kMax };
  virtual void allreduce(at::Tensor& t, Op op) = 0;
  virtual void broadcast_one(at::Tensor& t, int root = 0) = 0;
  virtual void allgather(const at::Tensor& in, std::vector<at::Tensor>& out) = 0;
  virtual void barrier_impl() = 0;

 private:
  template <class F>
  void guarded(const char* what, F&& f);
  int rank_;
  int world_size_;
  double timeout_s_;
  int64_t last_gradient_bytes_ = 0;
  double last_gradient_seconds_ = 0;
  double gradient_seconds_total_ = 0;
  int64_t gradient_rounds_ = 0;
  double collective_seconds_total_ = 0;
  int64_t collectives_ = 0;
  bool sync_batch_norm_ = false;
};

// Joins the process group of `options` (null when world_size is 1: no c10d
// object is created). `fingerprint` is what every rank must agree on (the
// task and the options that shape the work): a rank given another one, or
// another world_size, is refused by every rank with a message saying which.
// Throws dash::IoError when the store cannot be reached or hosted (a port in
// use, a rank that never joins within timeout_s), dash::Unsupported for a
// backend this build lacks.
std::shared_ptr<Communicator> connect(const DistOptions& options, const std::string& fingerprint,
                                      bool cuda);

// Forgets the process group connect() keeps for `options` (after a failed
// call: the next one meets the other ranks afresh). Groups still in use by
// a caller live on until it lets them go; the others are closed now. Groups
// never dropped stay open until the process exits, without being destroyed
// then (a Gloo group destroyed at exit can wait on peers already gone).
void disconnect(const DistOptions& options);

}  // namespace dash::dist
