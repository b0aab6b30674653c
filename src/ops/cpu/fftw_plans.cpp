#include "ops/cpu/fftw_plans.h"

#include <ATen/Parallel.h>
#include <fftw3.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <tuple>

namespace dash::ops::cpu {
namespace {

// The single- and double-precision FFTW APIs behind one name each.
template <typename T>
struct Fftw;

template <>
struct Fftw<float> {
  using Plan = fftwf_plan;
  using Complex = fftwf_complex;
  static void init_threads() { fftwf_init_threads(); }
  static void plan_with_nthreads(int n) { fftwf_plan_with_nthreads(n); }
  static void set_timelimit(double s) { fftwf_set_timelimit(s); }
  static void* malloc(size_t bytes) { return fftwf_malloc(bytes); }
  static void free(void* p) { fftwf_free(p); }
  static int alignment_of(void* p) { return fftwf_alignment_of(static_cast<float*>(p)); }
  static Plan plan_r2c(int rank, const int* n, int howmany, float* in, int idist, Complex* out,
                       int ostride, int odist, unsigned flags) {
    return fftwf_plan_many_dft_r2c(rank, n, howmany, in, nullptr, 1, idist, out, nullptr, ostride,
                                   odist, flags);
  }
  static Plan plan_c2r(int rank, const int* n, int howmany, Complex* in, int istride, int idist,
                       float* out, int odist, unsigned flags) {
    return fftwf_plan_many_dft_c2r(rank, n, howmany, in, nullptr, istride, idist, out, nullptr, 1,
                                   odist, flags);
  }
  static void exec_r2c(Plan p, void* in, void* out) {
    fftwf_execute_dft_r2c(p, static_cast<float*>(in), static_cast<Complex*>(out));
  }
  static void exec_c2r(Plan p, void* in, void* out) {
    fftwf_execute_dft_c2r(p, static_cast<Complex*>(in), static_cast<float*>(out));
  }
  static void destroy(Plan p) { fftwf_destroy_plan(p); }
};

template <>
struct Fftw<double> {
  using Plan = fftw_plan;
  using Complex = fftw_complex;
  static void init_threads() { fftw_init_threads(); }
  static void plan_with_nthreads(int n) { fftw_plan_with_nthreads(n); }
  static void set_timelimit(double s) { fftw_set_timelimit(s); }
  static void* malloc(size_t bytes) { return fftw_malloc(bytes); }
  static void free(void* p) { fftw_free(p); }
  static int alignment_of(void* p) { return fftw_alignment_of(static_cast<double*>(p)); }
  static Plan plan_r2c(int rank, const int* n, int howmany, double* in, int idist, Complex* out,
                       int ostride, int odist, unsigned flags) {
    return fftw_plan_many_dft_r2c(rank, n, howmany, in, nullptr, 1, idist, out, nullptr, ostride,
                                  odist, flags);
  }
  static Plan plan_c2r(int rank, const int* n, int howmany, Complex* in, int istride, int idist,
                       double* out, int odist, unsigned flags) {
    return fftw_plan_many_dft_c2r(rank, n, howmany, in, nullptr, istride, idist, out, nullptr, 1,
                                  odist, flags);
  }
  static void exec_r2c(Plan p, void* in, void* out) {
    fftw_execute_dft_r2c(p, static_cast<double*>(in), static_cast<Complex*>(out));
  }
  static void exec_c2r(Plan p, void* in, void* out) {
    fftw_execute_dft_c2r(p, static_cast<Complex*>(in), static_cast<double*>(out));
  }
  static void destroy(Plan p) { fftw_destroy_plan(p); }
};

// Planner effort: FFTW_MEASURE by default (plans are reused for every step of a
// training run, so a second of measuring pays off); DASH_FFTW_PLANNER=estimate
// skips measuring, which suits short test runs with many shapes.
unsigned planner_flags() {
  static const unsigned flags = [] {
    const char* env = std::getenv("DASH_FFTW_PLANNER");
    std::string v = env ? env : "measure";
    if (v == "estimate") return static_cast<unsigned>(FFTW_ESTIMATE);
    if (v == "patient") return static_cast<unsigned>(FFTW_PATIENT);
    if (v == "measure") return static_cast<unsigned>(FFTW_MEASURE);
    throw std::invalid_argument("DASH_FFTW_PLANNER must be estimate, measure or patient, got '" + v +
                                "'");
  }();
  return flags;
}

std::atomic<int64_t> g_created{0};
std::atomic<int64_t> g_reused{0};

// rank, fft0, fft1, count, layout, forward, threads, unaligned
using PlanKey = std::tuple<int, int64_t, int64_t, int64_t, int, bool, int, bool>;

int checked_int(int64_t v, const char* what) {
  if (v <= 0 || v > INT32_MAX) {
    throw std::invalid_argument(std::string("FFT ") + what + " " + std::to_string(v) +
                                " does not fit FFTW's int interface");
  }
  return static_cast<int>(v);
}

template <typename T>
class PlanCache {
 public:
  using F = Fftw<T>;

