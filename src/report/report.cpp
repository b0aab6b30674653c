#include "report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dash::report {
namespace {

using json = nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- Text ------------------------------------------------------------------

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

// 4 significant digits; "-" for a missing number.
std::string num(double v, int digits = 4) {
  if (!std::isfinite(v)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

// The value at a path of keys, or nullptr where any step is missing.
const json* at(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* key : path) {
    if (!cur->is_object() || !cur->contains(key)) return nullptr;
    cur = &(*cur)[key];
  }
  return cur;
}

double number(const json& j, std::initializer_list<const char*> path) {
  const json* v = at(j, path);
  return v && v->is_number() ? v->get<double>() : kNaN;
}

// A number the record may lack or hold as something else: `fallback` then.
double number_or(const json& j, std::initializer_list<const char*> path, double fallback) {
  const double v = number(j, path);
  return std::isfinite(v) ? v : fallback;
}

// The index of the largest number in an array; SIZE_MAX for anything else.
size_t argmax(const json& a) {
  size_t best = SIZE_MAX;
  for (size_t j = 0; a.is_array() && j < a.size(); ++j) {
    if (a[j].is_number() && (best == SIZE_MAX || a[j].get<double>() > a[best].get<double>())) best = j;
  }
  return best;
}

std::string text(const json& j, std::initializer_list<const char*> path, const std::string& missing = "-") {
  const json* v = at(j, path);
  if (!v || v->is_null()) return missing;
  return v->is_string() ? v->get<std::string>() : v->dump();
}

std::string missing(const std::string& what) { return "<p class=\"missing\">" + esc(what) + "</p>\n"; }

// ---- SVG -------------------------------------------------------------------

// A linear map of [lo, hi] onto [a, b] (pixels).
struct Scale {
  double lo, hi, a, b;
  double operator()(double v) const { return hi == lo ? (a + b) / 2 : a + (v - lo) / (hi - lo) * (b - a); }
};

std::string svg_text(double x, double y, const std::string& s, const std::string& extra = "") {
  return "<text x=\"" + num(x, 6) + "\" y=\"" + num(y, 6) + "\" " + extra + ">" + esc(s) + "</text>";
}

std::string svg_rect(double x, double y, double w, double h, const std::string& fill) {
  return "<rect x=\"" + num(x, 6) + "\" y=\"" + num(y, 6) + "\" width=\"" + num(w, 6) + "\" height=\"" +
         num(h, 6) + "\" fill=\"" + fill + "\"/>";
}

std::string svg_line(double x1, double y1, double x2, double y2, const std::string& stroke = "#444") {
  return "<line x1=\"" + num(x1, 6) + "\" y1=\"" + num(y1, 6) + "\" x2=\"" + num(x2, 6) + "\" y2=\"" +
         num(y2, 6) + "\" stroke=\"" + stroke + "\"/>";
}

// Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) inside
// [lo, hi], at most about `want` of them: 0, 50, 100, not 0, 69.8, 140.
std::vector<double> ticks(double lo, double hi, int want = 8) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / want, unit = std::pow(10.0, std::floor(std::log10(raw)));
  double step = 10 * unit;
  for (double m : {1.0, 2.0, 2.5, 5.0}) {
    if (m * unit >= raw) {
      step = m * unit;
      break;
    }
  }
  std::vector<double> out;
  const double first = std::ceil(lo / step - 1e-9);
  for (int i = 0; (first + i) * step <= hi + 1e-9 * step; ++i) out.push_back((first + i) * step);
  return out;
}

// Two axes with round ticks and their labels (units included by the caller).
std::string axes(const Scale& x, const Scale& y, const std::string& xlabel, const std::string& ylabel) {
  std::string s = svg_line(x.a, y.a, x.b, y.a) + svg_line(x.a, y.a, x.a, y.b);
  for (double vx : ticks(x.lo, x.hi)) {
    s += svg_line(x(vx), y.a, x(vx), y.a + 4) + svg_text(x(vx), y.a + 16, num(vx, 6), "text-anchor=\"middle\"");
  }
  for (double vy : ticks(y.lo, y.hi)) {
    s += svg_line(x.a - 4, y(vy), x.a, y(vy)) + svg_text(x.a - 6, y(vy) + 4, num(vy, 6), "text-anchor=\"end\"");
  }
  s += svg_text((x.a + x.b) / 2, y.a + 32, xlabel, "text-anchor=\"middle\"");
  s += svg_text(14, (y.a + y.b) / 2, ylabel,
                "text-anchor=\"middle\" transform=\"rotate(-90 14 " + num((y.a + y.b) / 2, 6) + ")\"");
  return s;
}

std::string svg(double w, double h, const std::string& body) {
  return "<svg width=\"" + num(w, 6) + "\" height=\"" + num(h, 6) +
         "\" font-family=\"sans-serif\" font-size=\"11\">" + body + "</svg>\n";
}

// Probability 0..1 -> white to dark blue, on a square-root scale: with 16
// candidates an undecided layer sits near 0.06, which a linear scale shows
// as white.
std::string blue(double p) {
  p = std::sqrt(std::min(1.0, std::max(0.0, std::isfinite(p) ? p : 0.0)));
  char buf[16];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", static_cast<int>(247 - p * 239), static_cast<int>(251 - p * 203),
                static_cast<int>(255 - p * 148));
  return buf;
}

