#pragma once
#include <cstdint>

namespace dash::ops {

// Smallest even n' >= n whose prime factors are all in {2, 3, 5, 7}.
// FFT libraries (FFTW, cuFFT) have hand-tuned kernels for exactly these radices;
// a length such as 1270 = 2*5*127 falls back to a much slower generic algorithm.
// Even lengths keep real-to-complex transforms on their fastest path.
int64_t fast_fft_size(int64_t n);

}  // namespace dash::ops
