/* C shims of the Go binding: not part of the public API.
 *
 * Each dashgo_ function calls the dash_ function of the same name and, when it
 * fails, copies dash_last_error() into *err before returning. The message is
 * thread-local in the library, and Go may move a goroutine to another OS
 * thread between two cgo calls; reading it inside the same cgo call as the
 * failing function is what makes the message belong to that call. *err is
 * malloc'd (the Go side frees it with free) and stays NULL on success or if
 * the copy itself could not be allocated.
 *
 * Progress callbacks: `handle` is a runtime/cgo.Handle value (an integer, not
 * a Go pointer). 0 means no callback; otherwise the shim passes the exported
 * Go trampoline goDashProgress as the callback and the handle as user_data.
 */
#ifndef DASHGO_SHIM_H
#define DASHGO_SHIM_H

#include <stdint.h>

#include <dash/dash.h>

dash_status dashgo_task_create(const char *spec_json, dash_task **out, char **err);
dash_status dashgo_task_set_data(dash_task *task, dash_split split, const float *x, const void *y,
                                 int64_t n, char **err);
dash_status dashgo_task_load_files(dash_task *task, dash_split split, const char *x_path,
                                   const char *y_path, char **err);
dash_status dashgo_task_split_size(const dash_task *task, dash_split split, int64_t *out,
                                   char **err);
dash_status dashgo_task_to_json(const dash_task *task, char **json_out, char **err);
dash_status dashgo_task_input_size(const dash_task *task, int64_t *out, char **err);
dash_status dashgo_task_target_size(const dash_task *task, int64_t *out, char **err);
dash_status dashgo_task_interrupt(const dash_task *task, char **err);

dash_status dashgo_search(const dash_task *task, const char *options_json, uintptr_t handle,
                          dash_arch **out, char **err);
dash_status dashgo_arch_to_json(const dash_arch *arch, char **json_out, char **err);
dash_status dashgo_arch_info(const dash_arch *arch, char **json_out, char **err);
dash_status dashgo_arch_from_json(const char *json, dash_arch **out, char **err);
dash_status dashgo_arch_plain(const dash_task *task, dash_arch **out, char **err);

dash_status dashgo_retrain(const dash_task *task, const dash_arch *arch, const char *options_json,
                           uintptr_t handle, dash_model **out, char **err);
dash_status dashgo_model_output_size(const dash_model *model, int64_t *out, char **err);
dash_status dashgo_model_input_size(const dash_model *model, int64_t *out, char **err);
dash_status dashgo_infer(const dash_model *model, const float *x, int64_t n, float *out,
                         int64_t out_len, char **err);
dash_status dashgo_evaluate(const dash_model *model, const dash_task *task, dash_split split,
                            char **report_json, char **err);
dash_status dashgo_evaluate_with(const dash_model *model, const dash_task *task, dash_split split,
                                 const char *options_json, char **report_json, char **err);
dash_status dashgo_model_info(const dash_model *model, char **json_out, char **err);
dash_status dashgo_model_save(const dash_model *model, const char *path, char **err);
dash_status dashgo_model_export_onnx(const dash_model *model, const char *path, const char *options,
                                     char **err);
dash_status dashgo_model_load(const char *path, dash_model **out, char **err);
dash_status dashgo_model_set_device(dash_model *model, const char *device, char **err);

dash_status dashgo_options_describe(char **json_out, char **err);
dash_status dashgo_report_html(const char *run_json, char **html_out, char **err);

#endif /* DASHGO_SHIM_H */