// ---- The run, whichever JSON it came as -------------------------------------

struct Run {
  json top;     // the whole input
  json task;    // the task spec
  json report;  // dash_model_info's "report" = the runner's "training"
  json layers = json::array();
  std::string backbone;
};

Run read_run(const json& j) {
  if (!j.is_object() || !(j.contains("training") || j.contains("report"))) {
    throw std::invalid_argument(
        "the report needs a run's record: dash_model_info's JSON (with \"report\") or the runner's --out "
        "file (with \"training\")");
  }
  Run r;
  r.top = j;
  r.report = j.contains("training") ? j["training"] : j["report"];
  if (!r.report.is_object()) throw std::invalid_argument("the run's \"report\"/\"training\" is not an object");
  if (const json* l = at(j, {"architecture", "layers"}); l && l->is_array()) r.layers = *l;
  r.backbone = text(j, {"architecture", "backbone"}, text(r.report, {"backbone"}));
  // bench/results entries keep the spec as "task_spec" and the task's name as "task".
  r.task = j.contains("task") && j["task"].is_object() ? j["task"] : j.value("task_spec", json::object());
  return r;
}

// ---- Sections ----------------------------------------------------------------

std::string section(const std::string& id, const std::string& title, const std::string& body) {
  return "<section id=\"" + id + "\"><h2>" + esc(title) + "</h2>\n" + body + "</section>\n";
}

std::string table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
  // A key/value table (all heads empty) has no head row.
  const bool headed = std::any_of(head.begin(), head.end(), [](const std::string& h) { return !h.empty(); });
  std::string s = "<table>";
  if (headed) {
    s += "<tr>";
    for (const auto& h : head) s += "<th>" + esc(h) + "</th>";
    s += "</tr>\n";
  }
  for (const auto& row : rows) {
    s += "<tr>";
    for (const auto& c : row) s += "<td>" + c + "</td>";  // cells arrive escaped
    s += "</tr>\n";
  }
  return s + "</table>\n";
}

