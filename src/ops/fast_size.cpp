#include "ops/fast_size.h"

#include <stdexcept>
#include <string>

namespace dash::ops {

namespace {
bool is_7_smooth(int64_t n) {
  for (int64_t p : {2, 3, 5, 7}) {
    while (n % p == 0) n /= p;
  }
  return n == 1;
}
}  // namespace

int64_t fast_fft_size(int64_t n) {
  if (n < 1) {
    throw std::invalid_argument("fast_fft_size: length must be positive, got " + std::to_string(n));
  }
  int64_t m = n + (n % 2);  // even
  while (!is_7_smooth(m)) m += 2;
  return m;
}

}  // namespace dash::ops
