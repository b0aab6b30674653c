#pragma once
// glibc's malloc serves a block of over 32 MB (and, until its adaptive
// threshold has risen, smaller ones) with a fresh mmap, and gives it back to
// the kernel when freed: every training step then maps, zero-fills and
// unmaps the same large tensors again. Alone on a machine that cost little
// here; with another training process beside it, it doubled the step time
// of a plain WRN-16-1 at batch 128 (14.3 s against 7.5 s per Fashion-MNIST
// epoch, side by side, 1 thread each) and made a supernet's first 20 steps
// 38% slower (13.9 s against 10.1 s; README "Environment notes" has the
// commands).

namespace dash::util {

// Keeps blocks of up to 256 MB in the heap once freed (M_MMAP_THRESHOLD) and
// gives the heap's free top back to the kernel only past 512 MB
// (M_TRIM_THRESHOLD), for the whole process. Does nothing where malloc is
// not glibc's, or where the environment already sets malloc's thresholds
// (GLIBC_TUNABLES naming glibc.malloc.mmap_threshold or trim_threshold,
// MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_): the application's or the
// user's choice stands. Returns whether it changed anything. Idempotent.
bool tune_malloc_for_training();

}  // namespace dash::util
