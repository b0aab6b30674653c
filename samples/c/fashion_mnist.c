/* dashnas from C: search -> retrain -> save -> load -> infer on Fashion-MNIST.
 *
 *   dashnas_sample_c [--budget SECONDS] [--max-train N] [--threads N] [--data DIR] [--model PATH]
 *
 * Reads Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist),
 * spends 40% of the budget searching and 60% retraining, prints the found
 * architecture and the test accuracy, then checks that the saved and reloaded
 * model gives the same logits as the one in memory. */
#include <dash/dash.h>

#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CHECK(call)                                                                   \
  do {                                                                                \
    dash_status status_ = (call);                                                     \
    if (status_ != DASH_OK) {                                                         \
      fprintf(stderr, "%s failed: %s: %s\n", #call, dash_status_name(status_),        \
              dash_last_error());                                                     \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

/* One line per finished epoch, and the stage's warning when it comes. */
static int on_progress(const dash_progress *e, void *user_data) {
  (void)user_data;
  if (e->size >= offsetof(dash_progress, warning) + sizeof e->warning && e->warning != NULL) {
    printf("warning: %s\n", e->warning);
  }
  if (e->step == e->steps) {
    printf("[%s] epoch %lld/%lld loss %.4f valid %.4f elapsed %.0fs\n", e->stage,
           (long long)e->epoch, (long long)e->epochs, e->loss, e->metric, e->elapsed_s);
    fflush(stdout);
  }
  return 0; /* non-zero would cancel */
}

/* The first n items of an IDX .gz file (unsigned bytes), after its header. */
static unsigned char *read_idx_gz(const char *path, int header_bytes, size_t n) {
  gzFile f = gzopen(path, "rb");
  unsigned char header[16];
  unsigned char *data = malloc(n);
  if (f == NULL || data == NULL || gzread(f, header, (unsigned)header_bytes) != header_bytes ||
      gzread(f, data, (unsigned)n) != (int)n) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(1);
  }
  gzclose(f);
  return data;
}

int main(int argc, char **argv) {
  double budget = 60;
  long max_train = 2000, threads = 2;
  const char *data = "/usr/share/datasets/fashion-mnist";
  const char *model_path = "fashion_mnist.dash";
  int i;
  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--budget") == 0) budget = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--max-train") == 0) max_train = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--threads") == 0) threads = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--data") == 0) data = argv[i + 1];
    else if (strcmp(argv[i], "--model") == 0) model_path = argv[i + 1];
    else { fprintf(stderr, "unknown argument %s\n", argv[i]); return 2; }
  }
  printf("dashnas %s, budget %.0f s, %ld training images, %ld threads\n", dash_version(), budget,
         max_train, threads);

  char x_train[512], y_train[512], x_test[512], y_test[512];
  snprintf(x_train, sizeof x_train, "%s/train-images-idx3-ubyte.gz", data);
  snprintf(y_train, sizeof y_train, "%s/train-labels-idx1-ubyte.gz", data);
  snprintf(x_test, sizeof x_test, "%s/t10k-images-idx3-ubyte.gz", data);
  snprintf(y_test, sizeof y_test, "%s/t10k-labels-idx1-ubyte.gz", data);

  dash_task *task = NULL;
  CHECK(dash_task_create(
      "{\"kind\": \"classification\", \"input_shape\": [1, 28, 28], \"num_classes\": 10}", &task));
  CHECK(dash_task_load_files(task, DASH_SPLIT_TRAIN, x_train, y_train));
  CHECK(dash_task_load_files(task, DASH_SPLIT_TEST, x_test, y_test));

  char options[256];
  snprintf(options, sizeof options,
           "{\"time_budget_s\": %.1f, \"max_train\": %ld, \"threads\": %ld, \"seed\": 0}",
           0.4 * budget, max_train, threads);
  dash_arch *arch = NULL;
  CHECK(dash_search(task, options, on_progress, NULL, &arch));
  char *arch_json = NULL;
  CHECK(dash_arch_to_json(arch, &arch_json));
  printf("architecture: %s\n", arch_json);
  dash_string_free(arch_json);

  snprintf(options, sizeof options,
           "{\"time_budget_s\": %.1f, \"max_train\": %ld, \"threads\": %ld, \"seed\": 0}",
           0.6 * budget, max_train, threads);
  dash_model *model = NULL;
  CHECK(dash_retrain(task, arch, options, on_progress, NULL, &model));
  char *report = NULL;
  CHECK(dash_evaluate(model, task, DASH_SPLIT_TEST, &report));
  printf("test: %s\n", report);
  dash_string_free(report);

  CHECK(dash_model_save(model, model_path));
  /* The run report: the record dash_model_info returns, as one HTML page. */
  char *info = NULL, *html = NULL;
  CHECK(dash_model_info(model, &info));
  CHECK(dash_report_html(info, &html));
  char report_path[4096];
  snprintf(report_path, sizeof report_path, "%s.html", model_path);
  FILE *page = fopen(report_path, "w");
  if (page == NULL || fputs(html, page) < 0 || fclose(page) != 0) {
    fprintf(stderr, "cannot write %s\n", report_path);
    return 1;
  }
  printf("report: %s\n", report_path);
  dash_string_free(html);
  dash_string_free(info);
  dash_model *loaded = NULL;
  CHECK(dash_model_load(model_path, &loaded));

  /* Raw pixels 0..255 as floats: the model normalises its inputs itself. */
  enum { N = 100, PIXELS = 28 * 28, CLASSES = 10 };
  unsigned char *pixels = read_idx_gz(x_test, 16, (size_t)N * PIXELS);
  unsigned char *labels = read_idx_gz(y_test, 8, N);
  float *x = malloc(sizeof(float) * N * PIXELS);
  float *a = malloc(sizeof(float) * N * CLASSES);
  float *b = malloc(sizeof(float) * N * CLASSES);
  if (x == NULL || a == NULL || b == NULL) return 1;
  for (i = 0; i < N * PIXELS; ++i) x[i] = (float)pixels[i];
  CHECK(dash_infer(model, x, N, a, N * CLASSES));
  CHECK(dash_infer(loaded, x, N, b, N * CLASSES));
  int same = memcmp(a, b, sizeof(float) * N * CLASSES) == 0, correct = 0;
  for (i = 0; i < N; ++i) {
    int c, best = 0;
    for (c = 1; c < CLASSES; ++c)
      if (b[i * CLASSES + c] > b[i * CLASSES + best]) best = c;
    correct += best == labels[i];
  }
  printf("saved to %s; reloaded model gives %s logits; accuracy on the first %d test images: %.2f\n",
         model_path, same ? "identical" : "DIFFERENT", N, correct / (double)N);

  free(x); free(a); free(b); free(pixels); free(labels);
  dash_model_free(loaded);
  dash_model_free(model);
  dash_arch_free(arch);
  dash_task_free(task);
  return same ? 0 : 1;
}
