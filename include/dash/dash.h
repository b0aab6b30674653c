/* dashnas: the C ABI.
 *
 * dashnas finds kernel sizes and dilations for a convolutional network on your
 * data (DASH: search, a small hyperparameter grid, retrain) and gives you a
 * model to run. Typical use:
 *
 *   dash_task_create(spec_json, &task);
 *   dash_task_load_files(task, DASH_SPLIT_TRAIN, "x.npy", "y.npy");   (or _set_data)
 *   dash_search(task, options_json, progress, user, &arch);
 *   dash_retrain(task, arch, options_json, progress, user, &model);
 *   dash_infer(model, x, n, out, out_len);
 *   dash_model_save(model, "model.dash");
 *
 * Conventions (they hold for every function in this header):
 *  - Names: a function of one kind of handle or value is dash_<kind>_<what>,
 *    the kind (task, arch, model, options, string, status) followed by a verb
 *    for what it does (dash_task_create, dash_model_save, dash_arch_from_json,
 *    dash_string_free) or a noun for what it gives (dash_task_split_size,
 *    dash_model_info, dash_arch_plain, dash_status_name). The pipeline's four
 *    steps are bare verbs: dash_search, dash_retrain, dash_infer, dash_evaluate.
 *    What belongs to the library as a whole is a bare noun: dash_version,
 *    dash_abi_version, dash_last_error. Types are dash_<noun>, constants
 *    DASH_<NOUN>.
 *  - Arguments: handles first, out-parameters last (an output buffer is
 *    followed by its length). A handle the call only reads is const.
 *  - Functions that can fail return dash_status; DASH_OK is 0. On failure,
 *    out-parameters are untouched and dash_last_error() says what went wrong
 *    and what to do. The message is thread-local: read it on the thread that
 *    made the failing call, before that thread calls dash_ again.
 *  - No C++ exception ever crosses this boundary.
 *  - Memory the library returns is freed by the matching dash_ function:
 *    strings by dash_string_free, handles by dash_<kind>_free. Every free
 *    function takes the handle itself and accepts NULL.
 *  - Options are JSON objects passed as strings (NULL or "" means all
 *    defaults). An unknown key or a value of the wrong type is an error that
 *    names the key; dash_options_describe lists every option.
 *  - Threads, per handle, as the implementation guarantees them:
 *    dash_arch is immutable once made: any number of threads may use one at
 *      once (every function takes it as const); only dash_arch_free must come
 *      after every other use has returned.
 *    dash_task: the functions that take it as const only read it (dash_search,
 *      dash_retrain, dash_evaluate, dash_evaluate_with, dash_arch_plain,
 *      dash_task_split_size, dash_task_to_json, dash_task_input_size,
 *      dash_task_target_size) and may run on one task from many threads at
 *      once. dash_task_set_data and dash_task_load_files change it: each
 *      needs the task to itself, with no other call on it running.
 *      dash_task_interrupt may be called from any thread at any time, during
 *      any of these, and from a progress callback. dash_task_free must come
 *      after every other call on the task returned.
 *    dash_model locks itself: every function may run on one model from many
 *      threads at once. dash_model_set_device waits for the calls running on
 *      the model, and holds new ones back, while it moves the weights. Only
 *      dash_model_free must come after every other call on it returned.
 *    Calls are otherwise independent, except for what LibTorch keeps per
 *    process: "threads" in options sets the compute threads for the whole
 *    process, and search and retrain seed LibTorch's global random
 *    generator, so while two run at once (on one task or on two) each is
 *    correct, but its seed no longer makes it reproducible.
 *  - Arrays are C-order float32 unless said otherwise. x holds n samples of
 *    the task's input_shape; y is int64_t class indices for classification and
 *    float32 of the target shape otherwise (see dash_task_create).
 *
 * This header is C99 and self-contained. Functions and struct fields are only
 * ever appended; DASH_ABI_VERSION changes if a released one ever changes.
 */