std::string summary(const Run& r) {
  const json& rep = r.report;
  std::vector<std::vector<std::string>> rows = {
      {"task", esc(text(r.task, {"kind"})) + ", input " + esc(text(r.task, {"input_shape"}))},
      {"method", esc(text(r.top, {"method"}, at(rep, {"search", "search"}) ? "dash" : "-"))},
      {"backbone", esc(r.backbone)},
      {"test " + esc(text(rep, {"metric_name"})),
       num(number(rep, {"test_metric"})) + " (" + num(number(rep, {"test_samples"}), 6) + " samples)"},
      {"valid " + esc(text(rep, {"metric_name"})), num(number(rep, {"valid_metric"}))},
      {"wall / budget", std::isfinite(number(r.top, {"wall_s"}))
                            ? num(number(r.top, {"wall_s"})) + " s / " + num(number(r.top, {"budget_s"})) + " s"
                            : "not recorded (the runner's --out file has it)"},
      {"guard", esc(text(rep, {"search", "guard", "chosen"})) + ": " + esc(text(rep, {"search", "guard", "why"}))}};
  if (const json* w = at(rep, {"warm_start"}); w && w->is_object()) {
    const json* trial = at(rep, {"search", "hpo", "trained_trial"});
    std::string from = "random weights";
    if (w->value("used", false)) {
      from = trial ? "the " + esc(text(*trial, {"network"})) + " trial's weights (" +
                         num(number(*trial, {"steps"}), 6) + " steps at lr " + num(number(*trial, {"hp", "lr"})) +
                         (trial->value("second_look", false) ? " in the guard's second look, after its first trial)"
                                                              : ")")
                   : "the search's trial's weights";
    } else if (w->contains("why")) {
      from += " (" + esc(text(*w, {"why"})) + ")";
    }
    rows.push_back({"retrain started from", from});
  }
  std::string s = table({"", ""}, rows);
  if (const json* w = at(rep, {"retrain", "warning"}); w && w->is_string()) {
    s += "<p class=\"warning\">retrain warning: " + esc(w->get<std::string>()) + "</p>\n";
  }
  return section("summary", "Summary", s);
}

// Kernel size picks the hue, dilation the shade (lightness, in percent).
double layer_lightness(int64_t d) {
  return std::max(35.0, 85.0 - 12.0 * std::log2(static_cast<double>(std::max<int64_t>(1, d))));
}

// Text on a layer's colour: white where the shade is dark.
std::string ink(int64_t d) { return layer_lightness(d) < 55 ? "fill=\"#fff\" " : ""; }

std::string layer_colour(int64_t k, int64_t d) {
  const double hue = std::fmod(40.0 * static_cast<double>((k - 3) / 2) + 200.0, 360.0);
  const double light = layer_lightness(d);
  char buf[48];
  std::snprintf(buf, sizeof buf, "hsl(%.0f,65%%,%.0f%%)", hue, light);
  return buf;
}

// The searchable layers in order, one box each.
std::string layer_strip(const std::vector<std::pair<int64_t, int64_t>>& layers) {
  const int per_row = 10;
  const double bw = 86, bh = 58, gap = 8;
  const auto n = static_cast<int>(layers.size());
  const int rows = (n + per_row - 1) / per_row;
  std::string body;
  for (int i = 0; i < n; ++i) {
    const auto [k, d] = layers[static_cast<size_t>(i)];
    const double x = 10 + (i % per_row) * (bw + gap), y = 10 + (i / per_row) * (bh + gap);
    body += svg_rect(x, y, bw, bh, layer_colour(k, d));
    body += svg_text(x + bw / 2, y + 16, "layer " + std::to_string(i), ink(d) + "text-anchor=\"middle\"");
    body += svg_text(x + bw / 2, y + 33, "k" + std::to_string(k) + " d" + std::to_string(d),
                     ink(d) + "text-anchor=\"middle\" font-weight=\"bold\" font-size=\"13\"");
    body += svg_text(x + bw / 2, y + 49, "RF " + std::to_string(d * (k - 1) + 1), ink(d) + "text-anchor=\"middle\"");
  }
  return svg(20 + per_row * (bw + gap), 20 + rows * (bh + gap), body);
}

