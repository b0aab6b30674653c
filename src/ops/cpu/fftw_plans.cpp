#include "ops/cpu/fftw_plans.h"

#include <chrono>

#include <ATen/Parallel.h>
#include <fftw3.h>

#include <atomic>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include <unistd.h>

namespace dash::ops::cpu {
namespace {

// The single- and double-precision FFTW APIs behind one name each.
template <typename T>
struct Fftw;

template <>
struct Fftw<float> {
  using Plan = fftwf_plan;
  using Complex = fftwf_complex;
  static void set_timelimit(double s) { fftwf_set_timelimit(s); }
  static void* malloc(size_t bytes) { return fftwf_malloc(bytes); }
  static void free(void* p) { fftwf_free(p); }
  static int alignment_of(void* p) { return fftwf_alignment_of(static_cast<float*>(p)); }
  using Dim = fftwf_iodim64;
  static Plan plan_r2c(int rank, const Dim* dims, int loops, const Dim* loop, float* in,
                       Complex* out, unsigned flags) {
    return fftwf_plan_guru64_dft_r2c(rank, dims, loops, loop, in, out, flags);
  }
  static Plan plan_c2r(int rank, const Dim* dims, int loops, const Dim* loop, Complex* in,
                       float* out, unsigned flags) {
    return fftwf_plan_guru64_dft_c2r(rank, dims, loops, loop, in, out, flags);
  }
  static void exec_r2c(Plan p, void* in, void* out) {
    fftwf_execute_dft_r2c(p, static_cast<float*>(in), static_cast<Complex*>(out));
  }
  static void exec_c2r(Plan p, void* in, void* out) {
    fftwf_execute_dft_c2r(p, static_cast<Complex*>(in), static_cast<float*>(out));
  }
  static void destroy(Plan p) { fftwf_destroy_plan(p); }
  static Plan plan_c2c(int rank, const Dim* dims, int loops, const Dim* loop, Complex* in, Complex* out,
                       int sign, unsigned flags) {
    return fftwf_plan_guru64_dft(rank, dims, loops, loop, in, out, sign, flags);
  }
  static void exec_c2c(Plan p, void* in, void* out) {
    fftwf_execute_dft(p, static_cast<Complex*>(in), static_cast<Complex*>(out));
  }
  static int import_wisdom(const char* file) { return fftwf_import_wisdom_from_filename(file); }
  static int export_wisdom(const char* file) { return fftwf_export_wisdom_to_filename(file); }
  static void forget_wisdom() { fftwf_forget_wisdom(); }
  static constexpr const char* kWisdomName = "fftw-wisdom-f32";
};

template <>
struct Fftw<double> {
  using Plan = fftw_plan;
  using Complex = fftw_complex;
  static void set_timelimit(double s) { fftw_set_timelimit(s); }
  static void* malloc(size_t bytes) { return fftw_malloc(bytes); }
  static void free(void* p) { fftw_free(p); }
  static int alignment_of(void* p) { return fftw_alignment_of(static_cast<double*>(p)); }
  using Dim = fftw_iodim64;
  static Plan plan_r2c(int rank, const Dim* dims, int loops, const Dim* loop, double* in,
                       Complex* out, unsigned flags) {
    return fftw_plan_guru64_dft_r2c(rank, dims, loops, loop, in, out, flags);
  }
  static Plan plan_c2r(int rank, const Dim* dims, int loops, const Dim* loop, Complex* in,
                       double* out, unsigned flags) {
    return fftw_plan_guru64_dft_c2r(rank, dims, loops, loop, in, out, flags);
  }
  static void exec_r2c(Plan p, void* in, void* out) {
    fftw_execute_dft_r2c(p, static_cast<double*>(in), static_cast<Complex*>(out));
  }
  static void exec_c2r(Plan p, void* in, void* out) {
    fftw_execute_dft_c2r(p, static_cast<Complex*>(in), static_cast<double*>(out));
  }
  static void destroy(Plan p) { fftw_destroy_plan(p); }
  static Plan plan_c2c(int rank, const Dim* dims, int loops, const Dim* loop, Complex* in, Complex* out,
                       int sign, unsigned flags) {
    return fftw_plan_guru64_dft(rank, dims, loops, loop, in, out, sign, flags);
  }
  static void exec_c2c(Plan p, void* in, void* out) {
    fftw_execute_dft(p, static_cast<Complex*>(in), static_cast<Complex*>(out));
  }
  static int import_wisdom(const char* file) { return fftw_import_wisdom_from_filename(file); }
  static int export_wisdom(const char* file) { return fftw_export_wisdom_to_filename(file); }
  static void forget_wisdom() { fftw_forget_wisdom(); }
  static constexpr const char* kWisdomName = "fftw-wisdom-f64";
};

// Planner effort. "auto" (the default) measures 2D plans and estimates 1D
// ones, from the search benchmark (bench_search, one thread): measured 2D
// plans made Fashion-MNIST search steps 15% faster for 1.5 s of planning, while
// measuring the 1D plans of a length-1000 search took 30 s, longer than the
// whole search with estimated plans. It also estimates the plans of calls that
// transform fewer than kMeasureFrom arrays (a depthwise layer's kernels: 16-64
// arrays, well under a millisecond a call): measuring them took 0.5 s of a cold
// Fashion-MNIST search's 2.6 s of planning, for nothing a step could show.
// DASH_FFTW_PLANNER or set_fft_planner change it.
constexpr unsigned kAuto = ~0u;
constexpr int64_t kMeasureFrom = 256;

unsigned parse_planner(const std::string& v) {
  if (v == "auto") return kAuto;
  if (v == "estimate") return static_cast<unsigned>(FFTW_ESTIMATE);
  if (v == "patient") return static_cast<unsigned>(FFTW_PATIENT);
  if (v == "measure") return static_cast<unsigned>(FFTW_MEASURE);
  throw std::invalid_argument("the FFT planner must be auto, estimate, measure or patient, got '" +
                              v + "'");
}

std::atomic<unsigned>& planner_setting() {
  static std::atomic<unsigned> flags{[] {
    const char* env = std::getenv("DASH_FFTW_PLANNER");
    return parse_planner(env ? env : "auto");
  }()};
  return flags;
}

// transforms: how many arrays one call transforms (samples x channels).
unsigned planner_flags(int rank, int64_t transforms) {
  const unsigned f = planner_setting().load();
  if (f != kAuto) return f;
  return static_cast<unsigned>(rank == 2 && transforms >= kMeasureFrom ? FFTW_MEASURE : FFTW_ESTIMATE);
}

// Where measured plans are kept between processes (FFTW's wisdom): a
// directory, or "" for nowhere. Measuring costs seconds per search (2.8 s of a
// 22 s Fashion-MNIST search on this VM, the first step and the steps where
// pruning shrinks a layer's frame paying it); a later process on the same
// machine reads the plans back instead. "auto": $DASH_FFTW_WISDOM if set
// ("" or "off": nowhere), else $XDG_CACHE_HOME/dashnas or ~/.cache/dashnas.
std::string resolve_wisdom_dir(const std::string& where) {
  if (where == "off" || where.empty()) return "";
  if (where != "auto") return where;
  if (const char* env = std::getenv("DASH_FFTW_WISDOM")) {
    const std::string e = env;
    if (e != "auto") return e == "off" ? "" : e;
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/dashnas";
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/dashnas";
  return "";
}

std::mutex g_wisdom_mutex;
std::string g_wisdom_dir = resolve_wisdom_dir("auto");

std::string wisdom_dir() {
  std::lock_guard<std::mutex> lock(g_wisdom_mutex);
  return g_wisdom_dir;
}

std::atomic<int64_t> g_created{0};
std::atomic<int64_t> g_wisdom_read{0};
std::atomic<int64_t> g_wisdom_written{0};
std::atomic<int64_t> g_reused{0};
std::atomic<int64_t> g_planning_us{0};

// rank, fft0, fft1, channels, layout, forward, unaligned, in place, pass,
// rows, planner flags (auto plans small calls with less effort). No batch: a plan transforms one sample's channels and runs once per
// sample (see run).
using PlanKey = std::tuple<int, int64_t, int64_t, int64_t, int, bool, bool, bool, int, int64_t, unsigned>;

// A 2D transform whole, or one of its two 1D passes where only the first
// `rows` rows of the real arrays matter (see run).
enum class Pass { kWhole = 0, kRows = 1, kColumns = 2 };

// The guru description of a batch: transform dimensions (real-side stride
// `is`, spectrum-side stride `os`) and the two loops over batch and channels.
template <typename Dim>
struct GuruLayout {
  Dim dims[2];
  Dim loops[2];
};

// In place, each real signal sits in its own spectrum's memory with rows padded
// to 2*(N/2+1) values, FFTW's standard in-place layout.
template <typename Dim>
GuruLayout<Dim> guru_layout(const FftGeometry& g, bool in_place) {
  GuruLayout<Dim> l{};
  const int64_t bins = g.bins();
  const int64_t inner = g.rank == 2 ? g.fft[1] / 2 + 1 : 1;  // bins per row in 2D
  const int64_t real = in_place ? 2 * bins : g.real_size();
  const int64_t real_row = in_place ? 2 * inner : g.fft[1];
  const bool channels_last = g.layout == SpectrumLayout::kChannelsLast;
  const int64_t bin_stride = channels_last ? g.channels : 1;
  if (g.rank == 1) {
    l.dims[0] = {g.fft[0], 1, bin_stride};
  } else {
    l.dims[0] = {g.fft[0], real_row, inner * bin_stride};
    l.dims[1] = {g.fft[1], 1, bin_stride};
  }
  if (channels_last) {
    l.loops[0] = {g.batch, g.channels * real, bins * g.channels};
    l.loops[1] = {g.channels, real, 1};
  } else {
    l.loops[0] = {g.batch, g.channels * real, g.channels * bins};
    l.loops[1] = {g.channels, real, bins};
  }
  return l;
}

// The same description for the inverse transform: strides swap sides.
template <typename Dim>
GuruLayout<Dim> inverse_of(GuruLayout<Dim> l) {
  for (auto* d : {&l.dims[0], &l.dims[1], &l.loops[0], &l.loops[1]}) std::swap(d->is, d->os);
  return l;
}

// The passes of a 2D transform whose real arrays hold data (forward) or are
// wanted (inverse) in their first `rows` rows only. Rows: the 1D real
// transforms along axis 1 of those rows (real side: in place, rows of
// 2*(fft1/2+1) values in the spectrum's memory; else [channels][rows][fft1]).
// Columns: the complex transforms along axis 0, in place on the spectrum, of
// every bin column. Strides are FFTW's: real values on the real side,
// complex ones on the spectrum side.
template <typename Dim>
GuruLayout<Dim> pass_layout(const FftGeometry& g, bool in_place, Pass pass, int64_t rows, int* loops) {
  GuruLayout<Dim> l{};
  const int64_t inner = g.fft[1] / 2 + 1, bins = g.bins();
  const bool channels_last = g.layout == SpectrumLayout::kChannelsLast;
  const int64_t bin_stride = channels_last ? g.channels : 1;
  const int64_t channel_spectrum = channels_last ? 1 : bins;
  if (pass == Pass::kRows) {
    const int64_t channel_real = in_place ? 2 * bins : rows * g.fft[1];
    const int64_t row_real = in_place ? 2 * inner : g.fft[1];
    l.dims[0] = {g.fft[1], 1, bin_stride};
    l.loops[0] = {g.channels, channel_real, channel_spectrum};
    l.loops[1] = {rows, row_real, inner * bin_stride};
    *loops = 2;
  } else {
    const int64_t column = inner * bin_stride;
    l.dims[0] = {g.fft[0], column, column};
    if (channels_last) {
      l.loops[0] = {inner * g.channels, 1, 1};
      *loops = 1;
    } else {
      l.loops[0] = {g.channels, bins, bins};
      l.loops[1] = {inner, 1, 1};
      *loops = 2;
    }
  }
  return l;
}

template <typename T>
class PlanCache {
 public:
  using F = Fftw<T>;

  ~PlanCache() {
    for (auto& kv : plans_) F::destroy(kv.second);
  }

  // transforms: how many arrays the call transforms (the planner's effort).
  typename F::Plan get(const FftGeometry& g, bool forward, bool unaligned, bool in_place, int64_t transforms,
                       Pass pass = Pass::kWhole, int64_t rows = 0) {
    const unsigned flags = planner_flags(g.rank, transforms);
    PlanKey key{g.rank,    g.fft[0],  g.rank == 2 ? g.fft[1] : 1, g.channels,
                static_cast<int>(g.layout), forward, unaligned, in_place,
                static_cast<int>(pass), pass == Pass::kRows ? rows : 0, flags};
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
    const auto t0 = std::chrono::steady_clock::now();
    const std::string dir = wisdom_dir();
    use_wisdom(flags, dir);
    F::set_timelimit(10.0);
    const unsigned plan_flags = flags | (unaligned ? FFTW_UNALIGNED : 0u);
    auto plan = pass == Pass::kWhole ? create(g, forward, in_place, plan_flags)
                                     : create_pass(g, forward, in_place, plan_flags, pass, rows);
    if (flags != static_cast<unsigned>(FFTW_ESTIMATE) && !dir.empty()) save_wisdom(dir);
    g_planning_us += std::chrono::duration_cast<std::chrono::microseconds>(
                         std::chrono::steady_clock::now() - t0).count();
    plans_.emplace(key, plan);
    ++g_created;
    return plan;
  }

 private:
  // FFTW uses any wisdom it holds, even for an estimated plan: so the
  // estimate planner (bit-reproducible between processes) plans without any,
  // and the others read the saved plans once.
  void use_wisdom(unsigned flags, const std::string& dir) {
    if (planner_setting().load() == static_cast<unsigned>(FFTW_ESTIMATE)) {
      if (holds_wisdom_) F::forget_wisdom();
      holds_wisdom_ = false;
      read_from_.clear();
      return;
    }
    if (flags != static_cast<unsigned>(FFTW_ESTIMATE)) holds_wisdom_ = true;
    if (dir.empty() || read_from_ == dir) return;
    read_from_ = dir;
    if (F::import_wisdom((dir + "/" + F::kWisdomName).c_str())) {
      holds_wisdom_ = true;
      ++g_wisdom_read;
    }
  }

  // Written to a file of this process first, then renamed over the old one,
  // so that processes saving at once never leave a half-written file.
  void save_wisdom(const std::string& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    const std::string file = dir + "/" + F::kWisdomName;
    const std::string tmp = file + ".tmp" + std::to_string(static_cast<long>(getpid()));
    if (F::export_wisdom(tmp.c_str()) && std::rename(tmp.c_str(), file.c_str()) == 0) {
      ++g_wisdom_written;
    } else {
      std::remove(tmp.c_str());  // an unwritable place: plans are measured again next time
    }
  }

  // Planning with FFTW_MEASURE overwrites its arrays, so each plan gets its
  // own, zeroed: a spectrum of `bins` complex values and a real array of
  // `reals` values (none for 0: the transform is in place).
  struct Scratch {
    std::unique_ptr<void, void (*)(void*)> spectrum{nullptr, F::free}, real{nullptr, F::free};
    Scratch(int64_t bins, int64_t reals) {
      const size_t spectrum_bytes = sizeof(typename F::Complex) * static_cast<size_t>(bins);
      const size_t real_bytes = sizeof(T) * static_cast<size_t>(reals);
      spectrum.reset(F::malloc(spectrum_bytes));
      if (reals > 0) real.reset(F::malloc(real_bytes));
      if (!spectrum || (reals > 0 && !real)) throw std::bad_alloc();
      std::memset(spectrum.get(), 0, spectrum_bytes);
      if (reals > 0) std::memset(real.get(), 0, real_bytes);
    }
    typename F::Complex* complex_values() { return static_cast<typename F::Complex*>(spectrum.get()); }
    T* real_values() { return static_cast<T*>(real ? real.get() : spectrum.get()); }
  };

  // flags: the planner's, FFTW_UNALIGNED included where it applies.
  typename F::Plan create(const FftGeometry& g, bool forward, bool in_place, unsigned flags) {
    if (g.count() <= 0) throw std::invalid_argument("FFT of an empty batch");
    if (in_place && g.layout != SpectrumLayout::kTransformMajor) {
      throw std::invalid_argument("in-place FFTs need the transform-major layout");
    }
    const auto layout = guru_layout<typename F::Dim>(g, in_place);
    Scratch scratch(g.bins() * g.count(), in_place ? 0 : g.real_size() * g.count());
    typename F::Plan plan;
    if (forward) {
      plan = F::plan_r2c(g.rank, layout.dims, 2, layout.loops, scratch.real_values(), scratch.complex_values(),
                         flags);
    } else {
      const auto inv = inverse_of(layout);
      plan = F::plan_c2r(g.rank, inv.dims, 2, inv.loops, scratch.complex_values(), scratch.real_values(),
                         flags | FFTW_DESTROY_INPUT);
    }
    if (!plan) {
      throw std::runtime_error("FFTW could not plan a transform of size " +
                               std::to_string(g.fft[0]) +
                               (g.rank == 2 ? "x" + std::to_string(g.fft[1]) : "") + " for " +
                               std::to_string(g.count()) + " arrays");
    }
    return plan;
  }

  typename F::Plan create_pass(const FftGeometry& g, bool forward, bool in_place, unsigned flags, Pass pass,
                               int64_t rows) {
    int loops = 0;
    const auto layout = pass_layout<typename F::Dim>(g, in_place, pass, rows, &loops);
    const bool real_buffer = pass == Pass::kRows && !in_place;
    Scratch scratch(g.bins() * g.channels, real_buffer ? rows * g.fft[1] * g.channels : 0);
    auto* spectrum = scratch.complex_values();
    T* real = scratch.real_values();
    typename F::Plan plan;
    if (pass == Pass::kColumns) {
      plan = F::plan_c2c(1, layout.dims, loops, layout.loops, spectrum, spectrum,
                         forward ? FFTW_FORWARD : FFTW_BACKWARD, flags);
    } else if (forward) {
      plan = F::plan_r2c(1, layout.dims, loops, layout.loops, real, spectrum, flags);
    } else {
      const auto inv = inverse_of(layout);
      plan = F::plan_c2r(1, inv.dims, loops, inv.loops, spectrum, real, flags | FFTW_DESTROY_INPUT);
    }
    if (!plan) {
      throw std::runtime_error("FFTW could not plan the " + std::string(pass == Pass::kRows ? "row" : "column") +
                               " transforms of a " + std::to_string(g.fft[0]) + "x" + std::to_string(g.fft[1]) +
                               " transform for " + std::to_string(g.channels) + " arrays");
    }
    return plan;
  }

  std::shared_mutex mutex_;
  std::map<PlanKey, typename F::Plan> plans_;
  bool holds_wisdom_ = false;  // FFTW holds measured (or read) plans
  std::string read_from_;      // the directory whose file was read, "" none
};

template <typename T>
PlanCache<T>& cache() {
  static PlanCache<T> instance;
  return instance;
}

// A plan covers one sample (its channels) and runs once per sample, samples
// spread over LibTorch's threads. So a new batch size (the last batch of an
// epoch, an evaluation) never makes a new plan, and FFTW_MEASURE times one
// sample, not the whole batch: measured on the 1D search benchmark, planning
// whole batches took 24 of the search's 29 seconds.
//
// A 2D transform where only the first `rows` of fft0 rows matter (forward:
// the rest are zero; inverse: only they are wanted) runs as its two 1D
// passes and skips the other rows' transforms along axis 1: for "same"
// convolutions rows is the input's size, about half of fft0. Measured on
// this VM (64 samples, FFTW_MEASURE, forward): 50x50 with 28 data rows and 16
// channels 6.1 -> 4.2 ms in place, 5.1 -> 3.9 ms channels-last; 28x28 (14
// rows, 32 channels) 3.5 -> 2.7 ms; 14x14 (7 rows, 64) 1.07 -> 0.64 ms.
template <typename T>
void run(const FftGeometry& g, bool forward, void* in, void* out, int64_t rows) {
  using F = Fftw<T>;
  const bool in_place = in == out;
  const bool pruned = g.rank == 2 && rows > 0 && rows < g.fft[0];
  FftGeometry one = g;
  one.batch = 1;
  const int64_t transforms = g.batch * g.channels;
  const int64_t real_values = in_place ? 2 * g.bins() : (pruned ? rows * g.fft[1] : g.real_size());
  const size_t real_bytes = sizeof(T) * static_cast<size_t>(real_values * g.channels);
  const size_t spectrum_bytes = sizeof(typename F::Complex) * static_cast<size_t>(g.bins() * g.channels);
  const size_t in_step = forward ? real_bytes : spectrum_bytes;
  const size_t out_step = forward ? spectrum_bytes : real_bytes;
  auto sample_in = [&](int64_t b) { return static_cast<char*>(in) + static_cast<size_t>(b) * in_step; };
  auto sample_out = [&](int64_t b) { return static_cast<char*>(out) + static_cast<size_t>(b) * out_step; };
  // Plans made on aligned arrays may use SIMD loads that need the same
  // alignment at execution, so samples that start unaligned get a plan of
  // their own. Both are looked up (or made) once, before the parallel loop.
  auto unaligned = [&](int64_t b) {
    return F::alignment_of(sample_in(b)) != 0 || F::alignment_of(sample_out(b)) != 0;
  };
  // [aligned, unaligned] x [whole or rows, columns]
  typename F::Plan plans[2][2] = {{nullptr, nullptr}, {nullptr, nullptr}};
  for (int64_t b = 0; b < g.batch && !(plans[0][0] && plans[1][0]); ++b) {
    const bool u = unaligned(b);
    if (plans[u][0]) continue;
    if (pruned) {
      plans[u][0] = cache<T>().get(one, forward, u, in_place, transforms, Pass::kRows, rows);
      plans[u][1] = cache<T>().get(one, forward, u, in_place, transforms, Pass::kColumns);
    } else {
      plans[u][0] = cache<T>().get(one, forward, u, in_place, transforms);
    }
  }
  const bool channels_last = g.layout == SpectrumLayout::kChannelsLast;
  const int64_t row_bins = g.rank == 2 ? g.fft[1] / 2 + 1 : 0;
  at::parallel_for(0, g.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      void* i = sample_in(b);
      void* o = sample_out(b);
      auto* const* plan = plans[unaligned(b)];
      if (!pruned) {
        if (forward) {
          F::exec_r2c(plan[0], i, o);
        } else {
          F::exec_c2r(plan[0], i, o);
        }
      } else if (forward) {
        // Rows, then columns over all fft0 rows: the skipped ones are zero.
        F::exec_r2c(plan[0], i, o);
        {  // (in place too: a real row's padding values are not zero)
          auto* spectrum = static_cast<typename F::Complex*>(o);
          const int64_t skipped = (g.fft[0] - rows) * row_bins;
          if (channels_last) {
            std::memset(spectrum + rows * row_bins * g.channels, 0,
                        sizeof(typename F::Complex) * static_cast<size_t>(skipped * g.channels));
          } else {
            for (int64_t c = 0; c < g.channels; ++c) {
              std::memset(spectrum + c * g.bins() + rows * row_bins, 0,
                          sizeof(typename F::Complex) * static_cast<size_t>(skipped));
            }
          }
        }
        F::exec_c2c(plan[1], o, o);
      } else {
        F::exec_c2c(plan[1], i, i);  // the input is consumed anyway
        F::exec_c2r(plan[0], i, o);
      }
    }
  });
}

}  // namespace

