// The run report as a user gets it: a real (tiny) search and retrain through
// the C ABI, its record from dash_model_info, the page from dash_report_html.
// The page is checked against the record it was made from.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>

#include "support.h"
#include "dash/dash.h"

namespace {

using namespace dash_test;
using json = nlohmann::json;

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

std::string render(const json& run) {
  char* html = nullptr;
  EXPECT_EQ(dash_report_html(run.dump().c_str(), &html), DASH_OK) << dash_last_error();
  return take(html);
}

// One search (with the guard and a grid) and retrain, shared by the tests:
// the arch's record (dash_arch_info) and the model's (dash_model_info).
struct Records {
  json arch, model;
};

const Records& records() {
  static const Records r = [] {
    dash_task* task = make_task();
    dash_arch* arch = nullptr;
    EXPECT_EQ(dash_search(task, R"({"epochs": 2, "hpo": true, "hpo_epochs": 1, "threads": 1, "batch_size": 16})",
                          nullptr, nullptr, &arch),
              DASH_OK)
        << dash_last_error();
    dash_model* model = nullptr;
    EXPECT_EQ(dash_retrain(task, arch, kRetrainOptions, nullptr, nullptr, &model), DASH_OK) << dash_last_error();
    char* arch_text = nullptr;
    EXPECT_EQ(dash_arch_info(arch, &arch_text), DASH_OK) << dash_last_error();
    char* text = nullptr;
    EXPECT_EQ(dash_model_info(model, &text), DASH_OK) << dash_last_error();
    dash_model_free(model);
    dash_arch_free(arch);
    dash_task_free(task);
    return Records{json::parse(take(arch_text)), json::parse(take(text))};
  }();
  return r;
}

const json& model_info() { return records().model; }

// Exactly the cell text the report writes for a number (4 significant digits).
std::string cell(double v, int digits = 4) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return "<td>" + std::string(buf) + "</td>";
}

TEST(Report, EverySectionIsThereAndItsNumbersAreTheRecords) {
  const json& info = model_info();
  const std::string html = render(info);
  for (const char* id : {"summary", "architecture", "probabilities", "curves", "trials", "costs", "time", "run"}) {
    EXPECT_NE(html.find("<section id=\"" + std::string(id) + "\">"), std::string::npos) << id;
  }
  // Each layer's choice and receptive field, in order.
  size_t from = html.find("<section id=\"architecture\">");
  for (const auto& layer : info["architecture"]["layers"]) {
    const int k = layer["kernel_size"], d = layer["dilation"];
    from = html.find(">k" + std::to_string(k) + " d" + std::to_string(d) + "<", from);
    ASSERT_NE(from, std::string::npos) << layer.dump();
    EXPECT_NE(html.find(">RF " + std::to_string(d * (k - 1) + 1) + "<", from), std::string::npos);
  }
  const json& report = info["report"];
  const std::string test_cell = cell(report["test_metric"].get<double>());  // "<td>0.9</td>"
  EXPECT_NE(html.find(test_cell.substr(0, test_cell.size() - 5) + " (" +
                      std::to_string(report["test_samples"].get<int64_t>()) + " samples)"),
            std::string::npos);
  // Where the retrain started: the trial that chose the network.
  ASSERT_EQ(report["warm_start"]["used"], true) << report["warm_start"].dump();
  const json& trained = report["search"]["hpo"]["trained_trial"];
  EXPECT_NE(html.find("<td>the " + trained["network"].get<std::string>() + " trial's weights (" +
                      std::to_string(trained["steps"].get<int64_t>()) + " steps at lr "),
            std::string::npos);
  // One table row per trial, and each network's parameter count.
  const std::string trials = html.substr(html.find("<section id=\"trials\">"));
  EXPECT_EQ(count(trials.substr(0, trials.find("</section>")), "<tr>"), report["search"]["hpo"]["trials"].size() + 1);
  for (const auto& [name, net] : report["search"]["networks"].items()) {
    EXPECT_NE(html.find(cell(net["params"].get<double>(), 8)), std::string::npos) << name;
  }
  // One heat map per layer, over the trace the search kept; a second strip
  // (the search's argmax) where the guard kept the backbone.
  ASSERT_TRUE(report["search"]["search"].contains("trace"));
  const size_t strips = report["search"]["guard"].value("chosen", "") == "backbone" ? 2 : 1;
  EXPECT_EQ(count(html, ">layer "), (strips + 1) * info["architecture"]["layers"].size());
  // Self-contained and well formed enough to open anywhere.
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(count(html, "<svg"), count(html, "</svg>"));
  EXPECT_EQ(count(html, "<section"), count(html, "</section>"));
}