// The colour key: one swatch per (kernel size, dilation), rows by kernel
// size, columns by dilation.
std::string colour_key(const std::vector<int64_t>& ks, const std::vector<int64_t>& ds) {
  const double w = 44, h = 20, left = 40, top = 18;
  std::string body;
  for (size_t c = 0; c < ds.size(); ++c) {
    body += svg_text(left + w * (static_cast<double>(c) + 0.5), top - 4, "d" + std::to_string(ds[c]),
                     "text-anchor=\"middle\"");
  }
  for (size_t r = 0; r < ks.size(); ++r) {
    const double y = top + h * static_cast<double>(r);
    body += svg_text(left - 6, y + 14, "k" + std::to_string(ks[r]), "text-anchor=\"end\"");
    for (size_t c = 0; c < ds.size(); ++c) {
      body += svg_rect(left + w * static_cast<double>(c) + 1, y + 1, w - 2, h - 2, layer_colour(ks[r], ds[c]));
    }
  }
  return svg(left + w * static_cast<double>(ds.size()) + 10, top + h * static_cast<double>(ks.size()) + 6, body);
}

// Sorted distinct values.
std::vector<int64_t> distinct(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

std::string architecture(const Run& r) {
  if (r.layers.empty()) return section("architecture", "Architecture", missing("no architecture recorded"));
  std::vector<std::pair<int64_t, int64_t>> chosen;
  for (const auto& l : r.layers) {
    chosen.emplace_back(static_cast<int64_t>(number_or(l, {"kernel_size"}, 0)),
                        static_cast<int64_t>(number_or(l, {"dilation"}, 0)));
  }
  std::string s = "<p>" + esc(r.backbone) +
                  ": its searchable convolutions in order, coloured by kernel size (hue) and dilation "
                  "(darker: larger); RF is the receptive field d(k-1)+1 in input positions of that layer.</p>\n";
  s += layer_strip(chosen);
  // Where the guard kept the backbone, what the search had found.
  const json* p = at(r.report, {"search", "search", "probabilities"});
  const json* ks = at(r.report, {"search", "search", "kernel_sizes"});
  const json* ds = at(r.report, {"search", "search", "dilations"});
  const bool space = ks && ds && ks->is_array() && ds->is_array() && !ks->empty() && !ds->empty();
  if (text(r.report, {"search", "guard", "chosen"}) == "backbone" && p && space) {
    std::vector<std::pair<int64_t, int64_t>> found;
    for (const auto& layer : *p) {
      const size_t j = argmax(layer);
      if (j >= ks->size() * ds->size()) continue;  // not this record's candidates
      found.emplace_back(static_cast<int64_t>(number_or((*ks)[j / ds->size()], {}, 0)),
                         static_cast<int64_t>(number_or((*ds)[j % ds->size()], {}, 0)));
    }
    s += "<p>The search's argmax, which the guard did not keep (before the cost limit):</p>\n" + layer_strip(found);
  }
  // The key covers the candidate space where the record has it, else the choices.
  std::vector<int64_t> key_k, key_d;
  for (const auto& [k, d] : chosen) key_k.push_back(k), key_d.push_back(d);
  if (space) {
    for (const auto& k : *ks) key_k.push_back(static_cast<int64_t>(number_or(k, {}, 0)));
    for (const auto& d : *ds) key_d.push_back(static_cast<int64_t>(number_or(d, {}, 0)));
  }
  s += "<p>Colour key: kernel size (rows, hue) by dilation (columns, shade).</p>\n" +
       colour_key(distinct(key_k), distinct(key_d));
  return section("architecture", "Architecture", s);
}

std::string probabilities(const Run& r) {
  const json* ks = at(r.report, {"search", "search", "kernel_sizes"});
  const json* ds = at(r.report, {"search", "search", "dilations"});
  const json* trace = at(r.report, {"search", "search", "trace"});
  const json* final_p = at(r.report, {"search", "search", "probabilities"});
  if (!ks || !ds || !(final_p && final_p->is_array())) {
    return section("probabilities", "Candidate probabilities", missing("no search was recorded (plain backbone)"));
  }
  // Without a trace (records before it was kept), one column: the end.
  const double search_s = std::max(1e-3, std::isfinite(number(r.report, {"search", "search", "seconds"}))
                                             ? number(r.report, {"search", "search", "seconds"})
                                             : 1.0);
  json snaps = json::array();
  if (trace && trace->is_array()) {
    for (const auto& snap : *trace) {
      if (const json* p = at(snap, {"probabilities"}); p && p->is_array()) snaps.push_back(snap);
    }
  }
  const bool traced = !snaps.empty();
  if (!traced) snaps.push_back({{"step", 0}, {"seconds", search_s}, {"probabilities", *final_p}});
  std::vector<std::string> labels;
  for (const auto& k : *ks)
    for (const auto& d : *ds) labels.push_back("k" + k.dump() + "d" + d.dump());
  const double t_end = std::max(1e-9, number_or(snaps.back(), {"seconds"}, 0));
  const double cell_h = 9, plot_w = 220, left = 58;
  const double h = 30 + cell_h * static_cast<double>(labels.size()) + 40;
  std::string s = traced ? "<p>Per layer, each candidate's probability over the search's time (column: a "
                           "snapshot, x: seconds since the search began; white 0, dark blue 1, square-root "
                           "scale).</p>\n"
                         : "<p>Per layer, each candidate's probability at the end of the search (this record "
                           "kept no trace over time; white 0, dark blue 1, square-root scale).</p>\n";
  s += svg(300, 36, svg_text(0, 14, "probability") + [&] {
    std::string bar;
    for (int i = 0; i < 50; ++i) bar += svg_rect(80 + 4 * i, 4, 4, 12, blue(i * i / 2401.0));
    return bar + svg_text(80, 30, "0") + svg_text(130, 30, "0.06", "text-anchor=\"middle\"") +
           svg_text(180, 30, "0.25", "text-anchor=\"middle\"") + svg_text(280, 30, "1", "text-anchor=\"end\"");
  }());
  s += "<div class=\"maps\">";
  const size_t layers = snaps.back()["probabilities"].size();
  for (size_t i = 0; i < layers; ++i) {
    std::string body = svg_text(left, 14, "layer " + std::to_string(i), "font-weight=\"bold\"");
    const Scale x{0, t_end, left, left + plot_w};
    for (size_t c = 0; c < snaps.size(); ++c) {
      const double t0 = c == 0 ? 0 : number_or(snaps[c - 1], {"seconds"}, 0);
      const double t1 = number_or(snaps[c], {"seconds"}, 0);
      const json& all = snaps[c]["probabilities"];
      if (i >= all.size() || !all[i].is_array()) continue;
      const json& p = all[i];
      for (size_t j = 0; j < p.size() && j < labels.size(); ++j) {
        body += svg_rect(x(t0), 22 + cell_h * static_cast<double>(j), std::max(1.0, x(t1) - x(t0)), cell_h,
                         blue(number_or(p[j], {}, 0)));
      }
    }
    for (size_t j = 0; j < labels.size(); ++j) {
      body += svg_text(left - 4, 22 + cell_h * (static_cast<double>(j) + 0.85), labels[j],
                       "text-anchor=\"end\" font-size=\"8\"");
    }
    const double y0 = 22 + cell_h * static_cast<double>(labels.size());
    body += svg_line(left, y0, left + plot_w, y0);
    for (double v : ticks(0, t_end, 4)) {
      body += svg_line(x(v), y0, x(v), y0 + 3) + svg_text(x(v), y0 + 13, num(v, 6), "text-anchor=\"middle\"");
    }
    body += svg_text(left + plot_w / 2, y0 + 26, "search time (s)", "text-anchor=\"middle\"");
    s += svg(left + plot_w + 10, h, body);
  }
  return section("probabilities", "Candidate probabilities", s + "</div>\n");
}

// Points (seconds since the run began, value) of one series.
struct Series {
  std::string name, colour;
  std::vector<std::pair<double, double>> points;
  bool dots = false;
};

std::string plot(const std::vector<Series>& series, double t_end, const std::string& ylabel) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (const auto& s : series)
    for (const auto& [t, v] : s.points)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) return missing("no " + ylabel + " recorded");
  if (hi == lo) hi = lo + 1;
  const Scale x{0, t_end, 60, 760}, y{lo, hi, 210, 30};  // the legend above the plot
  std::string body = axes(x, y, "seconds since the run began", ylabel);
  double legend_x = 70;
  for (const auto& s : series) {
    std::vector<std::pair<double, double>> shown;
    for (const auto& [t, v] : s.points) {
      if (std::isfinite(v)) shown.emplace_back(x(t), y(v));
    }
    if (shown.empty()) continue;
    // A line of one point draws nothing: a lone epoch is a dot, as trials are.
    if (s.dots || shown.size() == 1) {
      for (const auto& [px, py] : shown) {
        body += "<circle cx=\"" + num(px, 6) + "\" cy=\"" + num(py, 6) + "\" r=\"4\" fill=\"" + s.colour + "\"/>";
      }
    } else {
      std::string pts;
      for (const auto& [px, py] : shown) pts += num(px, 6) + "," + num(py, 6) + " ";
      body += "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" + s.colour + "\" points=\"" + pts + "\"/>";
    }
    body += svg_rect(legend_x, 6, 10, 10, s.colour) + svg_text(legend_x + 14, 15, s.name);
    legend_x += 24 + 7.0 * static_cast<double>(s.name.size());
  }
  return svg(780, 250, body);
}