FftPlanStats fft_plan_stats() {
  return {g_created.load(), g_reused.load(), static_cast<double>(g_planning_us.load()) * 1e-6,
          g_wisdom_read.load(), g_wisdom_written.load()};
}

void set_fft_wisdom(const std::string& where) {
  const std::string dir = resolve_wisdom_dir(where);
  std::lock_guard<std::mutex> lock(g_wisdom_mutex);
  g_wisdom_dir = dir;
}

std::string fft_wisdom_dir() { return wisdom_dir(); }

void set_fft_planner(const std::string& effort) { planner_setting().store(parse_planner(effort)); }

std::string fft_planner() {
  const unsigned f = planner_setting().load();
  if (f == kAuto) return "auto";
  if (f == static_cast<unsigned>(FFTW_ESTIMATE)) return "estimate";
  if (f == static_cast<unsigned>(FFTW_PATIENT)) return "patient";
  return "measure";
}

void execute_r2c(const FftGeometry& g, at::ScalarType dtype, void* in, void* out, int64_t rows) {
  if (dtype == at::kFloat) {
    run<float>(g, true, in, out, rows);
  } else if (dtype == at::kDouble) {
    run<double>(g, true, in, out, rows);
  } else {
    throw std::invalid_argument("FFT supports float32 and float64 only");
  }
}

void execute_c2r(const FftGeometry& g, at::ScalarType dtype, void* in, void* out, int64_t rows) {
  if (dtype == at::kFloat) {
    run<float>(g, false, in, out, rows);
  } else if (dtype == at::kDouble) {
    run<double>(g, false, in, out, rows);
  } else {
    throw std::invalid_argument("FFT supports float32 and float64 only");
  }
}

}  // namespace dash::ops::cpu