  ~PlanCache() {
    for (auto& kv : plans_) F::destroy(kv.second);
  }

  typename F::Plan get(const FftGeometry& g, bool forward, bool unaligned) {
    const int threads = std::max(1, at::get_num_threads());
    PlanKey key{g.rank, g.fft[0], g.rank == 2 ? g.fft[1] : 1, g.count,
                static_cast<int>(g.layout), forward, threads, unaligned};
    {
      std::shared_lock<std::shared_mutex> lock(mutex_);
      auto it = plans_.find(key);
      if (it != plans_.end()) {
        ++g_reused;
        return it->second;
      }
    }
    std::unique_lock<std::shared_mutex> lock(mutex_);
    auto it = plans_.find(key);
    if (it != plans_.end()) {
      ++g_reused;
      return it->second;
    }
    auto plan = create(g, forward, unaligned, threads);
    plans_.emplace(key, plan);
    ++g_created;
    return plan;
  }

 private:
  typename F::Plan create(const FftGeometry& g, bool forward, bool unaligned, int threads) {
    static std::once_flag threads_once;
    std::call_once(threads_once, [] {
      Fftw<float>::init_threads();
      Fftw<double>::init_threads();
    });
    F::plan_with_nthreads(threads);
    F::set_timelimit(10.0);

    int n[2] = {checked_int(g.fft[0], "size"), g.rank == 2 ? checked_int(g.fft[1], "size") : 1};
    const int count = checked_int(g.count, "batch");
    const int real = checked_int(g.real_size(), "size");
    const int bins = checked_int(g.bins(), "size");
    const bool bin_major = g.layout == SpectrumLayout::kBinMajor;
    const int cstride = bin_major ? count : 1;
    const int cdist = bin_major ? 1 : bins;

    // Planning with FFTW_MEASURE overwrites its arrays, so it gets its own.
    const size_t real_bytes = sizeof(T) * static_cast<size_t>(real) * count;
    const size_t cplx_bytes = sizeof(typename F::Complex) * static_cast<size_t>(bins) * count;
    std::unique_ptr<void, void (*)(void*)> rbuf(F::malloc(real_bytes), F::free);
    std::unique_ptr<void, void (*)(void*)> cbuf(F::malloc(cplx_bytes), F::free);
    if (!rbuf || !cbuf) throw std::bad_alloc();
    std::memset(rbuf.get(), 0, real_bytes);
    std::memset(cbuf.get(), 0, cplx_bytes);

    unsigned flags = planner_flags() | (unaligned ? FFTW_UNALIGNED : 0u);
    typename F::Plan plan;
    if (forward) {
      plan = F::plan_r2c(g.rank, n, count, static_cast<T*>(rbuf.get()), real,
                         static_cast<typename F::Complex*>(cbuf.get()), cstride, cdist, flags);
    } else {
      plan = F::plan_c2r(g.rank, n, count, static_cast<typename F::Complex*>(cbuf.get()), cstride,
                         cdist, static_cast<T*>(rbuf.get()), real, flags | FFTW_DESTROY_INPUT);
    }
    if (!plan) {
      throw std::runtime_error("FFTW could not plan a transform of size " + std::to_string(n[0]) +
                               (g.rank == 2 ? "x" + std::to_string(n[1]) : "") + " for " +
                               std::to_string(count) + " arrays");
    }
    return plan;
  }

  std::shared_mutex mutex_;
  std::map<PlanKey, typename F::Plan> plans_;
};

template <typename T>
PlanCache<T>& cache() {
  static PlanCache<T> instance;
  return instance;
}

template <typename T>
void run(const FftGeometry& g, bool forward, void* in, void* out) {
  using F = Fftw<T>;
  // Plans made on aligned arrays may use SIMD loads that need the same
  // alignment at execution; LibTorch allocates 64-byte aligned, so this is the
  // normal path and the unaligned plan only a safety net.
  const bool unaligned = F::alignment_of(in) != 0 || F::alignment_of(out) != 0;
  auto plan = cache<T>().get(g, forward, unaligned);
  if (forward) {
    F::exec_r2c(plan, in, out);
  } else {
    F::exec_c2r(plan, in, out);
  }
}

}  // namespace

FftPlanStats fft_plan_stats() { return {g_created.load(), g_reused.load()}; }

void execute_r2c(const FftGeometry& g, at::ScalarType dtype, void* in, void* out) {
  if (dtype == at::kFloat) {
    run<float>(g, true, in, out);
  } else if (dtype == at::kDouble) {
    run<double>(g, true, in, out);
  } else {
    throw std::invalid_argument("FFT supports float32 and float64 only");
  }
}

void execute_c2r(const FftGeometry& g, at::ScalarType dtype, void* in, void* out) {
  if (dtype == at::kFloat) {
    run<float>(g, false, in, out);
  } else if (dtype == at::kDouble) {
    run<double>(g, false, in, out);
  } else {
    throw std::invalid_argument("FFT supports float32 and float64 only");
  }
}

}  // namespace dash::ops::cpu