// Per-epoch history entries -> (end time, field) from `start`.
std::vector<std::pair<double, double>> timeline(const json* history, double start, const char* field,
                                                double* end) {
  std::vector<std::pair<double, double>> out;
  double t = start;
  if (history && history->is_array()) {
    for (const auto& e : *history) {
      t += number_or(e, {"seconds"}, 0);
      out.emplace_back(t, number(e, {field}));
    }
  }
  if (end) *end = t;
  return out;
}

std::string curves(const Run& r) {
  const json& rep = r.report;
  const double load = std::isfinite(number(r.top, {"load_s"})) ? number(r.top, {"load_s"}) : 0;
  const double search_start = load + std::max(0.0, std::isfinite(number(rep, {"search", "costs", "seconds"}))
                                                        ? number(rep, {"search", "costs", "seconds"})
                                                        : 0.0);
  const json* sh = at(rep, {"search", "search", "history"});
  double t = search_start;
  Series search_loss{"search loss", "#d62728", timeline(sh, search_start, "train_loss", &t)};
  Series search_valid{"search valid", "#d62728", timeline(sh, search_start, "valid_metric", nullptr)};
  if (std::isfinite(number(rep, {"search", "search", "seconds"}))) {
    t = std::max(t, search_start + number(rep, {"search", "search", "seconds"}));
  }
  Series trials{"grid trials", "#2ca02c", {}, true};
  if (const json* tr = at(rep, {"search", "hpo", "trials"}); tr && tr->is_array()) {
    for (const auto& x : *tr) {
      t += number_or(x, {"seconds"}, 0);
      trials.points.emplace_back(t, number(x, {"valid_metric"}));
    }
  }
  // The retrain starts when the search call returned (the runner says when).
  const double search_call = number(r.top, {"search_s"});
  const double retrain_start = std::isfinite(search_call) ? load + search_call : t;
  const json* rh = at(rep, {"retrain", "history"});
  double t_end = retrain_start;
  Series retrain_loss{"retrain loss", "#1f77b4", timeline(rh, retrain_start, "train_loss", &t_end)};
  Series retrain_valid{"retrain valid", "#1f77b4", timeline(rh, retrain_start, "valid_metric", nullptr)};
  t_end = std::max({t_end, t, 1.0});
  const std::string metric = text(rep, {"metric_name"}, "metric");
  std::string s = "<p>Train loss (mean over each epoch) and the validation " + esc(metric) +
                  " of the search, the guard and grid trials (one point each, at its end) and the retrain.</p>\n";
  s += plot({search_loss, retrain_loss}, t_end, "train loss");
  s += plot({search_valid, trials, retrain_valid}, t_end, "valid " + metric);
  return section("curves", "Loss and metric over time", s);
}

