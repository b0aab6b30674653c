#pragma once
// Readers for the array files users bring. Every length field is checked
// against the file size before anything is allocated or read.

#include <ATen/ATen.h>

#include <string>

namespace dash::task {

// NumPy .npy, versions 1.0-3.0, C order, little-endian float32, float64, uint8,
// int64 (also int32 and int8, widened to int64). Returns a tensor of the file's
// dtype (int32/int8 as int64). Throws std::runtime_error naming the path and
// what is wrong (missing, unreadable, truncated, Fortran order, dtype ...).
at::Tensor load_npy(const std::string& path);

// Writes a C-order little-endian .npy of a float32, float64, uint8 or int64 tensor.
void save_npy(const at::Tensor& t, const std::string& path);

// IDX (MNIST format), plain or gzip-compressed when the path ends in ".gz":
// unsigned byte, signed byte, short, int, float and double element types.
// Returns uint8 for unsigned byte files, else int64 or float32/float64.
at::Tensor load_idx(const std::string& path);

// load_npy or load_idx by extension (.npy, .idx, .gz, or the MNIST names that
// end in "-ubyte").
at::Tensor load_array(const std::string& path);

}  // namespace dash::task
