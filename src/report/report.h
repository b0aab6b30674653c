// The run report: one self-contained HTML page (inline CSS and SVG, nothing
// fetched) that shows what a search found and why, from the record the
// pipeline keeps (dash_model_info's JSON, or the runner's --out file).
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace dash::report {

// `run` is either dash_model_info's JSON ({"report", "task",
// "architecture", ...}) or the runner's result ({"training", "task",
// "method", "wall_s", ...}). Sections (each an element with a stable id):
// summary, architecture, probabilities, curves, trials, costs, time, run.
// What the record lacks is said in its section. Throws
// std::invalid_argument for a JSON that is neither.
std::string render_html(const nlohmann::json& run);

}  // namespace dash::report
