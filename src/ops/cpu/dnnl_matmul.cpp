#include "ops/cpu/dnnl_matmul.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <map>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <array>
#include <unordered_map>

namespace dash::ops::cpu {
namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// batch, M, K, N, then the three strides of A, B and C
using Key = std::array<int64_t, 13>;

struct Entry {
  dnnl::matmul primitive;
  dnnl::memory::desc a, b, c;
  size_t scratch_bytes = 0;
};

class MatmulCache {
 public:
  const Entry& get(const Key& key) {
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      auto it = entries_.find(key);
      if (it != entries_.end()) return it->second;
    }
    std::unique_lock<std::shared_mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it != entries_.end()) return it->second;
    return entries_.emplace(key, create(key)).first->second;
  }

 private:
  static Entry create(const Key& key) {
    using dt = dnnl::memory::data_type;
    const int64_t batch = key[0], M = key[1], K = key[2], N = key[3];
    Entry e;
    e.a = dnnl::memory::desc({batch, M, K}, dt::f32, dnnl::memory::dims{key[4], key[5], key[6]});
    e.b = dnnl::memory::desc({batch, K, N}, dt::f32, dnnl::memory::dims{key[7], key[8], key[9]});
    e.c = dnnl::memory::desc({batch, M, N}, dt::f32, dnnl::memory::dims{key[10], key[11], key[12]});
    // A user scratchpad lets two threads run the same primitive at once.
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(e.a, e.b, e.c), attr, cpu_engine());
    e.scratch_bytes = pd.scratchpad_desc().get_size();
    e.primitive = dnnl::matmul(pd);
    return e;
  }

  std::shared_mutex mutex_;
  std::map<Key, Entry> entries_;
};

}  // namespace

void batched_matmul(const at::Tensor& A, const at::Tensor& B, at::Tensor& C) {
  TORCH_CHECK(A.dim() == 3 && B.dim() == 3 && C.dim() == 3 && A.size(0) == B.size(0) &&
                  A.size(2) == B.size(1) && C.size(0) == A.size(0) && C.size(1) == A.size(1) &&
                  C.size(2) == B.size(2),
              "batched_matmul: shapes ", A.sizes(), " @ ", B.sizes(), " -> ", C.sizes(),
              " do not multiply");
  TORCH_CHECK(A.scalar_type() == B.scalar_type() && A.scalar_type() == C.scalar_type(),
              "batched_matmul: dtypes differ");
  if (A.scalar_type() == at::kDouble) {
    C.copy_(at::bmm(A, B));
    return;
  }
  TORCH_CHECK(A.scalar_type() == at::kFloat, "batched_matmul: float32 or float64 only");
  const int64_t batch = A.size(0), M = A.size(1), K = A.size(2), N = B.size(2);
  if (batch == 0 || M == 0 || N == 0) return;
  if (K == 0) {
    C.zero_();
    return;
  }

  static MatmulCache cache;
  const Entry& e = cache.get(Key{batch, M, K, N, A.stride(0), A.stride(1), A.stride(2), B.stride(0),
                                 B.stride(1), B.stride(2), C.stride(0), C.stride(1), C.stride(2)});
  at::Tensor scratch = at::empty({static_cast<int64_t>(e.scratch_bytes)}, A.options().dtype(at::kByte));

  auto& engine = cpu_engine();
  dnnl::memory a_mem(e.a, engine, const_cast<float*>(A.data_ptr<float>()));
  dnnl::memory b_mem(e.b, engine, const_cast<float*>(B.data_ptr<float>()));
  dnnl::memory c_mem(e.c, engine, C.data_ptr<float>());
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, b_mem}, {DNNL_ARG_DST, c_mem}};
  if (e.scratch_bytes > 0) {
    args.emplace(DNNL_ARG_SCRATCHPAD,
                 dnnl::memory(dnnl::memory::desc({static_cast<int64_t>(e.scratch_bytes)},
                                                 dnnl::memory::data_type::u8,
                                                 dnnl::memory::dims{1}),
                              engine, scratch.data_ptr()));
  }
  dnnl::stream stream(engine);
  e.primitive.execute(stream, args);
  stream.wait();
}

}  // namespace dash::ops::cpu
