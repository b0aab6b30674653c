// The child processes of the fault-injection tests (test_faults.cpp), each a
// fresh process so that nothing of the parent's thread pools is inherited:
//
//   dashnas_fault_child kill-in-checkpoint DIR
//       retrains with checkpoints in DIR and is killed (SIGKILL) inside the
//       write of its second checkpoint.
//   dashnas_fault_child read-only DIR
//       as an unprivileged user (root drops to nobody), saves over
//       DIR/model.dash and retrains with checkpoints in DIR, a directory it
//       cannot write: both must fail with DASH_IO_ERROR. Exit status 0 when
//       they do.

#include <grp.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "fault_hooks.h"
#include "support.h"

namespace {

using namespace dash_test;

dash_arch* plain_arch(dash_task* task) {
  dash_arch* arch = nullptr;
  if (dash_arch_plain(task, &arch) != DASH_OK) std::fprintf(stderr, "%s\n", dash_last_error());
  return arch;
}

int kill_in_checkpoint(const std::string& dir) {
  dash_task* task = make_task();
  dash_arch* arch = plain_arch(task);
  dash_fault::kill_at_temp_fsync(2);
  dash_model* model = nullptr;
  const dash_status s =
      dash_retrain(task, arch, checkpointed_options(dir, 3, false).c_str(), nullptr, nullptr, &model);
  std::fprintf(stderr, "not killed: dash_retrain returned %s: %s\n", dash_status_name(s),
               dash_last_error());
  return 3;
}

bool io_error(dash_status s, const char* what) {
  const bool ok = s == DASH_IO_ERROR && std::strstr(dash_last_error(), "ermission denied") != nullptr;
  std::fprintf(stderr, "%s: %s: %s%s\n", what, dash_status_name(s), dash_last_error(),
               ok ? "" : "  <-- expected DASH_IO_ERROR, permission denied");
  return ok;
}

int read_only(const std::string& dir) {
  if (geteuid() == 0) {
    // Root writes anywhere: become nobody (65534) so the mode bits apply.
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
      std::perror("dropping root");
      return 2;
    }
  }
  const std::string path = dir + "/model.dash";
  dash_model* model = nullptr;
  if (dash_model_load(path.c_str(), &model) != DASH_OK) {
    std::fprintf(stderr, "cannot load %s: %s\n", path.c_str(), dash_last_error());
    return 2;
  }
  bool ok = io_error(dash_model_save(model, path.c_str()), "dash_model_save");
  dash_task* task = make_task();
  dash_arch* arch = plain_arch(task);
  dash_model* retrained = nullptr;
  ok = io_error(dash_retrain(task, arch, checkpointed_options(dir, 1, false).c_str(), nullptr,
                             nullptr, &retrained),
                "dash_retrain with checkpoints") &&
       ok;
  ok = ok && retrained == nullptr;
  dash_arch_free(arch);
  dash_task_free(task);
  dash_model_free(model);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "kill-in-checkpoint") == 0) return kill_in_checkpoint(argv[2]);
  if (argc == 3 && std::strcmp(argv[1], "read-only") == 0) return read_only(argv[2]);
  std::fprintf(stderr, "usage: %s kill-in-checkpoint|read-only DIR\n", argv[0]);
  return 2;
}