std::string trials(const Run& r) {
  const json* tr = at(r.report, {"search", "hpo", "trials"});
  if (!tr || !tr->is_array() || tr->empty()) return section("trials", "Guard and grid trials", missing("no trials recorded"));
  const json* chosen = at(r.report, {"search", "hpo", "chosen"});
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : *tr) {
    const json* hp_at = at(t, {"hp"});
    const json hp = hp_at ? *hp_at : json::object();
    const std::string network = text(t, {"network"});
    const bool is_chosen = chosen && hp == *chosen && network == text(r.report, {"search", "guard", "chosen"}, network);
    rows.push_back({esc(network), num(number(hp, {"lr"})), num(number(hp, {"momentum"})),
                    num(number(hp, {"weight_decay"})), num(number(hp, {"dropout"})), num(number(t, {"steps"}), 6),
                    num(number(t, {"seconds"})), num(number(t, {"step_ms"})), num(number(t, {"valid_metric"})),
                    is_chosen ? "chosen" : ""});
  }
  return section("trials", "Guard and grid trials",
                 table({"network", "lr", "momentum", "weight decay", "dropout", "steps", "seconds", "ms/step",
                        "valid " + text(r.report, {"metric_name"}, "metric"), ""},
                       rows));
}

std::string costs(const Run& r) {
  const json* nets = at(r.report, {"search", "networks"});
  if (!nets || !nets->is_object() || nets->empty()) return section("costs", "Cost", missing("no network costs recorded"));
  std::vector<std::string> head{""};
  std::vector<std::vector<std::string>> rows{{"parameters"}, {"MACs per sample"}, {"ms per training step (measured)"},
                                             {"ms per training step (estimated)"}, {"ms per inferred sample"}};
  for (const char* name : {"searched", "backbone"}) {
    if (!nets->contains(name)) continue;
    const json& n = (*nets)[name];
    head.push_back(name + std::string(text(r.report, {"search", "guard", "chosen"}) == name ? " (chosen)" : ""));
    // Which measurement a step time is: the grid trials' mean, else the cost model's one timed step.
    const double trials = number(n, {"step_ms_trials"}), once = number(n, {"step_ms_measured"});
    rows[0].push_back(num(number(n, {"params"}), 8));
    rows[1].push_back(num(number(n, {"macs_per_sample"})));
    rows[2].push_back(std::isfinite(trials) ? num(trials) + " (grid trials)"
                      : std::isfinite(once) ? num(once) + " (one timed step)"
                                            : "-");
    rows[3].push_back(num(number(n, {"step_ms_estimated"})));
    rows[4].push_back(num(number(n, {"infer_ms_per_sample"})));
  }
  return section("costs", "Cost: chosen network against the plain backbone",
                 "<p>Measured on the machine that ran the search: training steps over its grid trials (or one "
                 "timed step), inference in eval mode at batch 8; the estimate is the cost model's.</p>\n" +
                     table(head, rows));
}

