/* C callers may pass any int as a dash_split (C enums are ints); C++ may not
 * even form such a value, so the C ABI tests make these calls from C. */
#include "dash/dash.h"

dash_status set_data_with_raw_split(dash_task *task, int split, const float *x, const void *y,
                                    int64_t n) {
  return dash_task_set_data(task, (dash_split)split, x, y, n);
}
