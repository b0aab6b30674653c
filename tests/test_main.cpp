#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Tests use many shapes once each: FFTW's estimate planner saves measuring.
  setenv("DASH_FFTW_PLANNER", "estimate", 0);
  // Nor do they read or leave measured plans in the user's cache.
  setenv("DASH_FFTW_WISDOM", "off", 0);
  torch::set_num_threads(2);
  return RUN_ALL_TESTS();
}