#ifndef DASH_DASH_H
#define DASH_DASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DASH_VERSION_MAJOR 0
#define DASH_VERSION_MINOR 2
#define DASH_VERSION_PATCH 0
#define DASH_VERSION_STRING "0.2.0"
/* Bumped whenever a released function or struct changes. 2: dash_search,
 * dash_retrain, dash_evaluate and dash_infer take the handles they only read
 * as const (binary compatible; code that declares them itself must follow),
 * and dash_task_interrupt and the size functions at the end were added. */
#define DASH_ABI_VERSION 2

#if defined(DASH_BUILDING_LIBRARY)
#define DASH_API __attribute__((visibility("default")))
#else
#define DASH_API
#endif

/* ---- Status and errors ------------------------------------------------ */

typedef enum dash_status {
  DASH_OK = 0,
  DASH_INVALID_ARGUMENT = 1, /* a NULL, a wrong length or shape, a bad option */
  DASH_IO_ERROR = 2,         /* a file is missing, unreadable or unwritable */
  DASH_BAD_FILE = 3,         /* a file was read but is truncated, corrupted or not ours */
  DASH_CANCELLED = 4,        /* the progress callback or dash_task_interrupt stopped it */
  DASH_UNSUPPORTED = 5,      /* valid, but not available in this build (e.g. CUDA) */
  DASH_OUT_OF_MEMORY = 6,    /* an allocation failed; the library keeps working */
  DASH_INTERNAL = 7          /* a bug in dashnas: please report the message */
} dash_status;

/* A short constant name for a status ("DASH_IO_ERROR"). Never NULL. */
DASH_API const char *dash_status_name(dash_status status);

/* What the last failing call on this thread said; "" if none failed.
 * Never NULL; valid until this thread's next dash_ call. */
DASH_API const char *dash_last_error(void);

/* ---- Version ------------------------------------------------------------ */

/* The library's version, "MAJOR.MINOR.PATCH". Static storage: never free it. */
DASH_API const char *dash_version(void);

/* DASH_ABI_VERSION of the library actually loaded; compare it with the macro
 * to detect a header/library mismatch. */
DASH_API int dash_abi_version(void);

/* ---- Handles -------------------------------------------------------------- */

typedef struct dash_task dash_task;   /* a task spec and its data splits */
typedef struct dash_arch dash_arch;   /* a searched architecture + hyperparameters */
typedef struct dash_model dash_model; /* a trained network, ready to infer */

typedef enum dash_split {
  DASH_SPLIT_TRAIN = 0,
  DASH_SPLIT_VALID = 1, /* optional: carved from train ("valid_fraction") if unset */
  DASH_SPLIT_TEST = 2
} dash_split;

/* ---- Progress ------------------------------------------------------------- */

/* One progress event of a long call. `size` is sizeof(dash_progress) of the
 * library that filled it: fields are only ever appended, so check it before
 * reading a field newer than your header. Strings live for the callback only. */
typedef struct dash_progress {
  size_t size;
  const char *stage;   /* "search", "hpo", "retrain" */
  int64_t epoch;       /* 1-based, within the stage */
  int64_t epochs;      /* planned epochs of the stage */
  int64_t step;        /* 1-based, within the epoch; 0: before the stage's
                          first step, an event that only carries a warning */
  int64_t steps;       /* steps per epoch */
  double loss;         /* running mean training loss of the epoch */
  double metric;       /* latest validation metric; NaN before the first */
  double elapsed_s;    /* seconds since the stage started */
  double eta_s;        /* estimated seconds left in the stage */
  /* Appended within ABI 2 (check size before reading): a warning about
   * the stage, e.g. that its budget affords too few steps to learn much, on
   * the first event after it arose (the same text ends up in the report);
   * NULL on every other event. Also, where a non-finite loss made the stage
   * step back to an earlier epoch's weights (its epoch and step then count
   * again from there, below the last event's), the first event after says so
   * ("...: stepped back to ..."). Valid during the callback only. */
  const char *warning;
} dash_progress;

