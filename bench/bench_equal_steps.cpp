// Learning curves at equal steps: a searched architecture against the plain
// backbone, each retrained from random weights for the same epochs (so the
// same steps) on Fashion-MNIST, scored on the whole test set; one JSON line
// per network and epoch count:
//
//   dashnas_bench_equal_steps ARCH.json LR EPOCHS... [-- OPTIONS_JSON]
//
// ARCH.json is an architecture as dash_arch_to_json writes it (bench/results/
// fashion_mnist.json keeps those of the evidence runs). Each epoch count is a
// separate retrain with its own cosine schedule, as a guard trial of that
// length would be. It answers what the guard cannot see: whether a lead after
// a short trial survives a long one. The two networks run one after the other
// with the same threads (option threads, default 1).

#include <dash/dash.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using json = nlohmann::json;

void check(dash_status s, const char* what) {
  if (s != DASH_OK) throw std::runtime_error(std::string(what) + ": " + dash_last_error());
}

std::string take(char* s) {
  std::string out = s ? s : "";
  dash_string_free(s);
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s ARCH.json LR EPOCHS... [-- OPTIONS_JSON]\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) throw std::runtime_error(std::string("cannot read ") + argv[1]);
  const std::string arch_json{std::istreambuf_iterator<char>(in), {}};
  const double lr = std::stod(argv[2]);
  std::vector<int> epochs;
  json options = {{"threads", 1}, {"augment", "shift_flip"}, {"max_train", 10000}, {"seed", 0}};
  for (int i = 3; i < argc; ++i) {
    if (std::string(argv[i]) == "--" && i + 1 < argc) {
      options.update(json::parse(argv[i + 1]));
      break;
    }
    epochs.push_back(std::stoi(argv[i]));
  }
  options["lr"] = lr;
  options["warm_start"] = false;

  const std::string fm = "/usr/share/datasets/fashion-mnist/";
  dash_task* task = nullptr;
  check(dash_task_create(R"({"kind": "classification", "input_shape": [1, 28, 28], "num_classes": 10})", &task),
        "dash_task_create");
  check(dash_task_load_files(task, DASH_SPLIT_TRAIN, (fm + "train-images-idx3-ubyte.gz").c_str(),
                             (fm + "train-labels-idx1-ubyte.gz").c_str()),
        "train");
  check(dash_task_load_files(task, DASH_SPLIT_TEST, (fm + "t10k-images-idx3-ubyte.gz").c_str(),
                             (fm + "t10k-labels-idx1-ubyte.gz").c_str()),
        "test");
  dash_arch* searched = nullptr;
  dash_arch* plain = nullptr;
  check(dash_arch_from_json(arch_json.c_str(), &searched), "dash_arch_from_json");
  check(dash_arch_plain(task, &plain), "dash_arch_plain");
  for (int e : epochs) {
    for (const auto& [name, arch] : {std::pair{"searched", searched}, std::pair{"backbone", plain}}) {
      json o = options;
      o["epochs"] = e;
      dash_model* model = nullptr;
      check(dash_retrain(task, arch, o.dump().c_str(), nullptr, nullptr, &model), "dash_retrain");
      char* info = nullptr;
      char* eval = nullptr;
      check(dash_model_info(model, &info), "dash_model_info");
      check(dash_evaluate(model, task, DASH_SPLIT_TEST, &eval), "dash_evaluate");
      const json retrain = json::parse(take(info))["report"]["retrain"];
      json valid = json::array();
      for (const auto& h : retrain["history"]) valid.push_back(h["valid_metric"]);
      const json line = {{"network", name},
                         {"epochs", e},
                         {"lr", lr},
                         {"steps", retrain["steps_done"]},
                         {"seconds", retrain["seconds"]},
                         {"valid_per_epoch", valid},
                         {"test_accuracy", json::parse(take(eval))["metric"]}};
      std::printf("%s\n", line.dump().c_str());
      std::fflush(stdout);
      dash_model_free(model);
    }
  }
  dash_arch_free(searched);
  dash_arch_free(plain);
  dash_task_free(task);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "dashnas_bench_equal_steps: %s\n", e.what());
  return 1;
}
