#pragma once
// FFTW plans, created once per transform shape and cached for the life of the
// process. FFTW's planner is not thread-safe, so creation holds a lock; the
// new-array execute functions are, so execution takes only a shared lock for
// the lookup.

#include "ops/spectral_backend.h"

#include <cstdint>
#include <string>

namespace dash::ops::cpu {

struct FftPlanStats {
  int64_t created = 0;  // plans made by the FFTW planner
  int64_t reused = 0;   // executions that found their plan in the cache
  double planning_s = 0;  // seconds spent in the planner
  int64_t wisdom_read = 0;     // saved plans read (a file per precision, once per directory)
  int64_t wisdom_written = 0;  // times the saved plans were written (after each measured plan)
};
FftPlanStats fft_plan_stats();

// FFTW's planner effort for plans made from now on: "estimate" (no timing, so
// the same plans and bit-identical results in every process), "measure" (times
// candidate algorithms: faster steps, but plans and rounding may differ between
// processes), "patient", or "auto": measure 2D plans, estimate 1D ones (see
// fftw_plans.cpp for the measurement). The initial value comes from
// DASH_FFTW_PLANNER, else "auto".
void set_fft_planner(const std::string& effort);
std::string fft_planner();

// Where measured plans are saved for later processes (FFTW's wisdom, a file
// per precision; the estimate planner neither reads nor uses them): a
// directory, "off", or "auto" ($DASH_FFTW_WISDOM if set, "off" or "" there
// meaning nowhere; else $XDG_CACHE_HOME/dashnas or ~/.cache/dashnas; the
// initial value). fft_wisdom_dir() is where it resolved to, "" for nowhere.
void set_fft_wisdom(const std::string& where);
std::string fft_wisdom_dir();

// Real-to-complex transforms of g.count() arrays [fft0(, fft1)] stored
// contiguously at `in`, written to `out` in g.layout. Does not modify `in`.
// With in == out the transform runs in place (kTransformMajor only): each real
// array then sits in its spectrum's memory, rows padded to 2*(fft1/2+1) values.
// 2D with 0 < rows < fft0: only the first `rows` rows of each real array hold
// data (the rest are taken as zero and not read); out of place, the real
// arrays are then stored as [rows][fft1] each. dtype: at::kFloat or at::kDouble.
void execute_r2c(const FftGeometry& g, at::ScalarType dtype, void* in, void* out, int64_t rows = 0);

// Complex-to-real transforms (unnormalised) of spectra at `in` (g.layout) to
// g.count() contiguous real arrays at `out`. Overwrites `in`. With in == out,
// in place as for execute_r2c. 2D with 0 < rows < fft0: only the first `rows`
// rows of each real array are computed (out of place stored as [rows][fft1];
// in place the other rows are left undefined).
void execute_c2r(const FftGeometry& g, at::ScalarType dtype, void* in, void* out, int64_t rows = 0);

}  // namespace dash::ops::cpu