/* Called after every training step, and once more when an epoch ends, after
 * validation: that event repeats step == steps and carries the new metric.
 * Return 0 to go on; non-zero cancels: the call returns DASH_CANCELLED and
 * frees what it made. The callback runs on the calling thread. It may call
 * what the thread rules above allow alongside the running call (reading its
 * handles, dash_task_interrupt), but must not change or free its handles. */
typedef int (*dash_progress_fn)(const dash_progress *event, void *user_data);

/* ---- Tasks ------------------------------------------------------------------ */

/* spec_json: {"kind": "classification" | "multilabel" | "regression" | "dense",
 *             "input_shape": [channels, length] or [channels, height, width],
 *             "num_classes": N      (classification, multilabel),
 *             "num_outputs": N      (regression: values per sample;
 *                                    dense: channels per position),
 *             "metric": optional    ("accuracy", "macro_auroc", "macro_f1",
 *                                    "relative_l2", "mae", "map"; dense tasks with
 *                                    bce_with_logits default to "map", per position),
 *             "loss": optional      ("cross_entropy", "bce_with_logits", "mse",
 *                                    "relative_l2"),
 *             "pos_weight": optional (bce_with_logits: one weight for every
 *                                    positive; dense tasks without it get
 *                                    negatives / positives of the train split),
 *             "causal": optional    (1D only: outputs see no later positions;
 *                                    default true for dense 1D tasks, else false)}
 * Targets: classification y is int64_t [n] in [0, num_classes); multilabel y
 * is float [n, num_classes] of 0/1; regression y is float [n, num_outputs];
 * dense y is float [n, num_outputs, spatial...] with the input's spatial shape. */
DASH_API dash_status dash_task_create(const char *spec_json, dash_task **out);

/* Copies n samples into a split, replacing what it held. x has n * prod(input_shape)
 * floats (dash_task_input_size); y has n targets as above (dash_task_target_size
 * values each). Rejects NaN/Inf, labels out of range, n < 1. */
DASH_API dash_status dash_task_set_data(dash_task *task, dash_split split, const float *x,
                                        const void *y, int64_t n);

/* Loads a split from files: .npy (float32, float64, uint8, int64; C order),
 * .idx or .idx.gz (as Fashion-MNIST ships). Same checks as dash_task_set_data. */
DASH_API dash_status dash_task_load_files(dash_task *task, dash_split split, const char *x_path,
                                          const char *y_path);

/* Number of samples a split holds (0 if unset). */
DASH_API dash_status dash_task_split_size(const dash_task *task, dash_split split, int64_t *out);

/* The task spec with defaults filled in, as JSON. Free with dash_string_free. */
DASH_API dash_status dash_task_to_json(const dash_task *task, char **json_out);

DASH_API void dash_task_free(dash_task *task);

/* ---- Search ----------------------------------------------------------------- */

/* DASH's search on the task's train split (validating on valid), then the
 * hyperparameter grid (option "hpo"). Needs train; valid is carved from train
 * if unset. progress may be NULL. See dash_options_describe for options. */
DASH_API dash_status dash_search(const dash_task *task, const char *options_json,
                                 dash_progress_fn progress, void *user_data, dash_arch **out);

/* {"backbone": ..., "layers": [{"kernel_size": k, "dilation": d}, ...],
 *  "hyperparameters": {"lr", "momentum", "weight_decay", "dropout"}} */
DASH_API dash_status dash_arch_to_json(const dash_arch *arch, char **json_out);
/* The inverse; "hyperparameters" may be left out (defaults then). */
DASH_API dash_status dash_arch_from_json(const char *json, dash_arch **out);
/* The plain backbone for a task (k=3, d=1 everywhere): the baseline DASH beats. */
DASH_API dash_status dash_arch_plain(const dash_task *task, dash_arch **out);
DASH_API void dash_arch_free(dash_arch *arch);

/* ---- Retrain, infer, evaluate ------------------------------------------------ */

