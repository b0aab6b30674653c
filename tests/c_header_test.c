/* The public header compiles alone as strict C99, the library loaded
 * matches the header it was built with, and const handles pass as declared. */
#include "dash/dash.h"

#include <stdio.h>
#include <string.h>

int main(void) {
  if (strcmp(dash_version(), DASH_VERSION_STRING) != 0) {
    fprintf(stderr, "library version %s, header %s\n", dash_version(), DASH_VERSION_STRING);
    return 1;
  }
  if (dash_abi_version() != DASH_ABI_VERSION) {
    fprintf(stderr, "library ABI %d, header %d\n", dash_abi_version(), DASH_ABI_VERSION);
    return 1;
  }
  {
    /* The read-only calls take const handles, as C code holding one passes them. */
    dash_task *task = NULL;
    const dash_task *view;
    int64_t in = 0, target = 0;
    if (dash_task_create("{\"kind\": \"regression\", \"input_shape\": [2, 8], \"num_outputs\": 3}",
                         &task) != DASH_OK) {
      fprintf(stderr, "dash_task_create: %s\n", dash_last_error());
      return 1;
    }
    view = task;
    if (dash_task_input_size(view, &in) != DASH_OK || dash_task_target_size(view, &target) != DASH_OK ||
        dash_task_interrupt(view) != DASH_OK || in != 16 || target != 3) {
      fprintf(stderr, "sizes %lld %lld: %s\n", (long long)in, (long long)target, dash_last_error());
      dash_task_free(task);
      return 1;
    }
    {
      /* dash_evaluate_with takes a const task and options; no model is refused. */
      const dash_model *no_model = NULL;
      char *report = NULL;
      if (dash_evaluate_with(no_model, view, DASH_SPLIT_TEST, "{}", &report) != DASH_INVALID_ARGUMENT ||
          report != NULL || strstr(dash_last_error(), "dash_evaluate_with") == NULL) {
        fprintf(stderr, "dash_evaluate_with without a model: %s\n", dash_last_error());
        dash_string_free(report);
        dash_task_free(task);
        return 1;
      }
    }
    dash_task_free(task);
  }
  printf("dashnas %s, ABI %d\n", dash_version(), dash_abi_version());
  return 0;
}
