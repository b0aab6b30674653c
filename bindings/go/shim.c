/* See shim.h. */

#include <stdlib.h>
#include <string.h>

#include "shim.h"
#include "_cgo_export.h" /* goDashProgress */

/* A malloc'd copy of this thread's last error; NULL if out of memory. */
static char *dashgo_copy_last_error(void) {
  const char *message = dash_last_error();
  size_t len = strlen(message);
  char *copy = malloc(len + 1);
  if (copy != NULL) memcpy(copy, message, len + 1);
  return copy;
}

#define DASHGO_CALL(call)                                \
  do {                                                   \
    dash_status dashgo_status_ = (call);                 \
    if (dashgo_status_ != DASH_OK) {                     \
      *err = dashgo_copy_last_error();                   \
    }                                                    \
    return dashgo_status_;                               \
  } while (0)

static int dashgo_progress(const dash_progress *event, void *user_data) {
  /* The library only reads the event; the Go side does not write it. */
  return goDashProgress((dash_progress *)event, (uintptr_t)user_data);
}

static dash_progress_fn dashgo_progress_fn(uintptr_t handle) {
  return handle != 0 ? dashgo_progress : NULL;
}

dash_status dashgo_task_create(const char *spec_json, dash_task **out, char **err) {
  DASHGO_CALL(dash_task_create(spec_json, out));
}

dash_status dashgo_task_set_data(dash_task *task, dash_split split, const float *x, const void *y,
                                 int64_t n, char **err) {
  DASHGO_CALL(dash_task_set_data(task, split, x, y, n));
}

dash_status dashgo_task_load_files(dash_task *task, dash_split split, const char *x_path,
                                   const char *y_path, char **err) {
  DASHGO_CALL(dash_task_load_files(task, split, x_path, y_path));
}

dash_status dashgo_task_split_size(const dash_task *task, dash_split split, int64_t *out,
                                   char **err) {
  DASHGO_CALL(dash_task_split_size(task, split, out));
}

dash_status dashgo_task_to_json(const dash_task *task, char **json_out, char **err) {
  DASHGO_CALL(dash_task_to_json(task, json_out));
}

dash_status dashgo_task_input_size(const dash_task *task, int64_t *out, char **err) {
  DASHGO_CALL(dash_task_input_size(task, out));
}

dash_status dashgo_task_target_size(const dash_task *task, int64_t *out, char **err) {
  DASHGO_CALL(dash_task_target_size(task, out));
}

dash_status dashgo_task_interrupt(const dash_task *task, char **err) {
  DASHGO_CALL(dash_task_interrupt(task));
}

dash_status dashgo_search(const dash_task *task, const char *options_json, uintptr_t handle,
                          dash_arch **out, char **err) {
  DASHGO_CALL(dash_search(task, options_json, dashgo_progress_fn(handle), (void *)handle, out));
}

dash_status dashgo_arch_to_json(const dash_arch *arch, char **json_out, char **err) {
  DASHGO_CALL(dash_arch_to_json(arch, json_out));
}

dash_status dashgo_arch_info(const dash_arch *arch, char **json_out, char **err) {
  DASHGO_CALL(dash_arch_info(arch, json_out));
}

dash_status dashgo_arch_from_json(const char *json, dash_arch **out, char **err) {
  DASHGO_CALL(dash_arch_from_json(json, out));
}

dash_status dashgo_arch_plain(const dash_task *task, dash_arch **out, char **err) {
  DASHGO_CALL(dash_arch_plain(task, out));
}

dash_status dashgo_retrain(const dash_task *task, const dash_arch *arch, const char *options_json,
                           uintptr_t handle, dash_model **out, char **err) {
  DASHGO_CALL(
      dash_retrain(task, arch, options_json, dashgo_progress_fn(handle), (void *)handle, out));
}

dash_status dashgo_model_output_size(const dash_model *model, int64_t *out, char **err) {
  DASHGO_CALL(dash_model_output_size(model, out));
}

dash_status dashgo_model_input_size(const dash_model *model, int64_t *out, char **err) {
  DASHGO_CALL(dash_model_input_size(model, out));
}

dash_status dashgo_infer(const dash_model *model, const float *x, int64_t n, float *out,
                         int64_t out_len, char **err) {
  DASHGO_CALL(dash_infer(model, x, n, out, out_len));
}

dash_status dashgo_evaluate(const dash_model *model, const dash_task *task, dash_split split,
                            char **report_json, char **err) {
  DASHGO_CALL(dash_evaluate(model, task, split, report_json));
}

dash_status dashgo_evaluate_with(const dash_model *model, const dash_task *task, dash_split split,
                                 const char *options_json, char **report_json, char **err) {
  DASHGO_CALL(dash_evaluate_with(model, task, split, options_json, report_json));
}

dash_status dashgo_model_info(const dash_model *model, char **json_out, char **err) {
  DASHGO_CALL(dash_model_info(model, json_out));
}

dash_status dashgo_model_save(const dash_model *model, const char *path, char **err) {
  DASHGO_CALL(dash_model_save(model, path));
}

dash_status dashgo_model_export_onnx(const dash_model *model, const char *path, const char *options,
                                     char **err) {
  DASHGO_CALL(dash_model_export_onnx(model, path, options));
}

dash_status dashgo_model_load(const char *path, dash_model **out, char **err) {
  DASHGO_CALL(dash_model_load(path, out));
}

dash_status dashgo_model_set_device(dash_model *model, const char *device, char **err) {
  DASHGO_CALL(dash_model_set_device(model, device));
}

dash_status dashgo_options_describe(char **json_out, char **err) {
  DASHGO_CALL(dash_options_describe(json_out));
}

dash_status dashgo_report_html(const char *run_json, char **html_out, char **err) {
  DASHGO_CALL(dash_report_html(run_json, html_out));
}
