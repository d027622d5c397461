// What Swift cannot spell, for the CPU backend: a software prefetch and thread placement (the glibc
// affinity calls and CPU_SET macros are GNU extensions the Swift Glibc module leaves out).
// Static inline, so that Swift's clang importer emits the bodies into the callers.
#ifndef QUARRY_CPU_HINTS_H
#define QUARRY_CPU_HINTS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>

/// 1 when the build targets a CPU with fused multiply-add instructions (x86 FMA3, or AArch64):
/// the kernels then use fused multiply-adds. Without them (a build for generic x86-64), a fused
/// multiply-add is a call to fmaf per lane, so the kernels multiply and add separately instead.
#if defined(__FMA__) || defined(__aarch64__)
#define QUARRY_TARGET_HAS_FMA 1
#else
#define QUARRY_TARGET_HAS_FMA 0
#endif

/// Asks for the cache line at `p` in L1 ahead of a read-modify-write (prefetchw / prefetcht0).
static inline void quarry_prefetch_for_write(const void *p) { __builtin_prefetch(p, 1, 3); }

/// Asks for the cache line at `p` in L1 ahead of a read.
static inline void quarry_prefetch_for_read(const void *p) { __builtin_prefetch(p, 0, 3); }

/// The CPUs the calling thread may run on, at most `max` of them into `out`; their count, or -1.
static inline int quarry_thread_cpus(int *out, int max) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++)
        if (CPU_ISSET(cpu, &set)) out[n++] = cpu;
    return n;
}

/// Lets the calling thread run on these CPUs only; 0 on success.
static inline int quarry_set_thread_cpus(const int *cpus, int n) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < n; i++)
        if (cpus[i] >= 0 && cpus[i] < CPU_SETSIZE) CPU_SET(cpus[i], &set);
    return sched_setaffinity(0, sizeof set, &set);
}

#endif
