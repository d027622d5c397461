// What Swift cannot spell, for the CPU backend: a software prefetch, a 16x16 transpose in
// single-instruction shuffles, and thread placement (the glibc affinity calls and CPU_SET macros
// are GNU extensions the Swift Glibc module leaves out).
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

/// Sixteen floats, loaded and stored unaligned; clang lowers shuffles of it to the target's
/// permutes (one instruction each below on AVX-512; several narrower ones elsewhere).
typedef float quarry_v16f __attribute__((ext_vector_type(16), aligned(4)));

/// Sixteen consecutive floats of the 32 in (a, b) from element 1 (a[1..15], b[0]) and from
/// element 15 (a[15], b[0..14]): a row's neighbours one column right and left, from vectors
/// already loaded (one lane rotation each instead of an unaligned load that splits cache lines).
static inline quarry_v16f quarry_next1(quarry_v16f a, quarry_v16f b) {
    return __builtin_shufflevector(a, b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
}
static inline quarry_v16f quarry_prev1(quarry_v16f a, quarry_v16f b) {
    return __builtin_shufflevector(a, b, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30);
}

/// The even and the odd elements of the 32 in (a, b): a row's columns at a stride of two.
static inline quarry_v16f quarry_even(quarry_v16f a, quarry_v16f b) {
    return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}
static inline quarry_v16f quarry_odd(quarry_v16f a, quarry_v16f b) {
    return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

/// dst[j * dstStride + i] = src[i * srcStride + j] for i, j < 16: the 16x16 transpose as 64
/// single-instruction shuffles (unpack pairs, 4x4 within 128-bit lanes, then two rounds of
/// 128-bit lane shuffles). Swift's SIMD halves and element-wise initialisers compiled to two or
/// three instructions per shuffle, or to lane inserts.
static inline void quarry_transpose16x16(const float *src, long srcStride, float *dst, long dstStride) {
    quarry_v16f r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = *(const quarry_v16f *)(src + i * srcStride);
    for (int i = 0; i < 16; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
    }
    // Within each 128-bit lane, rows 4g..4g+3 of columns 4L + j: u[4g + j].
    for (int g = 0; g < 4; g++) {
        quarry_v16f a = t[4 * g], b = t[4 * g + 1], c = t[4 * g + 2], d = t[4 * g + 3];
        r[4 * g] = __builtin_shufflevector(a, c, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        r[4 * g + 1] = __builtin_shufflevector(a, c, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
        r[4 * g + 2] = __builtin_shufflevector(b, d, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
        r[4 * g + 3] = __builtin_shufflevector(b, d, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
    // 128-bit lanes: (a.L0, a.L2, b.L0, b.L2) and (a.L1, a.L3, b.L1, b.L3), twice.
    for (int j = 0; j < 4; j++) {
        t[j] = __builtin_shufflevector(r[j], r[4 + j], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        t[4 + j] = __builtin_shufflevector(r[j], r[4 + j], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
        t[8 + j] = __builtin_shufflevector(r[8 + j], r[12 + j], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        t[12 + j] = __builtin_shufflevector(r[8 + j], r[12 + j], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    }
    for (int j = 0; j < 8; j++) {
        *(quarry_v16f *)(dst + j * dstStride) =
            __builtin_shufflevector(t[j], t[8 + j], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        *(quarry_v16f *)(dst + (8 + j) * dstStride) =
            __builtin_shufflevector(t[j], t[8 + j], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    }
}

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
