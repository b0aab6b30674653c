#include "fault_hooks.h"

#include <dlfcn.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace {

std::atomic<size_t> g_alloc_limit{0};
std::atomic<int> g_kill_at{0};
std::atomic<int> g_temp_fsyncs{0};

}  // namespace

namespace dash_fault {

void fail_allocations_over(size_t bytes) { g_alloc_limit = bytes; }

void kill_at_temp_fsync(int n) {
  g_temp_fsyncs = 0;
  g_kill_at = n;
}

}  // namespace dash_fault

extern "C" int posix_memalign(void** out, size_t alignment, size_t size) {
  using Fn = int (*)(void**, size_t, size_t);
  static const Fn next = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "posix_memalign"));
  const size_t limit = g_alloc_limit.load();
  if (limit != 0 && size > limit) return ENOMEM;
  return next(out, alignment, size);
}

extern "C" int fsync(int fd) {
  if (g_kill_at.load() > 0) {
    char link[64], target[4096];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    const ssize_t n = readlink(link, target, sizeof target - 1);
    if (n > 0) {
      target[n] = '\0';
      if (std::strstr(target, ".tmp.") != nullptr && ++g_temp_fsyncs == g_kill_at.load()) {
        raise(SIGKILL);
      }
    }
  }
  return static_cast<int>(syscall(SYS_fsync, fd));
}