/* Trains the discrete network `arch` on train and ends with the last
 * epoch's weights, or with an earlier epoch's where those validated better
 * by more than two standard errors over folds of valid (report:
 * retrain.kept_epoch, kept_why). An arch from dash_search also holds the weights its
 * winning guard or grid trial trained, and the retrain starts from them
 * (option "warm_start"; the record's report.warm_start says whether it did);
 * dash_arch_to_json does not carry them. Options as for dash_search (see
 * dash_options_describe). */
DASH_API dash_status dash_retrain(const dash_task *task, const dash_arch *arch,
                                  const char *options_json, dash_progress_fn progress,
                                  void *user_data, dash_model **out);

/* Values dash_infer writes per sample: num_classes (classification and
 * multilabel logits), num_outputs (regression), num_outputs * prod(spatial) (dense).
 * dash_model_input_size (below) gives the floats it reads per sample. */
DASH_API dash_status dash_model_output_size(const dash_model *model, int64_t *out);

/* Runs n samples (raw, as given to the task: the model normalises them).
 * x holds n * dash_model_input_size floats; out_len must equal
 * n * dash_model_output_size. Safe from many threads.
 * Samples go through the network in chunks of 256: results are bit-identical
 * for the same n, and may differ in the last bit between different n. */
DASH_API dash_status dash_infer(const dash_model *model, const float *x, int64_t n, float *out,
                                int64_t out_len);

/* Loss and metric of the model on a split of a task with the same spec:
 * {"split", "samples", "loss", "metric_name", "metric", "higher_is_better"}.
 * Free with dash_string_free. */
DASH_API dash_status dash_evaluate(const dash_model *model, const dash_task *task,
                                   dash_split split, char **report_json);

/* dash_evaluate with options (added within ABI version 2); options_json NULL,
 * "" or "{}" is exactly dash_evaluate. It takes the options whose "used_by"
 * in dash_options_describe lists "evaluate": threads (0: as the process has
 * them), device ("auto": where the model is; "cpu" or "cuda" must name that
 * place, see dash_model_set_device) and the data-parallel ones, world_size,
 * rank, init, dist_backend, dist_timeout_s, data_sharded. Any other option is
 * DASH_INVALID_ARGUMENT naming it. With world_size > 1 every rank calls it
 * with the same task spec, split and model, and either the whole split (rank
 * r scores rows r, r + world_size, ...) or, with data_sharded, its own rows;
 * every rank returns the same report over all ranks' rows ("samples" is their
 * total) with "distributed": {"world_size", "rank", "backend",
 * "data_sharded"}. A rank that fails, never comes or was given other work
 * makes the others fail too (DASH_IO_ERROR or DASH_INVALID_ARGUMENT) within
 * dist_timeout_s. dash_task_interrupt stops it as it stops dash_evaluate.
 * Free the report with dash_string_free. */
DASH_API dash_status dash_evaluate_with(const dash_model *model, const dash_task *task,
                                        dash_split split, const char *options_json,
                                        char **report_json);

/* Task spec, architecture, hyperparameters, normaliser, training report and
 * library version of a model, as JSON. Free with dash_string_free. */
DASH_API dash_status dash_model_info(const dash_model *model, char **json_out);

/* One self-describing file (magic, format version, metadata, weights,
 * checksum), written atomically: an existing file is replaced only whole.
 * Missing parent directories are created. */
DASH_API dash_status dash_model_save(const dash_model *model, const char *path);
DASH_API dash_status dash_model_load(const char *path, dash_model **out);
/* Where dash_infer and dash_evaluate compute: "cpu" (where every model starts,
 * trained or loaded), "cuda" (DASH_UNSUPPORTED without a CUDA build and a GPU)
 * or "auto" (CUDA where it can run). Inputs and outputs stay in host memory.
 * Waits for calls using the model on other threads to finish. */
DASH_API dash_status dash_model_set_device(dash_model *model, const char *device);
DASH_API void dash_model_free(dash_model *model);