std::string time_spent(const Run& r) {
  const json& rep = r.report;
  auto finite = [](double v) { return std::isfinite(v) ? std::max(0.0, v) : 0.0; };
  const double load = number(r.top, {"load_s"});  // only the runner's file has it
  const double cost = finite(number(rep, {"search", "costs", "seconds"}));
  const double search = finite(number(rep, {"search", "search", "seconds"}));
  const double hpo = finite(number(rep, {"search", "hpo", "seconds"}));
  const double call = finite(number(rep, {"search", "seconds"}));
  const double retrain = finite(number(rep, {"retrain", "seconds"}));
  const double retrain_call = std::isfinite(number(r.top, {"retrain_s"})) ? finite(number(r.top, {"retrain_s"}))
                                                                         : finite(number(rep, {"seconds"}));
  std::vector<std::pair<std::string, double>> parts = {
      {"loading", load},
      {"cost timing", cost},
      {"supernet search", search},
      {"guard and grid", hpo},
      {"rest of the search call", std::max(0.0, call - cost - search - hpo)},
      {"retrain training", retrain},
      {"retrain evaluation and rest", std::max(0.0, retrain_call - retrain)}};
  double total = 0;
  for (const auto& p : parts) total += std::isfinite(p.second) ? p.second : 0;
  // The runner's wall clock also holds what came between and after the calls.
  if (const double wall = number(r.top, {"wall_s"}); std::isfinite(wall)) {
    parts.emplace_back("rest of the run", std::max(0.0, wall - total));
    total = std::max(total, wall);
  }
  if (total <= 0) return section("time", "Where the time went", missing("no times recorded"));
  const char* colours[] = {"#999", "#9467bd", "#d62728", "#2ca02c", "#ff9896", "#1f77b4", "#aec7e8", "#ddd"};
  std::string bar;
  std::vector<std::vector<std::string>> rows;
  double x = 10;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!std::isfinite(parts[i].second)) {
      rows.push_back({esc(parts[i].first), "not recorded", ""});
      continue;
    }
    const double w = 760 * parts[i].second / total;
    bar += svg_rect(x, 10, w, 30, colours[i]);
    if (w > 34) bar += svg_text(x + w / 2, 30, num(parts[i].second, 3) + " s", "text-anchor=\"middle\"");
    x += w;
    rows.push_back({"<span style=\"color:" + std::string(colours[i]) + "\">&#9632;</span> " + esc(parts[i].first),
                    num(parts[i].second), num(100 * parts[i].second / total, 3) + "%"});
  }
  bar += svg_text(10, 58, "0 s") + svg_text(770, 58, num(total, 4) + " s", "text-anchor=\"end\"");
  return section("time", "Where the time went", svg(780, 64, bar) + table({"stage", "seconds", "share"}, rows));
}

