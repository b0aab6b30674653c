// The run report: a self-contained HTML page from a run's record.

#include "capi/internal.h"
#include "report/report.h"

namespace {

using dash::capi::guarded;
using dash::capi::require;

}  // namespace

extern "C" {

dash_status dash_report_html(const char* run_json, char** html_out) {
  return guarded("dash_report_html", [&] {
    require(run_json, "run_json");
    require(html_out, "html_out");
    nlohmann::json run;
    try {
      run = nlohmann::json::parse(run_json);
    } catch (const nlohmann::json::exception& e) {
      throw std::invalid_argument(std::string("run_json is not valid JSON (") + e.what() +
                                  "); pass the text dash_model_info returned or the runner's --out file");
    }
    const std::string html = dash::report::render_html(run);
    *html_out = dash::capi::copy_string(html);
  });
}

}  // extern "C"
