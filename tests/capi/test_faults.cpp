// Fault injection: the disk fills or the directory is read-only while a model
// or a checkpoint is saved, the process is killed inside a checkpoint write,
// an allocation fails. After each, the previous files are intact, the library
// reports a status that says what happened, and it keeps working.

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "fault_hooks.h"
#include "support.h"

namespace {

using namespace dash_test;
namespace fs = std::filesystem;

// Lowers this process's file size limit for its lifetime. A write past it
// fails with EFBIG, as a write to a full disk fails with ENOSPC: the same
// path through the library, with no disk to fill. SIGXFSZ, which would kill
// the process instead, is ignored meanwhile.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = signal(SIGXFSZ, SIG_IGN);
    rlimit lowered = saved_;
    lowered.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lowered);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  sighandler_t old_handler_;
};

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// Runs the fault child (fault_child.cpp) and returns its wait status.
int run_child(const char* mode, const std::string& dir) {
  const pid_t pid = fork();
  if (pid == 0) {
    execl(DASH_FAULT_CHILD, DASH_FAULT_CHILD, mode, dir.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

dash_arch* plain_arch(dash_task* task) {
  dash_arch* arch = nullptr;
  EXPECT_EQ(dash_arch_plain(task, &arch), DASH_OK) << dash_last_error();
  return arch;
}

TEST(Fault, DiskFullWhileSavingKeepsThePreviousModelAndCheckpoint) {
  dash_task* task = make_task();
  dash_arch* arch = plain_arch(task);
  const std::string dir = scratch("full");
  const std::string path = dir + "/model.dash";
  dash_model* model = nullptr;
  ASSERT_OK(dash_retrain(task, arch, checkpointed_options(dir, 1, false).c_str(), nullptr, nullptr,
                         &model));
  ASSERT_OK(dash_model_save(model, path.c_str()));
  const std::string model_before = read_all(path);
  const std::string ckpt_before = read_all(dir + "/retrain.ckpt");
  ASSERT_GT(model_before.size(), 2048u);
  ASSERT_GT(ckpt_before.size(), 2048u);
  const auto files_before = files_in(dir);
  {
    FileSizeLimit full(1024);
    EXPECT_STATUS(dash_model_save(model, path.c_str()), DASH_IO_ERROR, "File too large");
    dash_model* none = nullptr;
    EXPECT_STATUS(dash_retrain(task, arch, checkpointed_options(dir, 2, false).c_str(), nullptr,
                               nullptr, &none),
                  DASH_IO_ERROR, "retrain.ckpt");
    EXPECT_EQ(none, nullptr);
  }
  EXPECT_EQ(read_all(path), model_before);
  EXPECT_EQ(read_all(dir + "/retrain.ckpt"), ckpt_before);
  EXPECT_EQ(files_in(dir), files_before) << "a temporary file was left behind";
  // And with room again, both work.
  ASSERT_OK(dash_model_save(model, path.c_str()));
  dash_model* loaded = nullptr;
  ASSERT_OK(dash_model_load(path.c_str(), &loaded));
  dash_model_free(loaded);
  dash_model_free(model);
  dash_arch_free(arch);
  dash_task_free(task);
}

TEST(Fault, ReadOnlyDirectoryKeepsThePreviousModelAndCheckpoint) {
  char tmpl[] = "/tmp/dash_readonly_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  dash_task* task = make_task();
  dash_arch* arch = plain_arch(task);
  dash_model* model = nullptr;
  ASSERT_OK(dash_retrain(task, arch, checkpointed_options(dir, 1, false).c_str(), nullptr, nullptr,
                         &model));
  ASSERT_OK(dash_model_save(model, (dir + "/model.dash").c_str()));
  const std::string model_before = read_all(dir + "/model.dash");
  const std::string ckpt_before = read_all(dir + "/retrain.ckpt");
  const auto files_before = files_in(dir);
  ASSERT_EQ(chmod(dir.c_str(), 0555), 0);
  const int status = run_child("read-only", dir);
  chmod(dir.c_str(), 0755);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the child's saves did not both fail with DASH_IO_ERROR (see its output); wait status "
      << status;
  EXPECT_EQ(read_all(dir + "/model.dash"), model_before);
  EXPECT_EQ(read_all(dir + "/retrain.ckpt"), ckpt_before);
  EXPECT_EQ(files_in(dir), files_before);
  fs::remove_all(dir);
  dash_model_free(model);
  dash_arch_free(arch);
  dash_task_free(task);
}

int record_first_epoch(const dash_progress* e, void* user) {
  auto* first = static_cast<int64_t*>(user);
  if (*first == 0) *first = e->epoch;
  return 0;
}

TEST(Fault, KilledInsideACheckpointWriteResumesToTheSameModel) {
  const std::string dir = scratch("killed");
  const int status = run_child("kill-in-checkpoint", dir);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child was not killed inside its checkpoint write; wait status " << status;
  // Killed after writing the second checkpoint's bytes, before renaming them:
  // the first checkpoint is what a resume finds.
  bool temp_left = false;
  for (const auto& name : files_in(dir)) temp_left = temp_left || name.find(".tmp.") != std::string::npos;
  EXPECT_TRUE(temp_left) << "the kill did not land inside a checkpoint write";

  dash_task* task = make_task();
  dash_arch* arch = plain_arch(task);
  int64_t first_epoch = 0;
  dash_model* resumed = nullptr;
  ASSERT_OK(dash_retrain(task, arch, checkpointed_options(dir, 3, true).c_str(), record_first_epoch,
                         &first_epoch, &resumed));
  EXPECT_EQ(first_epoch, 2) << "the resumed run did not continue after the first checkpoint";
  // The resumed run's own checkpoint writes removed the killed one's temporary.
  for (const auto& name : files_in(dir)) EXPECT_EQ(name.find(".tmp."), std::string::npos) << name;
  // The same three epochs without interruption give the same weights.
  dash_model* straight = nullptr;
  ASSERT_OK(dash_retrain(task, arch, checkpointed_options(scratch("straight"), 3, false).c_str(),
                         nullptr, nullptr, &straight));
  std::vector<float> x;
  std::vector<int64_t> y;
  make_clips(16, 5, &x, &y);
  EXPECT_EQ(infer(resumed, x, 16), infer(straight, x, 16));
  dash_model_free(straight);
  dash_model_free(resumed);
  dash_arch_free(arch);
  dash_task_free(task);
}

TEST(Fault, FailedAllocationReportsOutOfMemoryAndTheLibraryKeepsWorking) {
  dash_task* task = make_task();
  dash_model* model = train_model(task);
  // A batch whose output needs 800 kB while allocations over 256 kB fail.
  const int64_t n = 100000;
  std::vector<float> x(static_cast<size_t>(n * kLen), 0.25f), out(static_cast<size_t>(n * 2));
  // Outputs before the failure, at a batch size that allocates little (the
  // same n again below: outputs of different n may differ in the last bit).
  std::vector<float> small(x.begin(), x.begin() + 4 * kLen);
  const auto expected = infer(model, small, 4);
  dash_fault::fail_allocations_over(256 * 1024);
  EXPECT_STATUS(dash_infer(model, x.data(), n, out.data(), n * 2), DASH_OUT_OF_MEMORY,
                "out of memory");
  // Setting a large split fails the same way and leaves the task as it was.
  int64_t before = -1, after = -1;
  ASSERT_OK(dash_task_split_size(task, DASH_SPLIT_TRAIN, &before));
  std::vector<int64_t> labels(static_cast<size_t>(n), 0);
  EXPECT_STATUS(dash_task_set_data(task, DASH_SPLIT_TRAIN, x.data(), labels.data(), n),
                DASH_OUT_OF_MEMORY, "out of memory");
  ASSERT_OK(dash_task_split_size(task, DASH_SPLIT_TRAIN, &after));
  EXPECT_EQ(after, before);
  dash_fault::fail_allocations_over(0);
  // Everything works again, with the same results as before the failure.
  ASSERT_OK(dash_infer(model, x.data(), n, out.data(), n * 2));
  EXPECT_EQ(infer(model, small, 4), expected);
  dash_model* again = train_model(task);
  EXPECT_NE(again, nullptr);
  dash_model_free(again);
  dash_model_free(model);
  dash_task_free(task);
}

}  // namespace