TEST(Report, TheRunnersResultRendersWithItsRunFields) {
  const json& info = model_info();
  json run = {{"task", info["task"]},
              {"method", "dash"},
              {"architecture", info["architecture"]},
              {"hyperparameters", info["hyperparameters"]},
              {"wall_s", 12.5},
              {"load_s", 0.25},
              {"search_s", 7.0},
              {"retrain_s", 5.0},
              {"budget_s", 13},
              {"commit", "abc1234"},
              {"library_version", dash_version()},
              {"search_options", {{"note", "<script>alert(1)</script>"}}},
              {"training", info["report"]}};
  const std::string html = render(run);
  EXPECT_NE(html.find("12.5 s / 13 s"), std::string::npos);
  EXPECT_NE(html.find("abc1234"), std::string::npos);
  EXPECT_EQ(html.find("<script>alert(1)"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
}

TEST(Report, APlainBackboneSaysThereWasNoSearch) {
  json info = model_info();
  info["report"]["search"].erase("search");
  info["report"]["search"].erase("networks");
  const std::string html = render(info);
  EXPECT_NE(html.find("no search was recorded"), std::string::npos);
  EXPECT_NE(html.find("no network costs recorded"), std::string::npos);
}

// The search's record is there before any retrain, the same as the model
// carries later, and renders on its own.
TEST(Report, TheArchCarriesItsSearchsRecord) {
  const Records& r = records();
  EXPECT_EQ(r.arch["report"]["search"], r.model["report"]["search"]);
  EXPECT_EQ(r.arch["architecture"]["layers"], r.model["architecture"]["layers"]);
  const std::string html = render(r.arch);
  EXPECT_NE(html.find("<section id=\"probabilities\">"), std::string::npos);
  EXPECT_EQ(html.find("no search was recorded"), std::string::npos);
  // A plain arch was not searched: its report is empty.
  dash_task* task = make_task(8);
  dash_arch* plain = nullptr;
  ASSERT_OK(dash_arch_plain(task, &plain));
  char* text = nullptr;
  ASSERT_OK(dash_arch_info(plain, &text));
  EXPECT_EQ(json::parse(take(text))["report"], json::object());
  EXPECT_STATUS(dash_arch_info(nullptr, &text), DASH_INVALID_ARGUMENT, "arch");
  dash_arch_free(plain);
  dash_task_free(task);
}

// The colour key names every candidate kernel size (rows) and dilation (columns).
TEST(Report, TheArchitectureHasAColourKeyOfTheCandidateSpace) {
  const json& info = model_info();
  const std::string html = render(info);
  const size_t begin = html.find("<section id=\"architecture\">");
  const std::string arch = html.substr(begin, html.find("</section>", begin) - begin);
  ASSERT_NE(arch.find("Colour key"), std::string::npos);
  const json& search = info["report"]["search"]["search"];
  for (const auto& k : search["kernel_sizes"]) EXPECT_NE(arch.find(">k" + k.dump() + "<"), std::string::npos) << k;
  for (const auto& d : search["dilations"]) EXPECT_NE(arch.find(">d" + d.dump() + "<"), std::string::npos) << d;
}

// A record with pieces of the wrong type or size (a hand-edited file) still
// renders: each section shows what it can, and nothing reads out of range.
TEST(Report, AMangledRecordRendersWhatItHas) {
  json info = model_info();
  json& search = info["report"]["search"];
  search["guard"]["chosen"] = "backbone";  // draws the search's argmax as well
  search["search"]["probabilities"][0] = json::array();
  std::vector<double> too_many(99, 0.0);  // more candidates than the space, the largest past its end
  too_many.back() = 1.0;
  search["search"]["probabilities"].push_back(too_many);
  search["search"]["probabilities"].push_back("not a layer");
  search["search"]["trace"] = {1, {{"seconds", "late"}, {"probabilities", "none"}},
                               {{"seconds", 1.0}, {"probabilities", {{"x", 0.5}}}}};
  search["search"]["history"] = {3, {{"seconds", "long"}, {"train_loss", "low"}}};
  search["hpo"]["trials"].push_back("a trial");
  search["hpo"]["trials"].push_back({{"hp", 2}, {"network", 7}, {"seconds", "x"}});
  info["architecture"]["layers"].push_back({{"kernel_size", "five"}});
  char* html = nullptr;
  ASSERT_OK(dash_report_html(info.dump().c_str(), &html));
  const std::string page = take(html);
  for (const char* id : {"summary", "architecture", "probabilities", "curves", "trials", "costs", "time", "run"}) {
    EXPECT_NE(page.find("<section id=\"" + std::string(id) + "\">"), std::string::npos) << id;
  }
  EXPECT_EQ(count(page, "<svg"), count(page, "</svg>"));
}

// A stage of one epoch (a short search) is drawn as a dot: a line through one
// point would show nothing.
TEST(Report, ALoneEpochIsDrawnAsADot) {
  json info = model_info();
  info["report"]["search"].erase("hpo");
  info["report"].erase("retrain");
  info["report"]["search"]["search"]["history"] = {{{"epoch", 1}, {"seconds", 2.0}, {"train_loss", 1.5}}};
  const std::string html = render(info);
  const size_t begin = html.find("<section id=\"curves\">");
  const std::string curves = html.substr(begin, html.find("</section>", begin) - begin);
  EXPECT_EQ(count(curves, "<circle"), 1u);
  EXPECT_EQ(count(curves, "<polyline"), 0u);
}

TEST(Report, WhatIsNotARunsRecordIsRefused) {
  char* html = reinterpret_cast<char*>(0x1);
  EXPECT_STATUS(dash_report_html("{not json", &html), DASH_INVALID_ARGUMENT, "not valid JSON");
  EXPECT_STATUS(dash_report_html("[1, 2]", &html), DASH_INVALID_ARGUMENT, "dash_model_info");
  EXPECT_STATUS(dash_report_html(R"({"task": {}})", &html), DASH_INVALID_ARGUMENT, "\"training\"");
  EXPECT_EQ(html, reinterpret_cast<char*>(0x1));  // untouched
  EXPECT_STATUS(dash_report_html(nullptr, &html), DASH_INVALID_ARGUMENT, "run_json");
  EXPECT_STATUS(dash_report_html("{}", nullptr), DASH_INVALID_ARGUMENT, "html_out");
}

}  // namespace