std::string run_info(const Run& r) {
  std::string s = table({"", ""}, {{"library version", esc(text(r.top, {"library_version"}))},
                                   {"commit", esc(text(r.top, {"commit"}))},
                                   {"hyperparameters", esc(text(r.top, {"hyperparameters"}))}});
  s += "<h3>task</h3><pre>" + esc(r.task.dump(2)) + "</pre>\n";
  for (const char* key : {"search_options", "retrain_options"}) {
    if (r.top.contains(key)) s += "<h3>" + esc(key) + "</h3><pre>" + esc(r.top[key].dump(2)) + "</pre>\n";
  }
  return section("run", "Task, options and versions", s);
}

}  // namespace

std::string render_html(const json& input) {
  const Run r = read_run(input);
  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dashnas run report</title>\n"
      "<style>body{font-family:sans-serif;margin:24px;max-width:1100px;color:#222}"
      "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}td:first-child{white-space:nowrap}"
      "th{background:#f3f3f3}.missing{color:#888;font-style:italic}.warning{color:#a60}"
      ".maps{display:flex;flex-wrap:wrap;gap:6px}pre{background:#f7f7f7;padding:8px;overflow-x:auto}"
      "section{margin-bottom:28px}</style></head><body>\n<h1>dashnas run report</h1>\n";
  html += summary(r) + architecture(r) + probabilities(r) + curves(r) + trials(r) + costs(r) + time_spent(r) +
          run_info(r);
  return html + "</body></html>\n";
}

}  // namespace dash::report