/* ---- Options and strings ------------------------------------------------------- */

/* Every option: {"name": {"type", "default", "used_by": ["search", "retrain"],
 * "help"}, ...}. Free with dash_string_free. */
DASH_API dash_status dash_options_describe(char **json_out);

DASH_API void dash_string_free(char *str);

/* ---- Added in ABI version 2: sizes, interrupting -------------------------------- */

/* Floats one input sample holds: prod(input_shape). x of dash_task_set_data
 * holds n of them. */
DASH_API dash_status dash_task_input_size(const dash_task *task, int64_t *out);

/* Values one target holds in y of dash_task_set_data: 1 for classification
 * (one int64_t class index), num_classes for multilabel, num_outputs for
 * regression, num_outputs * prod(spatial) for dense (all float). */
DASH_API dash_status dash_task_target_size(const dash_task *task, int64_t *out);

/* Floats one input sample of the model's task holds: prod(input_shape), what
 * dash_infer reads per sample. */
DASH_API dash_status dash_model_input_size(const dash_model *model, int64_t *out);

/* Stops the dash_search, dash_retrain and dash_evaluate(_with) calls running
 * on the task when it is called: each returns DASH_CANCELLED, out-parameters
 * untouched, having freed what it made ("interrupted by dash_task_interrupt").
 * Search and retrain stop at their next training step (or before training if
 * they are still preparing the data); an evaluation they are in, and
 * dash_evaluate(_with), which has no steps, finishes its pass first. Calls
 * that start after it returns are not affected; a call about to return may
 * still succeed.
 * Thread-safe: any thread may call it at any time while the task exists,
 * progress callbacks included (not a signal handler: set a flag there and
 * call it from a thread). Fails only for a NULL task. */
DASH_API dash_status dash_task_interrupt(const dash_task *task);

/* ---- Added within ABI version 2: the run report and its record ------------ */

/* One self-contained HTML page (inline CSS and SVG; it fetches nothing) that
 * shows a run: the chosen kernel size and dilation of every searchable layer,
 * the candidates' probabilities over the search's time, loss and metric over
 * the run, the guard and grid trials, the chosen network's cost against the
 * plain backbone, where the time went, and the task and options. run_json is
 * the text dash_model_info returned, or the runner's --out file; a record
 * without some part (a plain backbone has no search) says so in that
 * section. Not a run's record: DASH_INVALID_ARGUMENT. Free with
 * dash_string_free. */
DASH_API dash_status dash_report_html(const char *run_json, char **html_out);

/* What the search that made arch recorded, before any retrain:
 * {"architecture": <dash_arch_to_json>, "report": {"search": {...}}} ("report"
 * is {} for an arch made by dash_arch_from_json or dash_arch_plain). The
 * fields are README's "What the record holds"; dash_report_html takes this
 * JSON too. Free with dash_string_free. */
DASH_API dash_status dash_arch_info(const dash_arch *arch, char **json_out);

/* ---- Added within ABI version 2: ONNX export ----------------------------------- */

/* Writes the model as an ONNX file (atomically; missing parent directories
 * are created) that computes what dash_infer does: input "input" [batch,
 * input_shape...], output "output" [batch, num_outputs] or, dense, [batch,
 * num_outputs, spatial...], float32. Checked with ONNX's checker and strict
 * shape inference before it is written; metadata properties carry the task,
 * architecture, normaliser and library version. options_json (NULL or "" for
 * the defaults): {"opset": 13 (11 to 17), "dynamic_batch": true,
 * "batch_size": 1 (the fixed batch, with "dynamic_batch": false),
 * "normalize_input": true (false: the caller feeds (x - mean) / std, the
 * "normalizer" property)}. A bad option: DASH_INVALID_ARGUMENT naming it. */
DASH_API dash_status dash_model_export_onnx(const dash_model *model, const char *path,
                                            const char *options_json);

#ifdef __cplusplus
}
#endif

#endif /* DASH_DASH_H */
