#pragma once
// Fault injection for the C ABI tests. A binary that links fault_hooks.cpp
// defines posix_memalign and fsync itself; the dynamic linker binds those
// ahead of libc's for libdashnas and LibTorch too, so the tests can make the
// library's own calls fail. Unarmed, both forward to libc.

#include <cstddef>

namespace dash_fault {

// Makes every posix_memalign (LibTorch's CPU allocator) larger than `bytes`
// fail with ENOMEM; 0 disarms.
void fail_allocations_over(size_t bytes);

// Sends this process SIGKILL inside its nth fsync of a file whose name holds
// ".tmp." (the temporary file of an atomic write, after its bytes are written
// and before it is renamed into place); 0 disarms.
void kill_at_temp_fsync(int n);

}  // namespace dash_fault
