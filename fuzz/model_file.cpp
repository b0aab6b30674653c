// dash_model_load on arbitrary bytes. The first input byte is a mode: odd
// repairs the CRC-32 trailer, so that mutations get past the checksum to the
// metadata and weights parsers behind it; even leaves the file as it is, to
// exercise the container's own checks. A model that loads must also be
// usable: its description, and one inference on zeros.

#include <ATen/Parallel.h>

#include <vector>

#include "capi/internal.h"
#include "dash/dash.h"
#include "fuzz_input.h"
#include "model/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool single_thread = [] {
    at::set_num_threads(1);
    return true;
  }();
  (void)single_thread;
  if (size == 0) return 0;
  std::string file = dash::fuzz::as_string(data + 1, size - 1);
  if ((data[0] & 1) != 0 && file.size() >= 4) {
    const uint32_t crc = dash::model::model_file_checksum(file.substr(0, file.size() - 4));
    for (int i = 0; i < 4; ++i) file[file.size() - 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  }
  const std::string path =
      dash::fuzz::as_file(reinterpret_cast<const uint8_t*>(file.data()), file.size(), ".dash");
  dash_model* model = nullptr;
  const dash_status status = dash_model_load(path.c_str(), &model);
  // A refused file must be named as such (DASH_BAD_FILE) or as too large to
  // build (DASH_OUT_OF_MEMORY); an internal error is a bug.
  if (status == DASH_INTERNAL) __builtin_trap();
  if (status != DASH_OK) return 0;

  char* info = nullptr;
  if (dash_model_info(model, &info) == DASH_OK) dash_string_free(info);
  int64_t per = 0;
  if (dash_model_output_size(model, &per) != DASH_OK) __builtin_trap();
  int64_t sample = 1;
  for (int64_t d : model->model->spec().input_shape) sample *= d;
  if (sample <= (int64_t{1} << 16) && per <= (int64_t{1} << 16)) {
    std::vector<float> x(static_cast<size_t>(sample), 0.0f), out(static_cast<size_t>(per));
    dash_infer(model, x.data(), 1, out.data(), per);  // any status; a crash is the bug
  }
  dash_model_free(model);
  return 0;
}
