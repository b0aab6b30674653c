// dash_options_describe: the core's one table of options (api/options.h).

#include "capi/internal.h"

extern "C" dash_status dash_options_describe(char** json_out) {
  return dash::capi::guarded("dash_options_describe", [&] {
    dash::capi::require(json_out, "json_out");
    *json_out = dash::capi::copy_string(dash::api::describe_options().dump(2));
  });
}
